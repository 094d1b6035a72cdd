package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// A node moved from iptables mode to nftables mode and back keeps answering,
// and each start leaves no rules of the other mode behind.
func TestSwitchingModes(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	nodePort := w.node.IP.String() + ":30450"
	for _, mode := range []string{"iptables", "nftables", "iptables", "nftables"} {
		w.mode = mode
		p := w.start()
		// The other mode's rules go when the process starts, its own come
		// with the first sync.
		eventually(t, 10*time.Second, mode+" mode alone programs the node", func() error {
			ipt, nft := strings.Contains(w.iptablesSave(), "KUBE-SERVICES"), w.nftList() != ""
			switch {
			case mode == "nftables" && ipt:
				return fmt.Errorf("iptables rules of the earlier run are still there")
			case mode == "iptables" && nft:
				return fmt.Errorf("the nftables table of the earlier run is still there")
			case mode == "nftables" && !nft, mode == "iptables" && !ipt:
				return fmt.Errorf("its own rules are missing")
			}
			_, err := w.lab.Client.HTTPGet(ctxFor(t, 2*time.Second), nodePort)
			return err
		})
		p.Kill()
		if err := p.Wait(ctxFor(t, 5*time.Second)); err == nil {
			t.Fatal("svcproxy exited cleanly after SIGKILL?")
		}
	}
	out, err := w.node.Run(context.Background(), binary, "cleanup", "--state-dir", w.stateDir)
	if err != nil || !strings.Contains(out, "removed svcproxy's rules") {
		t.Fatalf("cleanup: %v %s", err, out)
	}
	if w.nftList() != "" || strings.Contains(w.iptablesSave(), "KUBE-") {
		t.Errorf("cleanup left rules behind")
	}
}

// In nftables mode a changed endpoint is followed by traffic, and it changes
// only elements of the endpoints map: the chains stay as they were (a new
// rule or verdict would make the kernel validate the whole table).
func TestNftablesEndpointChange(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
	w.mode = "nftables"
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	nodePort := w.node.IP.String() + ":30450"
	ctx := ctxFor(t, 60*time.Second)
	w.start()
	if _, err := waitPod(ctxFor(t, 10*time.Second), w.lab.Client, nodePort, "web-1"); err != nil {
		t.Fatal(err)
	}
	before := w.nftTable()
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.11"))
	took := eventually(t, 10*time.Second, "traffic to web-2", func() error {
		_, err := waitPod(ctxFor(t, 200*time.Millisecond), w.lab.Client, nodePort, "web-2")
		return err
	})
	t.Logf("endpoint change followed by traffic after %s", took.Round(time.Millisecond))
	for i := 0; i < 10; i++ {
		if a, err := w.lab.Client.HTTPGet(ctx, nodePort); err != nil || a.Pod != "web-2" {
			t.Fatalf("request %d after the change: %v %v", i, a.Pod, err)
		}
	}
	after := w.nftTable()
	if m := after.Sets["endpoints-000"]; m == nil || len(m.Elements) != 1 || strings.Join(m.Elements[0].Verdict, " . ") != "10.244.0.11 . 80" {
		t.Errorf("the endpoints map holds %+v, want only 10.244.0.11 . 80", m)
	}
	for _, c := range before.Chains {
		var was, is []string
		for _, r := range c.Rules {
			was = append(was, r.Text)
		}
		if ac := after.Chain(c.Name); ac != nil {
			for _, r := range ac.Rules {
				is = append(is, r.Text)
			}
		}
		if strings.Join(was, "\n") != strings.Join(is, "\n") {
			t.Errorf("chain %s changed with the endpoint:\n was %q\n now %q", c.Name, was, is)
		}
	}
}

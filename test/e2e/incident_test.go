package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/explain"
	"github.com/svcproxy/svcproxy/internal/lab"
)

// The story of nodeport-incident.md: another process on the node holds the
// NodePort, as a server or as a client's source port.
func TestNodePortHeldByAnotherProcess(t *testing.T) {
	modes(t, nodePortHeldByAnotherProcess)
}

func nodePortHeldByAnotherProcess(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.mode = mode
	w.write("web.yaml", webService("azure-vote-front", "10.96.0.10", 30450, "10.244.0.10"))
	w.write("other.yaml", webService("other", "10.96.0.11", 30451, "10.244.0.10"))
	nodePort := w.node.IP.String() + ":30450"
	ctx := ctxFor(t, 60*time.Second)

	// A rogue server is listening on the NodePort before svcproxy starts.
	rogueSrv := rogueServer(t, &w.node.NS, ":30450")

	proxy := w.start()
	// Until the first sync the rogue server answers: wait for the pod.
	a, err := waitPod(ctxFor(t, 10*time.Second), w.lab.Client, nodePort, "web-1")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the conflict is logged with the Service, port and error", func(t *testing.T) {
		want := `can't open "nodePort for default/azure-vote-front" (:30450/tcp), skipping this nodePort: listen tcp :30450: bind: address already in use`
		if err := proxy.WaitOutput(ctxFor(t, 5*time.Second), want); err != nil {
			t.Error(err)
		}
		if !w.nodePortProgrammed(30450) {
			t.Error("the NodePort's rules must be installed despite the conflict")
		}
	})

	t.Run("a rogue listener does not capture the traffic", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if i > 0 {
				if a, err = w.lab.Client.HTTPGet(ctx, nodePort); err != nil {
					t.Fatal(err)
				}
			}
			if a.Pod != "web-1" {
				t.Fatalf("request %d answered by %q, want the pod", i, a.Pod)
			}
		}
	})
	t.Run("svcproxy trace on the node answers where the request goes", func(t *testing.T) {
		out, err := w.node.Run(ctx, binary, "trace", "--to", nodePort, "--from", w.lab.ClientIP.String(), "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var rep explain.TraceReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if rep.Verdict != "DNAT" || len(rep.Endpoints) != 1 || rep.Endpoints[0] != "10.244.0.10:80" || !rep.Masquerade || rep.Service != "default/azure-vote-front" {
			t.Errorf("live trace = %+v", rep)
		}
	})
	rogueSrv.Close()

	t.Run("a client using the NodePort as its source port does not capture the traffic", func(t *testing.T) {
		// A process on the node connects out from source port 30451, as the
		// one in the incident did after a reboot.
		local := &net.TCPAddr{IP: net.IP(w.node.IP.AsSlice()), Port: 30451}
		conn, err := w.node.DialFrom(ctx, "tcp", "10.244.0.10:80", local)
		if err != nil {
			t.Fatalf("rogue client bound to :30450: %v", err)
		}
		defer conn.Close()
		for i := 0; i < 10; i++ {
			a, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30451")
			if err != nil || a.Pod != "web-1" {
				t.Fatalf("request %d: %v %v", i, a, err)
			}
		}
	})
}

func TestKillAndRestart(t *testing.T) { modes(t, killAndRestart) }

func killAndRestart(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
	w.mode = mode
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11"))
	nodePort := w.node.IP.String() + ":30450"
	ctx := ctxFor(t, 60*time.Second)
	first := w.start()
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), nodePort); err != nil {
		t.Fatal(err)
	}

	// A long-lived connection opened through the NodePort before the restart.
	conn, err := w.lab.Client.DialContext(ctx, "tcp", nodePort)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	before, err := keepAliveGet(conn, br)
	if err != nil {
		t.Fatal(err)
	}

	if err := first.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(ctxFor(t, 5*time.Second)); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("svcproxy did not die of SIGKILL: %v", err)
	}

	t.Run("existing Services keep answering while svcproxy is dead", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if _, err := w.lab.Client.HTTPGet(ctx, nodePort); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
	})

	w.write("late.yaml", webService("late", "10.96.0.20", 30460, "10.244.0.10"))
	latePort := w.node.IP.String() + ":30460"
	t.Run("a Service added while svcproxy is dead does not answer", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond)
		if a, err := w.lab.Client.HTTPGet(ctx, latePort); err == nil {
			t.Fatalf("answered by %s with no proxy running", a.Pod)
		}
	})

	w.start()
	t.Run("after the restart the new Service answers", func(t *testing.T) {
		if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), latePort); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a connection opened before the restart survives it", func(t *testing.T) {
		after, err := keepAliveGet(conn, br)
		if err != nil {
			t.Fatalf("second request on the old connection: %v", err)
		}
		if after != before {
			t.Errorf("old connection moved from %s to %s", before, after)
		}
	})
	t.Run("the restart did not duplicate the jumps from the hooks", func(t *testing.T) {
		if n := w.hookJumps(); n != 1 {
			t.Errorf("%d jumps from prerouting into the Service dispatch, want 1", n)
		}
	})
}

// waitPod retries until the given pod answers at addr.
func waitPod(ctx context.Context, from *lab.NS, addr, pod string) (lab.Answer, error) {
	for {
		a, err := from.HTTPGet(ctx, addr)
		if err == nil && a.Pod == pod {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, fmt.Errorf("%s never answered at %s (last: %q, %v)", pod, addr, a.Pod, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keepAliveGet sends one HTTP/1.1 request on an open connection and returns
// the pod that answered.
func keepAliveGet(conn net.Conn, br *bufio.Reader) (string, error) {
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&body)
	return strings.TrimSpace(body.String()), err
}

func TestCleanupLeavesOthersAlone(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	ctx := context.Background()
	// Another program's rules in the same tables.
	for _, args := range [][]string{
		{"iptables", "-t", "nat", "-N", "OTHER-NAT"},
		{"iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2222", "-j", "OTHER-NAT"},
		{"iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"},
	} {
		if _, err := w.node.Run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), w.node.IP.String()+":30450"); err != nil {
		t.Fatal(err)
	}
	// Another sync (a file change) with the foreign rules in place.
	w.write("web2.yaml", webService("web2", "10.96.0.11", 30451, "10.244.0.10"))
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), w.node.IP.String()+":30451"); err != nil {
		t.Fatal(err)
	}
	synced := w.iptablesSave()
	for _, want := range []string{":OTHER-NAT", "-A PREROUTING -p tcp -m tcp --dport 2222 -j OTHER-NAT", "-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT"} {
		if !strings.Contains(synced, want) {
			t.Errorf("a sync removed another program's rule %q", want)
		}
	}
	p.Kill()
	out, err := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir)
	if err != nil || !strings.Contains(out, "removed svcproxy's rules") {
		t.Fatalf("cleanup: %v %s", err, out)
	}
	rules := w.iptablesSave()
	if strings.Contains(rules, "KUBE-") {
		t.Errorf("KUBE rules left after cleanup:\n%s", rules)
	}
	for _, want := range []string{":OTHER-NAT", "-A PREROUTING -p tcp -m tcp --dport 2222 -j OTHER-NAT", "-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT"} {
		if !strings.Contains(rules, want) {
			t.Errorf("cleanup removed another program's rule %q:\n%s", want, rules)
		}
	}
	if out, _ := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir); !strings.Contains(out, "nothing to do") {
		t.Errorf("second cleanup: %s", out)
	}
}

// On a node in nftables mode (upstream kube-proxy's layout loaded with real
// nft), svcproxy trace finds the rules by itself and follows them.
func TestTraceLiveNftNode(t *testing.T) {
	w := newWorld(t)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := w.node.Run(ctx, "nft", "-f", "../../internal/netfilter/testdata/kube-proxy-nftables.nft"); err != nil {
		t.Fatal(err)
	}
	out, err := w.node.Run(ctx, binary, "trace", "--to", w.node.IP.String()+":31080", "--from", "192.0.2.7", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep explain.TraceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Verdict != "DNAT" || len(rep.Endpoints) != 3 || !rep.Masquerade || rep.Service != "default/web:http" {
		t.Errorf("live nft trace = %+v", rep)
	}
	if len(rep.Hops) == 0 || rep.Hops[0].Table != "ip kube-proxy" {
		t.Errorf("hops should come from the nft table: %+v", rep.Hops)
	}
}

// rogueServer is another process's HTTP server on the node (the incident's
// squatter), answering "rogue"; it stops with the test.
func rogueServer(t *testing.T, ns *lab.NS, addr string) *http.Server {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "rogue") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return srv
}

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// The operator's tools run on a live node, with nothing but the node to go
// by (no --local-ip, no --rules): what they say must match what the traffic
// does.
func TestLiveNodeTools(t *testing.T) { modes(t, liveNodeTools) }

func liveNodeTools(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.mode = mode
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	w.write("held.yaml", webService("held", "10.96.0.11", 30451, "10.244.0.10"))
	ctx := ctxFor(t, 90*time.Second)

	t.Run("doctor on a node without a proxy says there are no Service rules", func(t *testing.T) {
		out, err := w.node.Run(ctx, binary, "doctor")
		if err == nil {
			t.Errorf("doctor passed a node without rules:\n%s", out)
		}
		if !strings.Contains(out, "no Service rules on this node, in iptables or nftables (is a proxy running?)") {
			t.Errorf("doctor output:\n%s", out)
		}
	})

	// A process on the node holds the second Service's NodePort.
	rogueServer(t, &w.node.NS, ":30451")

	w.start()
	nodePort := w.node.IP.String() + ":30450"
	if _, err := waitPod(ctxFor(t, 10*time.Second), w.lab.Client, nodePort, "web-1"); err != nil {
		t.Fatal(err)
	}

	t.Run("explain traces the NodePort to the node's address, not loopback", func(t *testing.T) {
		out, err := w.node.Run(ctx, binary, "explain", "default/web")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		nodePortLines := section(out, "NodePort")
		if !strings.Contains(nodePortLines, "from outside the cluster") || !strings.Contains(nodePortLines, "DNAT") ||
			strings.Contains(nodePortLines, "DROP") || strings.Contains(nodePortLines, "NONE") {
			t.Errorf("the NodePort from outside is answered by web-1, explain says:\n%s", out)
		}
		if !strings.Contains(out, "10.244.0.10:80") {
			t.Errorf("explain names no endpoint:\n%s", out)
		}
	})

	t.Run("trace names the process on the NodePort and why it does not see the packet", func(t *testing.T) {
		out, err := w.node.Run(ctx, binary, "trace", "--to", w.node.IP.String()+":30451", "--from", w.lab.ClientIP.String())
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		want := fmt.Sprintf("Socket: pid %d (", os.Getpid())
		if !strings.Contains(out, want) || !strings.Contains(out, "it does not see this packet: the nat rules send it to a pod") {
			t.Errorf("trace does not name pid %d on :30451:\n%s", os.Getpid(), out)
		}
	})

	t.Run("services lists the node's Services from the kernel", func(t *testing.T) {
		out, err := w.node.Run(ctx, binary, "services", "-o", "wide")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"default/web ", "10.96.0.10", "80:30450/TCP", "10.244.0.10:80", "default/held ", mode} {
			if !strings.Contains(out, want) {
				t.Errorf("services -o wide lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("doctor finds the mode and names the process on a held NodePort", func(t *testing.T) {
		out, _ := w.node.Run(ctx, binary, "doctor")
		want := "NodePort 30451/tcp (default/held"
		if !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("held by pid %d", os.Getpid())) {
			t.Errorf("doctor does not name pid %d on NodePort 30451:\n%s", os.Getpid(), out)
		}
		rules := section(out, "rules")
		if strings.HasPrefix(rules, "FAIL") || (mode == "nftables" && !strings.Contains(rules, "nftables mode")) {
			t.Errorf("rules finding in %s mode:\n%s", mode, out)
		}
	})
}

// section is the lines of text from the first line that mentions word to
// the next line that starts without indentation.
func section(text, word string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(text, "\n") {
		if in && line != "" && line[0] != ' ' && !strings.Contains(line, word) {
			break
		}
		if strings.Contains(line, word) {
			in = true
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// svcproxy cleanup leaves the node's sysctls as they were before svcproxy,
// read back from the kernel: the NodePort reservation (to an empty list,
// which the kernel takes only with a newline) and route_localnet.
func TestCleanupRestoresSysctls(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	ctx := ctxFor(t, 60*time.Second)
	read := func(name string) string {
		t.Helper()
		v, err := w.node.Run(ctx, "cat", "/proc/sys/"+strings.ReplaceAll(name, ".", "/"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(v)
	}
	const reserved, localnet = "net.ipv4.ip_local_reserved_ports", "net.ipv4.conf.all.route_localnet"
	if read(reserved) != "" || read(localnet) != "0" {
		t.Fatalf("a fresh node namespace: %s=%q %s=%q", reserved, read(reserved), localnet, read(localnet))
	}
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if err := p.WaitOutput(ctx, "ephemeral ports exclude the NodePorts"); err != nil {
		t.Fatal(err)
	}
	if read(reserved) != "30000-32767" || read(localnet) != "1" {
		t.Fatalf("svcproxy did not set the sysctls: %s=%q %s=%q", reserved, read(reserved), localnet, read(localnet))
	}
	p.Kill()
	for i := 0; i < 2; i++ {
		out, err := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir)
		if err != nil {
			t.Fatalf("cleanup %d: %v %s", i+1, err, out)
		}
		if got := read(reserved); got != "" {
			t.Errorf("cleanup %d: %s = %q, want empty as before svcproxy\n%s", i+1, reserved, got, out)
		}
		if got := read(localnet); got != "0" {
			t.Errorf("cleanup %d: %s = %q, want 0 as before svcproxy\n%s", i+1, localnet, got, out)
		}
		if i == 0 && !strings.Contains(out, localnet+` = "0" (restored)`) {
			t.Errorf("cleanup does not say what it restored:\n%s", out)
		}
	}
}

// A node holding both modes' Service rules (kube-proxy's nftables table
// left next to iptables rules) fails doctor with both named.
func TestDoctorNamesTwoModes(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	ctx := ctxFor(t, 30*time.Second)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if _, err := waitPod(ctxFor(t, 10*time.Second), w.lab.Client, w.node.IP.String()+":30450", "web-1"); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if out, err := w.node.Run(ctx, "nft", "-f", "../../internal/netfilter/testdata/kube-proxy-nftables.nft"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out, err := w.node.Run(ctx, binary, "doctor")
	if err == nil || !strings.Contains(out, "FAIL  two-modes") || !strings.Contains(out, "KUBE-SERVICES in iptables and table ip kube-proxy in nftables") {
		t.Errorf("doctor on a node with both modes' rules: %v\n%s", err, out)
	}
}

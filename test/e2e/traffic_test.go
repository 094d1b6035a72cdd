package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

func TestServiceTraffic(t *testing.T) { modes(t, testServiceTraffic) }

func testServiceTraffic(t *testing.T, mode string) {
	w := newWorld(t,
		lab.PodSpec{Name: "web-1", TCP: []int{80}},
		lab.PodSpec{Name: "web-2", TCP: []int{80}},
		lab.PodSpec{Name: "dns-1", UDP: []int{53}},
	)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11"))
	w.write("dns.yaml", dnsServiceAt("10.244.0.12"))
	// A broken manifest in the same folder must not stop the others.
	w.write("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {clusterIP: 10.96.0.77, ports: [{port: 99999}]}\n")
	w.mode = mode
	proxy := w.start()
	ctx := ctxFor(t, 60*time.Second)

	nodePort := w.node.IP.String() + ":30450"
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), nodePort); err != nil {
		t.Fatal(err)
	}

	t.Run("NodePort from outside reaches both pods, masqueraded", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40; i++ {
			a, err := w.lab.Client.HTTPGet(ctx, nodePort)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			seen[a.Pod]++
			if !strings.HasPrefix(a.Remote, "10.244.0.1:") {
				t.Errorf("pod saw source %s; NodePort traffic with Cluster policy must be masqueraded to the node", a.Remote)
			}
		}
		if seen["web-1"] == 0 || seen["web-2"] == 0 {
			t.Errorf("answers per pod = %v; both endpoints must get traffic", seen)
		}
	})

	t.Run("ClusterIP from the node and from a pod", func(t *testing.T) {
		a, err := w.node.HTTPGet(ctx, "10.96.0.10:80")
		if err != nil || !strings.HasPrefix(a.Pod, "web-") {
			t.Fatalf("from the node: %v %v", a, err)
		}
		dns := w.lab.Pods[2]
		a, err = dns.HTTPGet(ctx, "10.96.0.10:80")
		if err != nil || !strings.HasPrefix(a.Pod, "web-") {
			t.Fatalf("from pod dns-1: %v %v", a, err)
		}
		if !strings.HasPrefix(a.Remote, "10.244.0.12:") {
			t.Errorf("pod-to-ClusterIP traffic must keep the pod's source, pod saw %s", a.Remote)
		}
	})

	t.Run("UDP ClusterIP", func(t *testing.T) {
		for _, from := range []*lab.NS{&w.node.NS, &w.lab.Pods[0].NS} {
			a, err := from.UDPAsk(ctx, "10.96.0.53:53", nil)
			if err != nil || a.Pod != "dns-1" {
				t.Errorf("from %s: %v %v", from.Name, a, err)
			}
		}
	})

	t.Run("broken manifest is reported by file, object and field", func(t *testing.T) {
		if err := proxy.WaitOutput(ctx, "broken.yaml: Service default/broken: spec.ports[0].port: 99999: must be between 1 and 65535"); err != nil {
			t.Error(err)
		}
	})

	t.Run("a new file is programmed, a removed one unprogrammed", func(t *testing.T) {
		w.write("late.yaml", webService("late", "10.96.0.20", 30460, "10.244.0.11"))
		start := time.Now()
		a, err := w.lab.Client.WaitHTTP(ctxFor(t, 5*time.Second), w.node.IP.String()+":30460")
		if err != nil || a.Pod != "web-2" {
			t.Fatalf("new Service: %v %v", a, err)
		}
		t.Logf("new Service answered %s after its file was written", time.Since(start).Round(time.Millisecond))
		// Editing the file moves the Service to the other pod.
		w.write("late.yaml", webService("late", "10.96.0.20", 30460, "10.244.0.10"))
		if _, err := waitPod(ctxFor(t, 5*time.Second), w.lab.Client, w.node.IP.String()+":30460", "web-1"); err != nil {
			t.Fatalf("after editing the file: %v", err)
		}
		w.remove("late.yaml")
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30460"); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("removed Service still answers")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if strings.Contains(w.iptablesSave(), "default/late") {
			t.Error("rules of the removed Service are still in the kernel")
		}
		// In nftables mode its chains are emptied at once and deleted by a
		// later sync: only their (empty) declarations may remain.
		for _, l := range strings.Split(w.nftList(), "\n") {
			if strings.Contains(l, "default/late") && !strings.HasPrefix(strings.TrimSpace(l), "chain ") {
				t.Errorf("the removed Service is still in the nftables table: %s", strings.TrimSpace(l))
			}
		}
	})

	t.Run("Service without endpoints is rejected, not blackholed", func(t *testing.T) {
		w.write("empty.yaml", webService("empty", "10.96.0.30", 30470))
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		_, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30470")
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("got %v, want connection refused (REJECT)", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("rejection took %s: a REJECT answers at once", took)
		}
	})
}

func TestLocalhostNodePort(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	w.start()
	a, err := w.node.WaitHTTP(ctxFor(t, 10*time.Second), "127.0.0.1:30450")
	if err != nil || a.Pod != "web-1" {
		t.Fatalf("curl localhost:30450 on the node: %v %v", a, err)
	}
	if v, _ := w.node.Run(context.Background(), "cat", "/proc/sys/net/ipv4/conf/all/route_localnet"); strings.TrimSpace(v) != "1" {
		t.Errorf("route_localnet = %q, want 1", v)
	}
	// Upstream's nfacct metrics count the node's localhost NodePort
	// packets (and have the INVALID drop counter, at 0 or more).
	m := scrape(t, w.node, "127.0.0.1:10249")
	if line := grep(m, "kubeproxy_iptables_localhost_nodeports_accepted_packets_total "); line == "" || strings.HasSuffix(line, " 0") {
		t.Errorf("localhost NodePort packets not counted: %q", line)
	}
	if grep(m, "kubeproxy_iptables_ct_state_invalid_dropped_packets_total ") == "" {
		t.Error("no kubeproxy_iptables_ct_state_invalid_dropped_packets_total")
	}
	// The kernel's own rules, read back, must drop what a neighbour sends to
	// a local-only service on 127.0.0.1 (CVE-2020-8558), now that
	// route_localnet lets such packets in.
	rs, err := netfilter.ParseIPTables(w.iptablesSave())
	if err != nil {
		t.Fatal(err)
	}
	res, err := netfilter.Trace(rs, netfilter.Packet{Src: w.lab.ClientIP, Dst: netip.MustParseAddr("127.0.0.1"), Protocol: "tcp", DstPort: 22},
		netfilter.TraceOptions{LocalAddrs: []netip.Addr{w.node.IP}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Summary(); got != "DROP by filter KUBE-FIREWALL" {
		t.Errorf("neighbour to 127.0.0.1:22: %s, want DROP by filter KUBE-FIREWALL", got)
	}
}

// CVE-2020-8558: route_localnet lets packets for 127.0.0.0/8 arrive from the
// network. A neighbour must reach neither a local-only service on the node nor
// a NodePort through the node's loopback; the node itself still can.
func TestNeighbourCannotReachNodeLoopback(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	ctx := ctxFor(t, 60*time.Second)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	w.start()
	if _, err := w.node.WaitHTTP(ctxFor(t, 10*time.Second), "127.0.0.1:30450"); err != nil {
		t.Fatal(err)
	}
	// A service on the node that listens on loopback only.
	l, err := w.node.Listen("tcp", "127.0.0.1:9999")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "local-only") })}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	if a, err := w.node.HTTPGet(ctx, "127.0.0.1:9999"); err != nil || a.Pod != "local-only" {
		t.Fatalf("the node itself reaches its local service: %v %v", a, err)
	}
	// The neighbour routes 127.0.0.2 to the node, as an attacker on the
	// same network would.
	if _, err := w.lab.Client.Run(ctx, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet && "+
		"ip route del local 127.0.0.0/8 dev lo table local && ip route add 127.0.0.2/32 via "+w.node.IP.String()+" dev eth0"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"127.0.0.2:9999", "127.0.0.2:30450"} {
		if a, err := w.lab.Client.HTTPGet(ctx, target); err == nil || !isTimeout(err) {
			t.Errorf("neighbour to the node's %s: %+v %v, want dropped", target, a, err)
		}
	}
	// Still reachable the normal way.
	if _, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30450"); err != nil {
		t.Error(err)
	}
}

// A pod reaching its own Service lands on itself part of the time: those
// connections must be masqueraded (hairpin), or the pod's reply to itself
// would skip the DNAT and the connection would hang. Connections to the
// other pod keep the pod's address.
func TestHairpin(t *testing.T) {
	modes(t, func(t *testing.T, mode string) {
		w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
		w.mode = mode
		w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11"))
		w.start()
		self := w.lab.Pods[0]
		if _, err := self.WaitHTTP(ctxFor(t, 10*time.Second), "10.96.0.10:80"); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for i := 0; i < 40; i++ {
			a, err := self.HTTPGet(ctxFor(t, 3*time.Second), "10.96.0.10:80")
			if err != nil {
				t.Fatalf("request %d from web-1 to its own Service: %v", i, err)
			}
			seen[a.Pod]++
			switch from := strings.Split(a.Remote, ":")[0]; {
			case a.Pod == "web-1" && from == self.IP.String():
				t.Errorf("web-1 reached itself keeping its own address %s: not masqueraded", from)
			case a.Pod == "web-2" && from != self.IP.String():
				t.Errorf("web-2 saw %s, want web-1's address %s (pod traffic keeps its source)", from, self.IP)
			}
		}
		if seen["web-1"] == 0 || seen["web-2"] == 0 {
			t.Errorf("answers per pod = %v; both endpoints must get traffic", seen)
		}
	})
}

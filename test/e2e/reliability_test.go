package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

func dnsServiceAt(endpointIP string) string { return dnsNodePortAt(endpointIP, 53) }

// dnsNodePortAt is kube-dns, also on NodePort 30053, with one endpoint on
// targetPort.
func dnsNodePortAt(endpointIP string, targetPort int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  type: NodePort
  clusterIP: 10.96.0.53
  ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053, targetPort: %d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kube-dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: kube-dns}}
addressType: IPv4
ports: [{name: dns, port: %d, protocol: UDP}]
endpoints: [{addresses: [%q], nodeName: node-1}]
`, targetPort, targetPort, endpointIP)
}

// The DNS case (kubernetes #19029, #125467): a client that keeps its UDP
// source port must reach the new pod when the old one is replaced.
func TestStaleUDPConntrackIsCleaned(t *testing.T) {
	w := newWorld(t,
		lab.PodSpec{Name: "dns-1", UDP: []int{53}},
		lab.PodSpec{Name: "dns-2", UDP: []int{53}},
		lab.PodSpec{Name: "client", TCP: []int{80}},
	)
	ctx := ctxFor(t, 60*time.Second)
	w.write("dns.yaml", dnsServiceAt("10.244.0.10"))
	w.start()
	client := w.lab.Pods[2]
	src := &net.UDPAddr{IP: net.IP(client.IP.AsSlice()), Port: 40053}
	eventually(t, 10*time.Second, "dns-1 answers", func() error {
		a, err := client.UDPAsk(ctx, "10.96.0.53:53", src)
		if err != nil {
			return err
		}
		if a.Pod != "dns-1" {
			return fmt.Errorf("answered by %s", a.Pod)
		}
		return nil
	})
	// dns-1 keeps running: without the cleanup, the old conntrack entry
	// would keep sending this client's datagrams to it.
	w.write("dns.yaml", dnsServiceAt("10.244.0.11"))
	took := eventually(t, 5*time.Second, "dns-2 answers the same source port", func() error {
		a, err := client.UDPAsk(ctx, "10.96.0.53:53", src)
		if err != nil {
			return err
		}
		if a.Pod != "dns-2" {
			return fmt.Errorf("answered by %s", a.Pod)
		}
		return nil
	})
	t.Logf("the same UDP flow reached the new pod %s after the endpoint was replaced", took.Round(time.Millisecond))
	if took > time.Second+200*time.Millisecond {
		t.Errorf("recovery took %s, want about a second at most", took)
	}
	// Upstream's conntrack reconciler metrics count the deletion.
	m := scrape(t, w.node, "127.0.0.1:10249")
	if line := grep(m, `kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family="IPv4"}`); line == "" || strings.HasSuffix(line, " 0") {
		t.Errorf("deleted conntrack entries not counted: %q", line)
	}
	if line := grep(m, `kubeproxy_conntrack_reconciler_sync_duration_seconds_count{ip_family="IPv4"}`); line == "" || strings.HasSuffix(line, " 0") {
		t.Errorf("conntrack reconcile rounds not timed: %q", line)
	}
}

// When a UDP Service's targetPort changes, the pod stays and only its port
// moves: a client that keeps its source port must follow to the new port
// (upstream's Conntrack e2e spec for kubernetes #130542, on a NodePort).
func TestStaleUDPConntrackFollowsTargetPort(t *testing.T) {
	w := newWorld(t,
		lab.PodSpec{Name: "dns-1", UDP: []int{53, 5353}},
		lab.PodSpec{Name: "client", TCP: []int{80}},
	)
	ctx := ctxFor(t, 60*time.Second)
	w.write("dns.yaml", dnsNodePortAt("10.244.0.10", 53))
	w.start()
	client := w.lab.Pods[1]
	src := &net.UDPAddr{IP: net.IP(client.IP.AsSlice()), Port: 40054}
	nodePort := w.node.IP.String() + ":30053"
	answeredOn := func(port int) func() error {
		return func() error {
			a, err := client.UDPAsk(ctx, nodePort, src)
			if err != nil {
				return err
			}
			if a.Pod != "dns-1" || a.Port != port {
				return fmt.Errorf("answered by %s on port %d", a.Pod, a.Port)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "dns-1 answers on 53", answeredOn(53))
	w.write("dns.yaml", dnsNodePortAt("10.244.0.10", 5353))
	took := eventually(t, 5*time.Second, "dns-1 answers the same flow on 5353", answeredOn(5353))
	t.Logf("the same UDP flow reached the new target port after %s", took.Round(time.Millisecond))
}

// Someone flushes the tables (a firewall reload): svcproxy notices and puts
// everything back well within the sync period.
func TestFlushedRulesAreRestored(t *testing.T) { modes(t, flushedRulesAreRestored) }

func flushedRulesAreRestored(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.mode = mode
	ctx := ctxFor(t, 60*time.Second)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	w.start("--iptables-sync-period", "20s")
	nodePort := w.node.IP.String() + ":30450"
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), nodePort); err != nil {
		t.Fatal(err)
	}
	flushes := []string{
		"iptables -t nat -F && iptables -t nat -X && iptables -t filter -F && iptables -t filter -X && iptables -t mangle -F && iptables -t mangle -X",
		"iptables -t nat -F",
	}
	if mode == "nftables" {
		flushes = []string{"nft flush ruleset", "nft delete table ip kube-proxy", "nft flush chain ip kube-proxy nat-prerouting"}
	}
	for _, flush := range flushes {
		if _, err := w.node.Run(ctx, "sh", "-c", flush); err != nil {
			t.Fatal(err)
		}
		if _, err := w.lab.Client.HTTPGet(ctx, nodePort); err == nil {
			t.Fatalf("after %q the NodePort still answers: the flush did not happen", flush)
		}
		took := eventually(t, 10*time.Second, "rules restored after "+flush, func() error {
			_, err := w.lab.Client.HTTPGet(ctx, nodePort)
			return err
		})
		t.Logf("%q: NodePort answering again after %s", flush, took.Round(time.Millisecond))
		// The rules are checked every syncPeriod/4 (5 s at most here), well
		// before the periodic full sync (20 s) would repair things.
		if took > 7*time.Second {
			t.Errorf("restored only after %s: the flush was not noticed", took)
		}
		if n := w.hookJumps(); n != 1 {
			t.Errorf("after %q: %d jumps from prerouting into the Service dispatch, want 1", flush, n)
		}
	}
}

package e2e

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"errors"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// udpNodePortService is kube-dns with NodePort 30053.
func udpNodePortService(endpointIP string) string {
	return strings.Replace(strings.Replace(dnsServiceAt(endpointIP), "  clusterIP: 10.96.0.53\n", "  type: NodePort\n  clusterIP: 10.96.0.53\n", 1),
		"ports: [{name: dns, port: 53, protocol: UDP}]\n---", "ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]\n---", 1)
}

// Upstream's KubeProxyNFTablesLocalhostNodePorts in nftables mode, on a
// real kernel: with loopback listed in --nodeport-addresses, svcproxy's
// listener answers TCP NodePorts on 127.0.0.1 from the pods; loopback
// traffic to a NodePort of another protocol (or, without loopback listed,
// of any) is rejected before it reaches whatever listens there, and the
// metrics count both.
func TestNFTablesLocalhostNodePorts(t *testing.T) {
	for _, tt := range []struct {
		name      string
		addresses string
		served    bool
	}{
		{"localhost-listed", "localhost,NODE/32", true},
		{"localhost-not-listed", "NODE/32", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "dns-1", UDP: []int{53}})
			w.mode = "nftables"
			ctx := ctxFor(t, 60*time.Second)
			w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
			w.write("dns.yaml", udpNodePortService("10.244.0.11"))
			// Processes of the node's own on loopback, on the NodePorts: the
			// rules must keep the node's connections from them.
			rogueUDP, err := w.node.ListenPacket("udp", "127.0.0.1:30053")
			if err != nil {
				t.Fatal(err)
			}
			defer rogueUDP.Close()
			go answerUDP(rogueUDP, "rogue")
			if !tt.served {
				rogueTCP, err := w.node.Listen("tcp", "127.0.0.1:30450")
				if err != nil {
					t.Fatal(err)
				}
				defer rogueTCP.Close()
			}
			w.start("--feature-gates", "KubeProxyNFTablesLocalhostNodePorts=true",
				"--nodeport-addresses", strings.ReplaceAll(tt.addresses, "NODE", w.node.IP.String()))

			// The NodePorts on the node's address answer as ever.
			if a, err := w.lab.Client.WaitHTTP(ctx, w.node.IP.String()+":30450"); err != nil || a.Pod != "web-1" {
				t.Fatalf("client to the node's NodePort: %+v %v", a, err)
			}
			if tt.served {
				a, err := w.node.WaitHTTP(ctx, "127.0.0.1:30450")
				if err != nil || a.Pod != "web-1" {
					t.Fatalf("node to 127.0.0.1:30450: %+v %v, want web-1 through the listener", a, err)
				}
			} else if a, err := w.node.HTTPGet(ctx, "127.0.0.1:30450"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("node to 127.0.0.1:30450 without loopback listed: %+v %v, want refused (rejected by the rules)", a, err)
			}
			if a, err := w.node.UDPAsk(ctx, "127.0.0.1:30053", nil); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("node to UDP 127.0.0.1:30053: %+v %v, want refused (rejected before the local socket)", a, err)
			}

			m := scrape(t, w.node, "127.0.0.1:10249")
			wantRejected := map[string]bool{"UDP": true, "TCP": !tt.served}
			for proto, want := range wantRejected {
				line := grep(m, fmt.Sprintf(`kubeproxy_nftables_localhost_nodeport_rejected_packets_total{ip_family="IPv4",protocol=%q}`, proto))
				if got := line != "" && !strings.HasSuffix(line, " 0"); got != want {
					t.Errorf("rejected %s packets counted: %q, want counted %t", proto, line, want)
				}
			}
			listeners := grep(m, `kubeproxy_nftables_localhost_nodeport_listeners{ip_family="IPv4"}`)
			if want := map[bool]string{true: " 1", false: ""}[tt.served]; !strings.HasSuffix(listeners, want) || (want == "") != (listeners == "") {
				t.Errorf("listeners metric %q, want %q", listeners, want)
			}
			if !tt.served && strings.Contains(m, "kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total{") {
				t.Errorf("listener failures counted without listeners:\n%s", grep(m, "listener_creation_failures"))
			}
		})
	}
}

func answerUDP(c net.PacketConn, name string) {
	buf := make([]byte, 512)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteTo([]byte(name+"\n"), from)
	}
}

package iptables

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	nodeIP  = netip.MustParseAddr("192.168.77.1")
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

func ep(ip string, port int32) model.Endpoint {
	return model.Endpoint{IP: netip.MustParseAddr(ip), Port: port, NodeName: "node-1", IsLocal: true}
}

func azureVoteFront(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:      model.ServicePortName{Namespace: "default", Name: "azure-vote-front"},
		Protocol:  model.TCP,
		ClusterIP: netip.MustParseAddr("10.96.0.10"),
		Port:      80,
		NodePort:  30450,
		Endpoints: eps,
	}
}

func kubeDNS(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:      model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"},
		Protocol:  model.UDP,
		ClusterIP: netip.MustParseAddr("10.96.0.53"),
		Port:      53,
		Endpoints: eps,
	}
}

// traceCase states what must happen to one packet.
type traceCase struct {
	name  string
	dir   netfilter.Direction
	src   string
	proto string
	dst   string // ip:port
	want  string // netfilter.Result.Summary()
}

func TestRenderGolden(t *testing.T) {
	defaults := Options{ClusterCIDR: podCIDR, LocalhostNodePorts: true}
	tests := []struct {
		name   string
		state  model.State
		opts   Options
		traces []traceCase
	}{
		{
			name:  "nodeport-two-endpoints",
			state: model.State{Services: []model.ServicePort{azureVoteFront(ep("10.244.0.10", 80), ep("10.244.0.11", 80))}},
			opts:  defaults,
			traces: []traceCase{
				{"client to NodePort", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"},
				{"client to cluster IP", netfilter.Arriving, "192.168.77.2", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"},
				{"pod to cluster IP keeps its source", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); source kept"},
				{"pod reaching itself through the Service is masqueraded (hairpin), not when it reaches the other pod", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%, masqueraded), 10.244.0.11:80 (50%)"},
				{"node to localhost NodePort", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"},
				{"neighbour to 127.0.0.1 NodePort is dropped (CVE-2020-8558)", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22",
					"DROP by filter KUBE-FIREWALL"},
				{"wrong protocol is not touched", netfilter.Arriving, "192.168.77.2", "udp", "192.168.77.1:30450",
					"NONE (no rule changes the packet)"},
				{"other port on the node is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:22",
					"NONE (no rule changes the packet)"},
				{"NodePort on a foreign address is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.9:30450",
					"NONE (no rule changes the packet)"},
			},
		},
		{
			name: "three-endpoints-and-udp",
			state: model.State{Services: []model.ServicePort{
				azureVoteFront(ep("10.244.0.10", 8080), ep("10.244.0.11", 8080), ep("10.244.1.7", 8080)),
				kubeDNS(ep("10.244.0.12", 53)),
			}},
			opts: defaults,
			traces: []traceCase{
				{"three endpoints share equally", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:8080 (33.33%), 10.244.0.11:8080 (33.33%), 10.244.1.7:8080 (33.33%); masqueraded"},
				{"UDP cluster IP from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); masqueraded"},
				{"UDP cluster IP from a pod", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"},
			},
		},
		{
			name:  "no-endpoints",
			state: model.State{Services: []model.ServicePort{azureVoteFront(), kubeDNS()}},
			opts:  defaults,
			traces: []traceCase{
				{"NodePort without endpoints is rejected", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"REJECT by filter KUBE-EXTERNAL-SERVICES"},
				{"cluster IP without endpoints is rejected", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"REJECT by filter KUBE-SERVICES"},
				{"UDP cluster IP without endpoints is rejected from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53",
					"REJECT by filter KUBE-SERVICES"},
			},
		},
		{
			name:  "masquerade-all",
			state: model.State{Services: []model.ServicePort{kubeDNS(ep("10.244.0.12", 53))}},
			opts:  Options{MasqueradeAll: true},
			traces: []traceCase{
				{"pod traffic is masqueraded too", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); masqueraded"},
				{"no localhost rule without localhost NodePorts", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22",
					"NONE (no rule changes the packet)"},
			},
		},
		{
			name:  "no-cluster-cidr",
			state: model.State{Services: []model.ServicePort{kubeDNS(ep("10.244.0.12", 53))}},
			opts:  Options{LocalhostNodePorts: true},
			traces: []traceCase{
				{"without a cluster CIDR cluster IP traffic keeps its source", netfilter.Arriving, "192.168.77.2", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compose(Render(&tt.state, tt.opts), nil)
			if again := Compose(Render(&tt.state, tt.opts), nil); string(again) != string(got) {
				t.Fatal("Render is not deterministic")
			}
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("rendered rules differ from %s (run go test -update after checking):\n%s", path, got)
			}
			rs, err := netfilter.ParseIPTables(string(got))
			if err != nil {
				t.Fatalf("rendered rules do not parse: %v", err)
			}
			for _, tc := range tt.traces {
				assertTrace(t, rs, tc)
			}
		})
	}
}

func assertTrace(t *testing.T, rs *netfilter.Ruleset, tc traceCase) {
	t.Helper()
	dst := netip.MustParseAddrPort(tc.dst)
	res, err := netfilter.Trace(rs, netfilter.Packet{
		Src: netip.MustParseAddr(tc.src), Dst: dst.Addr(), Protocol: tc.proto, DstPort: dst.Port(),
	}, netfilter.TraceOptions{Direction: tc.dir, LocalAddrs: []netip.Addr{nodeIP}})
	if err != nil {
		t.Fatalf("%s: %v", tc.name, err)
	}
	if len(res.Unknown) > 0 {
		t.Errorf("%s: tracer did not understand: %v", tc.name, res.Unknown)
	}
	if got := res.Summary(); got != tc.want {
		t.Errorf("%s: %s %s -> %s\n got: %s\nwant: %s", tc.name, tc.proto, tc.src, tc.dst, got, tc.want)
	}
}

package iptables

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var (
	nodeIP  = netip.MustParseAddr("192.168.77.1")
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

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

func terminating(e model.Endpoint) model.Endpoint {
	e.Ready, e.Serving, e.Terminating = false, true, true
	return e
}

// lbService is a LoadBalancer Service with externalTrafficPolicy: Local.
func lbService(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:                model.ServicePortName{Namespace: "default", Name: "lb", Port: "https"},
		Protocol:            model.TCP,
		ClusterIP:           netip.MustParseAddr("10.96.40.4"),
		Port:                443,
		NodePort:            31443,
		LoadBalancerIPs:     []netip.Addr{netip.MustParseAddr("203.0.113.50")},
		SourceRanges:        []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		ExternalPolicyLocal: true,
		HealthCheckNodePort: 32000,
		Endpoints:           eps,
	}
}

func TestRenderGolden(t *testing.T) {
	defaults := Options{ClusterCIDR: podCIDR, LocalhostNodePorts: true}
	tests := []struct {
		name   string
		state  model.State
		opts   Options
		traces []dptest.TraceCase
	}{
		{
			name:  "nodeport-two-endpoints",
			state: model.State{Services: []model.ServicePort{azureVoteFront(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("client to NodePort", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("client to cluster IP", netfilter.Arriving, "192.168.77.2", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("pod to cluster IP keeps its source", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); source kept"),
				dptest.T("pod reaching itself through the Service is masqueraded (hairpin), not when it reaches the other pod", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%, masqueraded), 10.244.0.11:80 (50%)"),
				dptest.T("node to localhost NodePort", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("neighbour to a local-only service on 127.0.0.1 is dropped (CVE-2020-8558)", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22",
					"DROP by filter KUBE-FIREWALL"),
				dptest.T("neighbour to 127.0.0.1:NodePort is dropped too", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:30450",
					"DROP by filter KUBE-FIREWALL"),
				dptest.T("wrong protocol is not touched", netfilter.Arriving, "192.168.77.2", "udp", "192.168.77.1:30450",
					"NONE (no rule changes the packet)"),
				dptest.T("other port on the node is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:22",
					"NONE (no rule changes the packet)"),
				dptest.T("NodePort on a foreign address is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.9:30450",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			name: "three-endpoints-and-udp",
			state: model.State{Services: []model.ServicePort{
				azureVoteFront(dptest.Ep("10.244.0.10", 8080), dptest.Ep("10.244.0.11", 8080), dptest.Ep("10.244.1.7", 8080)),
				kubeDNS(dptest.Ep("10.244.0.12", 53)),
			}},
			opts: defaults,
			traces: []dptest.TraceCase{
				dptest.T("three endpoints share equally", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:8080 (33.33%), 10.244.0.11:8080 (33.33%), 10.244.1.7:8080 (33.33%); masqueraded"),
				dptest.T("UDP cluster IP from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); masqueraded"),
				dptest.T("UDP cluster IP from a pod", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
		{
			name:  "no-endpoints",
			state: model.State{Services: []model.ServicePort{azureVoteFront(), kubeDNS()}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("NodePort without endpoints is rejected", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"REJECT by filter KUBE-EXTERNAL-SERVICES"),
				dptest.T("cluster IP without endpoints is rejected", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"REJECT by filter KUBE-SERVICES"),
				dptest.T("UDP cluster IP without endpoints is rejected from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53",
					"REJECT by filter KUBE-SERVICES"),
			},
		},
		{
			name:  "masquerade-all",
			state: model.State{Services: []model.ServicePort{kubeDNS(dptest.Ep("10.244.0.12", 53))}},
			opts:  Options{MasqueradeAll: true},
			traces: []dptest.TraceCase{
				dptest.T("pod traffic is masqueraded too", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); masqueraded"),
				dptest.T("no localhost rule without localhost NodePorts", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22",
					"NONE (no rule changes the packet)"),
				dptest.T("no localhost NodePorts even for the node itself", netfilter.Local, "127.0.0.1", "udp", "127.0.0.1:30053",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			name:  "loadbalancer-local-policy-source-ranges",
			state: model.State{Services: []model.ServicePort{lbService(dptest.Ep("10.244.0.10", 8443), dptest.Remote("10.244.1.10", 8443))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("allowed source to the LB IP reaches only the local endpoint, source kept", netfilter.Arriving, "198.51.100.7", "tcp", "203.0.113.50:443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				dptest.T("a source outside loadBalancerSourceRanges is dropped", netfilter.Arriving, "192.0.2.99", "tcp", "203.0.113.50:443",
					"DROP by filter KUBE-PROXY-FIREWALL"),
				dptest.T("NodePort with Local policy: local endpoint only, source kept", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				dptest.T("a pod reaching the NodePort uses every endpoint (short circuit)", netfilter.Arriving, "10.244.1.5", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.0.10:8443 (50%), 10.244.1.10:8443 (50%); source kept"),
				dptest.T("the node itself reaching its NodePort uses every endpoint, masqueraded", netfilter.Local, "192.168.77.1", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.0.10:8443 (50%), 10.244.1.10:8443 (50%); masqueraded"),
				dptest.T("cluster IP keeps Cluster policy", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.40.4:443",
					"DNAT to 10.244.0.10:8443 (50%), 10.244.1.10:8443 (50%); source kept"),
				dptest.T("the health check node port is accepted", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:32000",
					"ACCEPT (not rewritten)"),
			},
		},
		{
			name:  "local-policy-without-local-endpoints",
			state: model.State{Services: []model.ServicePort{lbService(dptest.Remote("10.244.1.10", 8443))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("NodePort on a node without local endpoints drops", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DROP by filter KUBE-EXTERNAL-SERVICES"),
				dptest.T("LB IP from an allowed source on a node without local endpoints drops (not DNATed, so the firewall's drop applies)", netfilter.Arriving, "198.51.100.7", "tcp", "203.0.113.50:443",
					"DROP by filter KUBE-PROXY-FIREWALL"),
				dptest.T("a pod reaching the NodePort is short-circuited to the remote endpoint", netfilter.Arriving, "10.244.0.5", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.1.10:8443 (100%); source kept"),
				dptest.T("cluster IP still works", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.40.4:443",
					"DNAT to 10.244.1.10:8443 (100%); source kept"),
			},
		},
		{
			name: "external-ips-and-affinity",
			state: model.State{Services: []model.ServicePort{{
				Name: model.ServicePortName{Namespace: "default", Name: "sticky"}, Protocol: model.TCP,
				ClusterIP: netip.MustParseAddr("10.96.50.1"), Port: 80, ExternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.50")},
				AffinitySeconds: 10800, Endpoints: []model.Endpoint{dptest.Ep("10.244.0.10", 80), dptest.Remote("10.244.1.10", 80)},
			}}},
			opts: defaults,
			traces: []dptest.TraceCase{
				dptest.T("external IP from outside, masqueraded (Cluster policy)", netfilter.Arriving, "192.0.2.7", "tcp", "192.0.2.50:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.1.10:80 (50%); masqueraded"),
				dptest.T("new clients spread over the endpoints", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.50.1:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.1.10:80 (50%); source kept"),
			},
		},
		{
			name: "internal-traffic-policy-local",
			state: model.State{Services: []model.ServicePort{
				{Name: model.ServicePortName{Namespace: "default", Name: "node-local"}, Protocol: model.UDP,
					ClusterIP: netip.MustParseAddr("10.96.0.60"), Port: 53, InternalPolicyLocal: true,
					Endpoints: []model.Endpoint{dptest.Ep("10.244.0.12", 53), dptest.Remote("10.244.1.12", 53)}},
				{Name: model.ServicePortName{Namespace: "default", Name: "elsewhere"}, Protocol: model.UDP,
					ClusterIP: netip.MustParseAddr("10.96.0.61"), Port: 53, InternalPolicyLocal: true,
					Endpoints: []model.Endpoint{dptest.Remote("10.244.1.12", 53)}},
			}},
			opts: defaults,
			traces: []dptest.TraceCase{
				dptest.T("only the endpoint on this node", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.60:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"),
				dptest.T("no local endpoint: dropped, not rejected", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.61:53",
					"DROP by filter KUBE-SERVICES"),
			},
		},
		{
			name: "terminating-endpoints",
			state: model.State{Services: []model.ServicePort{kubeDNS(
				terminating(dptest.Ep("10.244.0.12", 53)), terminating(dptest.Remote("10.244.1.12", 53)),
			)}},
			opts: defaults,
			traces: []dptest.TraceCase{
				dptest.T("with no ready endpoint, serving terminating ones are used", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (50%), 10.244.1.12:53 (50%); source kept"),
			},
		},
		{
			name:  "nodeport-addresses",
			state: model.State{Services: []model.ServicePort{azureVoteFront(dptest.Ep("10.244.0.10", 80))}},
			opts:  Options{ClusterCIDR: podCIDR, NodePortAddresses: []netip.Addr{nodeIP}},
			traces: []dptest.TraceCase{
				dptest.T("NodePort on a listed address", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (100%); masqueraded"),
				dptest.T("not on the node's other addresses", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			name: "topology-hints",
			state: model.State{Services: []model.ServicePort{kubeDNS(dptest.Ep("10.244.0.12", 53), func() model.Endpoint {
				e := dptest.Remote("10.244.1.12", 53)
				e.OutOfTopology = true // hinted for another zone
				return e
			}())}},
			opts: defaults,
			traces: []dptest.TraceCase{
				dptest.T("Cluster traffic stays in the zone the hints say", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
		{
			name: "ipv6",
			state: model.State{Services: []model.ServicePort{
				azureVoteFront(dptest.Ep("10.244.0.10", 80)), // the IPv4 port is left to iptables
				func() model.ServicePort {
					sp := azureVoteFront(dptest.Ep("fd00:10:244::10", 80), dptest.Ep("fd00:10:244::11", 80))
					sp.ClusterIP = netip.MustParseAddr("fd00:96::10")
					return sp
				}(),
			}},
			opts: Options{IPv6: true, ClusterCIDR: netip.MustParsePrefix("fd00:10:244::/48"), LocalhostNodePorts: true},
			traces: []dptest.TraceCase{
				dptest.T("IPv6 NodePort from outside", netfilter.Arriving, "fd00:77::2", "tcp", "[fd00:77::1]:30450",
					"DNAT to [fd00:10:244::10]:80 (50%), [fd00:10:244::11]:80 (50%); masqueraded"),
				dptest.T("IPv6 cluster IP from a pod keeps its source", netfilter.Arriving, "fd00:10:244::20", "tcp", "[fd00:96::10]:80",
					"DNAT to [fd00:10:244::10]:80 (50%), [fd00:10:244::11]:80 (50%); source kept"),
				dptest.T("the IPv4 cluster IP is not in the IPv6 rules", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.0.10:80",
					"NONE (no rule changes the packet)"),
				dptest.T("no localhost NodePorts over ::1", netfilter.Local, "::1", "tcp", "[::1]:30450",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			name:  "no-cluster-cidr",
			state: model.State{Services: []model.ServicePort{kubeDNS(dptest.Ep("10.244.0.12", 53))}},
			opts:  Options{LocalhostNodePorts: true},
			traces: []dptest.TraceCase{
				dptest.T("without a cluster CIDR cluster IP traffic keeps its source", netfilter.Arriving, "192.168.77.2", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compose(Render(&tt.state, tt.opts), nil)
			if again := Compose(Render(&tt.state, tt.opts), nil); string(again) != string(got) {
				t.Fatal("Render is not deterministic")
			}
			dptest.Golden(t, filepath.Join("testdata", tt.name+".golden"), got)
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

func assertTrace(t *testing.T, rs *netfilter.Ruleset, tc dptest.TraceCase) {
	t.Helper()
	dptest.CheckTrace(t, func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
		return netfilter.Trace(rs, p, o)
	},
		[]netip.Addr{nodeIP, netip.MustParseAddr("fd00:77::1")}, tc)
}

func TestLargeClusterDropsEndpointComments(t *testing.T) {
	var eps []model.Endpoint
	for i := 0; i < 1001; i++ {
		eps = append(eps, dptest.Ep(netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)}).String(), 80))
	}
	st := model.State{Services: []model.ServicePort{azureVoteFront(eps...)}}
	out := string(Compose(Render(&st, Options{ClusterCIDR: podCIDR}), nil))
	for _, l := range strings.Split(out, "\n") {
		if (strings.HasPrefix(l, "-A KUBE-SEP-") || strings.Contains(l, "-j KUBE-SEP-")) && strings.Contains(l, "--comment") {
			t.Fatalf("per-endpoint comment above 1000 endpoints: %s", l)
		}
	}
	small := model.State{Services: []model.ServicePort{azureVoteFront(eps[:1000]...)}}
	if !strings.Contains(string(Compose(Render(&small, Options{}), nil)), "-A KUBE-SEP-") ||
		!strings.Contains(string(Compose(Render(&small, Options{}), nil)), `--comment "default/azure-vote-front -> 10.244.0.1:80"`) {
		t.Error("at 1000 endpoints comments must stay")
	}
	rs, err := netfilter.ParseIPTables(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := netfilter.Trace(rs, netfilter.Packet{Src: netip.MustParseAddr("192.0.2.7"), Dst: nodeIP, Protocol: "tcp", DstPort: 30450},
		netfilter.TraceOptions{LocalAddrs: []netip.Addr{nodeIP}})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Destinations(); len(d) != 1001 {
		t.Errorf("traced %d destinations, want 1001", len(d))
	}
}

// --nodeport-addresses=primary: NodePorts answer on the node's primary
// address of the family, from its Node object.
func TestNodePortAddressesPrimary(t *testing.T) {
	st := model.State{
		Services: []model.ServicePort{azureVoteFront(dptest.Ep("10.244.0.10", 80))},
		Node:     model.Node{Name: "node-1", IPs: []netip.Addr{netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("192.168.77.1"), netip.MustParseAddr("192.168.77.9")}},
	}
	out := string(Compose(Render(&st, Options{NodePortPrimary: true}), nil))
	if !strings.Contains(out, "-d 192.168.77.1 -j KUBE-NODEPORTS") || strings.Contains(out, "192.168.77.9") || strings.Contains(out, "--dst-type LOCAL -j KUBE-NODEPORTS") {
		t.Errorf("primary NodePort address not used alone:\n%s", out)
	}
	st.Node.IPs = nil
	if out := string(Compose(Render(&st, Options{NodePortPrimary: true}), nil)); strings.Contains(out, "-j KUBE-NODEPORTS\n") && strings.Contains(out, "--dst-type LOCAL -j KUBE-NODEPORTS") {
		t.Error("with no known primary address NodePorts must not open on every address")
	}
}

// A Renderer that rendered other states before gives what a fresh Render
// gives: its kept names and reused buffers never leak into the output.
func TestRendererReuseMatchesFreshRender(t *testing.T) {
	withEndpoints := func(st *model.State, i int, eps ...model.Endpoint) *model.State {
		st.Services[i].Endpoints = eps
		return st
	}
	base := func() *model.State { return model.Synthetic(60, 3) }
	steps := []struct {
		name string
		st   *model.State
		opts Options
	}{
		{"first", base(), Options{ClusterCIDR: podCIDR}},
		{"endpoint replaced", withEndpoints(base(), 7, dptest.Ep("10.250.0.1", 8080), dptest.Ep("10.250.0.2", 8080)), Options{ClusterCIDR: podCIDR}},
		{"endpoint gone", withEndpoints(base(), 7, dptest.Ep("10.250.0.2", 8080)), Options{ClusterCIDR: podCIDR}},
		{"back again", base(), Options{ClusterCIDR: podCIDR}},
		{"Services gone", &model.State{Services: base().Services[10:20]}, Options{ClusterCIDR: podCIDR}},
		{"other options", base(), Options{MasqueradeAll: true, LocalhostNodePorts: true}},
		{"large cluster: no endpoint comments", model.Synthetic(400, 3), Options{ClusterCIDR: podCIDR}},
		{"small again", base(), Options{ClusterCIDR: podCIDR}},
		{"feature-rich Services", &model.State{Services: []model.ServicePort{
			lbService(dptest.Ep("10.244.0.10", 8443), dptest.Remote("10.244.1.10", 8443)), kubeDNS(dptest.Ep("10.244.0.53", 53))}}, Options{ClusterCIDR: podCIDR}},
	}
	var r Renderer
	// A lazy Renderer (a sync's) must compose the very transactions an
	// eager one does: whole, chunked and partial.
	lazy, eager := Renderer{Lazy: true}, Renderer{}
	var prevLazy, prevEager *Applied
	for _, s := range steps {
		got, want := string(Compose(r.Render(s.st, s.opts), nil)), string(Compose(Render(s.st, s.opts), nil))
		if got != want {
			t.Fatalf("%s: reused Renderer differs from a fresh Render", s.name)
		}
		l, e := lazy.Render(s.st, s.opts), eager.Render(s.st, s.opts)
		if got := string(Compose(l, nil)); got != want {
			t.Fatalf("%s: a lazy Renderer composes differently", s.name)
		}
		if got, want := ComposeChunks(l, nil, 7), ComposeChunks(e, nil, 7); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%s: a lazy Renderer chunks differently", s.name)
		}
		if l.RuleLines("nat") != e.RuleLines("nat") || l.RuleLines("nat") == 0 {
			t.Errorf("%s: %d nat rules counted lazily, %d eagerly", s.name, l.RuleLines("nat"), e.RuleLines("nat"))
		}
		if prevLazy != nil {
			gotTx, nextLazy := ComposePartial(l, prevLazy, 7)
			wantTx, nextEager := ComposePartial(e, prevEager, 7)
			if !slices.EqualFunc(gotTx, wantTx, bytes.Equal) || len(wantTx) == 0 && s.name != "back again" {
				t.Fatalf("%s: lazy partial sync %d transactions, eager %d, or they differ", s.name, len(gotTx), len(wantTx))
			}
			prevLazy, prevEager = nextLazy, nextEager
		} else {
			prevLazy, prevEager = Record(l), Record(e)
		}
	}
}

// The behaviours both modes share with upstream (dptest.Parity).
func TestParity(t *testing.T) {
	dptest.RunParity(t, "iptables", "golden", func(st model.State, o dptest.Options) ([]byte, dptest.Tracer, error) {
		opts := Options{ClusterCIDR: dptest.PodCIDR, LocalhostNodePorts: o.LocalhostNodePorts, MasqueradeAll: o.MasqueradeAll, NodePortAddresses: o.NodePortAddresses}
		text := Compose(Render(&st, opts), nil)
		rs, err := netfilter.ParseIPTables(string(text))
		return text, func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
			return netfilter.Trace(rs, p, o)
		}, err
	})
}

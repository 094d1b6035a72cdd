package nftables

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var (
	nodeIP  = netip.MustParseAddr("192.168.77.1")
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

func web(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:     model.ServicePortName{Namespace: "default", Name: "web", Port: "http"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30450,
		Endpoints: eps,
	}
}

func dns(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:     model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"},
		Protocol: model.UDP, ClusterIP: netip.MustParseAddr("10.96.0.53"), Port: 53,
		Endpoints: eps,
	}
}

// lb is a LoadBalancer Service with externalTrafficPolicy: Local.
func lb(eps ...model.Endpoint) model.ServicePort {
	return model.ServicePort{
		Name:     model.ServicePortName{Namespace: "default", Name: "lb", Port: "https"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.40.4"), Port: 443, NodePort: 31443,
		LoadBalancerIPs:     []netip.Addr{netip.MustParseAddr("203.0.113.50")},
		SourceRanges:        []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		ExternalPolicyLocal: true,
		Endpoints:           eps,
	}
}

type goldenCase struct {
	name   string
	state  model.State
	opts   Options
	traces []dptest.TraceCase
}

// goldenCases hold the same behaviour the iptables renderer is held to, in
// nftables mode.
func goldenCases() []goldenCase {
	defaults := Options{ClusterCIDR: podCIDR}
	withAffinity := web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80))
	withAffinity.AffinitySeconds = 10800
	withAffinity.ExternalIPs = []netip.Addr{netip.MustParseAddr("192.0.2.80")}
	return []goldenCase{
		{
			name:  "nodeport-two-endpoints",
			state: model.State{Services: []model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("client to NodePort", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("client to cluster IP", netfilter.Arriving, "192.168.77.2", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("pod to cluster IP keeps its source", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); source kept"),
				dptest.T("hairpin is masqueraded", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%, masqueraded), 10.244.0.11:80 (50%)"),
				dptest.T("node to its own NodePort", netfilter.Local, "192.168.77.1", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
				dptest.T("NodePorts do not answer on 127.0.0.1 (as upstream's nftables mode)", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					"NONE (no rule changes the packet)"),
				dptest.T("wrong protocol is not touched", netfilter.Arriving, "192.168.77.2", "udp", "192.168.77.1:30450",
					"NONE (no rule changes the packet)"),
				dptest.T("other port on the node is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:22",
					"NONE (no rule changes the packet)"),
				dptest.T("a wrong port of a cluster IP is rejected", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:81",
					"REJECT by ip kube-proxy cluster-ips-check"),
			},
		},
		{
			name:  "no-endpoints",
			state: model.State{Services: []model.ServicePort{web(), dns(dptest.Ep("10.244.0.20", 53))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("cluster IP without endpoints is rejected", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:80",
					"REJECT by ip kube-proxy reject-chain"),
				dptest.T("NodePort without endpoints is rejected", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"REJECT by ip kube-proxy reject-chain"),
				dptest.T("the other Service still works", netfilter.Arriving, "10.244.0.12", "udp", "10.96.0.53:53",
					"DNAT to 10.244.0.20:53 (100%); source kept"),
			},
		},
		{
			name:  "loadbalancer-local-policy-source-ranges",
			state: model.State{Services: []model.ServicePort{lb(dptest.Ep("10.244.0.10", 8443), dptest.Remote("10.244.1.10", 8443))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("allowed client to the LB IP reaches the local endpoint with its source", netfilter.Arriving, "198.51.100.7", "tcp", "203.0.113.50:443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				dptest.T("other clients are dropped", netfilter.Arriving, "192.0.2.99", "tcp", "203.0.113.50:443",
					"DROP by ip kube-proxy firewall-BPKTVXJ3-default/lb/tcp/https"),
				dptest.T("NodePort from outside: local endpoint only", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				dptest.T("source ranges apply to pods too", netfilter.Arriving, "10.244.0.30", "tcp", "203.0.113.50:443",
					"DROP by ip kube-proxy firewall-BPKTVXJ3-default/lb/tcp/https"),
				dptest.T("pods reach every endpoint through the cluster IP", netfilter.Arriving, "10.244.0.30", "tcp", "10.96.40.4:443",
					"DNAT to 10.244.0.10:8443 (50%), 10.244.1.10:8443 (50%); source kept"),
			},
		},
		{
			name:  "local-policy-without-local-endpoints",
			state: model.State{Services: []model.ServicePort{lb(dptest.Remote("10.244.1.10", 8443))}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("NodePort from outside is dropped: no local endpoint", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DROP by ip kube-proxy nodeport-endpoints-check"),
				dptest.T("the cluster IP still works", netfilter.Arriving, "10.244.0.30", "tcp", "10.96.40.4:443",
					"DNAT to 10.244.1.10:8443 (100%); source kept"),
			},
		},
		{
			name:  "external-ips-and-affinity",
			state: model.State{Services: []model.ServicePort{withAffinity}},
			opts:  defaults,
			traces: []dptest.TraceCase{
				dptest.T("external IP", netfilter.Arriving, "192.0.2.7", "tcp", "192.0.2.80:80",
					"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"),
			},
		},
		{
			name:  "nodeport-addresses",
			state: model.State{Services: []model.ServicePort{web(dptest.Ep("10.244.0.10", 80))}},
			opts:  Options{ClusterCIDR: podCIDR, NodePortAddresses: []netip.Addr{nodeIP}},
			traces: []dptest.TraceCase{
				dptest.T("NodePort on the listed address", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (100%); masqueraded"),
				dptest.T("NodePort on another local address is not touched", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.88.1:30450",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			name: "ipv6",
			state: model.State{Services: []model.ServicePort{{
				Name: model.ServicePortName{Namespace: "default", Name: "web6"}, Protocol: model.TCP,
				ClusterIP: netip.MustParseAddr("fd00:96::10"), Port: 80, NodePort: 30460,
				Endpoints: []model.Endpoint{dptest.Ep("fd00:244::10", 80)},
			}, web(dptest.Ep("10.244.0.10", 80))}},
			opts: Options{ClusterCIDR: netip.MustParsePrefix("fd00:244::/64"), IPv6: true},
			traces: []dptest.TraceCase{
				dptest.T("client to the IPv6 cluster IP", netfilter.Arriving, "fd00:77::2", "tcp", "[fd00:96::10]:80",
					"DNAT to [fd00:244::10]:80 (100%); masqueraded"),
				dptest.T("client to the IPv6 NodePort", netfilter.Arriving, "fd00:77::2", "tcp", "[fd00:77::1]:30460",
					"DNAT to [fd00:244::10]:80 (100%); masqueraded"),
			},
		},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			rs := Render(&tc.state, tc.opts)
			fake := knftables.NewFake(family(tc.opts.IPv6), TableName)
			tx := fake.NewTransaction()
			rs.Transaction(tx)
			if err := fake.Run(context.Background(), tx); err != nil {
				t.Fatalf("knftables rejects the transaction: %v", err)
			}
			dptest.Golden(t, filepath.Join("testdata", tc.name+".golden"), []byte(fake.Dump()))
			dptest.Golden(t, filepath.Join("testdata", tc.name+".list"), []byte(rs.List()))

			parsed, err := netfilter.ParseNft(rs.List())
			if err != nil {
				t.Fatalf("the tracer cannot parse the listing: %v", err)
			}
			local := []netip.Addr{nodeIP, netip.MustParseAddr("192.168.88.1"), netip.MustParseAddr("fd00:77::1")}
			for _, tr := range tc.traces {
				dptest.CheckTrace(t, func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
					return netfilter.TraceNft(parsed, p, o)
				}, local, tr)
			}
		})
	}
}

// Range numbers stay with their chain, skip reserved ones, come free with
// Keep; when none is left a chain picks its endpoints by a DNAT ladder,
// with the same odds.
func TestRanges(t *testing.T) {
	var r Ranges
	r.Reserve(map[uint32]bool{1: true})
	a, _ := r.For("a")
	b, _ := r.For("b")
	if again, _ := r.For("a"); a != 2 || b != 3 || again != a {
		t.Errorf("a=%d b=%d a again=%d, want 2, 3, 2 (1 is reserved)", a, b, again)
	}
	r.Keep(func(c string) bool { return c == "b" })
	r.Reserve(nil)
	if c, _ := r.For("c"); c != 4 {
		t.Errorf("c=%d, want 4 (numbers go round before reuse)", c)
	}

	all := map[uint32]bool{}
	for id := uint32(1); id <= maxRange; id++ {
		all[id] = true
	}
	full := &Ranges{}
	full.Reserve(all)
	if _, ok := full.For("x"); ok {
		t.Fatal("a range handed out though all are reserved")
	}
	st := model.State{Services: []model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80))}}
	text := renderWith(&st, Options{ClusterCIDR: podCIDR}, full).List()
	if !strings.Contains(text, "numgen random mod 2 0 meta l4proto tcp dnat to 10.244.0.10:80") {
		t.Errorf("no DNAT ladder without ranges:\n%s", text)
	}
	rs, err := netfilter.ParseNft(text)
	if err != nil {
		t.Fatal(err)
	}
	dptest.CheckTrace(t, func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
		return netfilter.TraceNft(rs, p, o)
	},
		[]netip.Addr{nodeIP}, dptest.T("client to NodePort", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
			"DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"))
}

// The behaviours both modes share with upstream (dptest.Parity).
func TestParity(t *testing.T) {
	dptest.RunParity(t, "nftables", "list", func(st model.State, o dptest.Options) ([]byte, dptest.Tracer, error) {
		text := Render(&st, Options{ClusterCIDR: dptest.PodCIDR, MasqueradeAll: o.MasqueradeAll, NodePortAddresses: o.NodePortAddresses}).List()
		rs, err := netfilter.ParseNft(text)
		return []byte(text), func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
			return netfilter.TraceNft(rs, p, o)
		}, err
	})
}

package iptables

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var (
	nodeIP  = netip.MustParseAddr("192.168.77.1")
	podCIDR = dptest.ClusterCIDR
)

// render is this mode's rules for the shared cases: iptables-restore input
// and the tracer over it.
func render(st model.State, opts Options) ([]byte, dptest.Tracer, error) {
	text := Compose(Render(&st, opts), nil)
	rs, err := netfilter.ParseIPTables(string(text))
	return text, func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
		return netfilter.Trace(rs, p, o)
	}, err
}

// What both modes do with the model's Services (dptest.Behaviours).
func TestRenderGolden(t *testing.T) {
	dptest.Run(t, "", dptest.Behaviours(), "iptables", "golden", render)
}

// The behaviours both modes share with upstream (dptest.Parity).
func TestParity(t *testing.T) {
	dptest.Run(t, "parity", dptest.Parity(), "iptables", "golden", render)
}

func TestLargeClusterDropsEndpointComments(t *testing.T) {
	var eps []model.Endpoint
	for i := 0; i < 1001; i++ {
		eps = append(eps, dptest.Ep(netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)}).String(), 80))
	}
	st := model.State{Services: []*model.ServicePort{dptest.Web(eps...)}}
	out := string(Compose(Render(&st, Options{ClusterCIDR: podCIDR}), nil))
	for _, l := range strings.Split(out, "\n") {
		if (strings.HasPrefix(l, "-A KUBE-SEP-") || strings.Contains(l, "-j KUBE-SEP-")) && strings.Contains(l, "--comment") {
			t.Fatalf("per-endpoint comment above 1000 endpoints: %s", l)
		}
	}
	small := model.State{Services: []*model.ServicePort{dptest.Web(eps[:1000]...)}}
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
		Services: []*model.ServicePort{dptest.Web(dptest.Ep("10.244.0.10", 80))},
		Node:     model.Node{Name: "node-1", IPs: []netip.Addr{netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("192.168.77.1"), netip.MustParseAddr("192.168.77.9")}},
	}
	out := string(Compose(Render(&st, Options{NodePortPrimary: true}), nil))
	if !strings.Contains(out, "-d 192.168.77.1 -j KUBE-NODEPORTS") || strings.Contains(out, "192.168.77.9") || strings.Contains(out, "--dst-type LOCAL -j KUBE-NODEPORTS") {
		t.Errorf("primary NodePort address not used alone:\n%s", out)
	}
	// As upstream, which takes the node's address to be loopback then and
	// pins nothing: a family whose primary address is not known answers on
	// every address, and one with a CIDR given only on the addresses in it.
	st.Node.IPs = []netip.Addr{netip.MustParseAddr("fd00:77::1")}
	if out := string(Compose(Render(&st, Options{NodePortPrimary: true}), nil)); !strings.Contains(out, "--dst-type LOCAL -j KUBE-NODEPORTS") {
		t.Errorf("with no known IPv4 primary address NodePorts must answer on every address:\n%s", out)
	}
	cidrs := []netip.Prefix{netip.MustParsePrefix("192.168.77.0/24")}
	st.LocalAddrs = []netip.Addr{netip.MustParseAddr("192.168.77.9")}
	if out := string(Compose(Render(&st, Options{NodePortPrimary: true, NodePortCIDRs: cidrs}), nil)); !strings.Contains(out, "-d 192.168.77.9 -j KUBE-NODEPORTS") || strings.Contains(out, "--dst-type LOCAL -j KUBE-NODEPORTS") {
		t.Errorf("with a CIDR and no known primary address NodePorts must answer on the CIDR's addresses only:\n%s", out)
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
		{"feature-rich Services", &model.State{Services: []*model.ServicePort{
			dptest.LB(dptest.Ep("10.244.0.10", 8443), dptest.Remote("10.244.1.10", 8443)), dptest.DNS(dptest.Ep("10.244.0.53", 53))}}, Options{ClusterCIDR: podCIDR}},
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

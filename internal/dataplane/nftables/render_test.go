package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var (
	nodeIP  = netip.MustParseAddr("192.168.77.1")
	podCIDR = dptest.ClusterCIDR
	web     = dptest.Web
	dns     = dptest.DNS
)

// render is this mode's rules for the shared cases: the table as nft lists
// it, and the tracer over that. knftables' fake must take the same table
// as one transaction (it checks that every jump and map names something
// that exists).
func render(st model.State, opts Options) ([]byte, dptest.Tracer, error) {
	rs := Render(&st, opts)
	fake := knftables.NewFake(family(opts.IPv6), TableName)
	tx := fake.NewTransaction()
	rs.Transaction(tx)
	if err := fake.Run(context.Background(), tx); err != nil {
		return nil, nil, fmt.Errorf("knftables rejects the transaction: %w", err)
	}
	text := rs.List()
	parsed, err := netfilter.ParseNft(text)
	return []byte(text), func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
		return netfilter.TraceNft(parsed, p, o)
	}, err
}

// What both modes do with the model's Services (dptest.Behaviours).
func TestRenderGolden(t *testing.T) {
	dptest.Run(t, "", dptest.Behaviours(), "nftables", "list", render)
}

// The behaviours both modes share with upstream (dptest.Parity).
func TestParity(t *testing.T) {
	dptest.Run(t, "parity", dptest.Parity(), "nftables", "list", render)
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
	st := model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80))}}
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

// manyEndpoints are n endpoints on port 80, sorted as the model sorts them.
func manyEndpoints(n int) []model.Endpoint {
	eps := make([]model.Endpoint, n)
	for i := range eps {
		eps[i] = dptest.Ep(fmt.Sprintf("10.%d.%d.%d", 200+i>>16, (i>>8)&255, i&255), 80)
	}
	slices.SortFunc(eps, func(a, b model.Endpoint) int { return strings.Compare(a.String(), b.String()) })
	return eps
}

// A Service with more endpoints than a range has numbers picks among all
// of them with a DNAT rule each, rather than leaving the rest without
// traffic; one with as many uses its range.
func TestMoreEndpointsThanARange(t *testing.T) {
	for _, n := range []int{slotsPerRange, slotsPerRange + 1} {
		st := model.State{Services: []*model.ServicePort{web(manyEndpoints(n)...)}}
		svc := servicePort(st.Services[0], st.Node, Options{ClusterCIDR: podCIDR}, &Ranges{})
		inMap, ruled := 0, 0
		for _, e := range svc.Elements {
			if isEndpointMap(e.Set) {
				inMap++
			}
		}
		for _, c := range svc.Chains {
			for _, r := range c.Rules {
				for _, st := range r.Stmts {
					if _, ok := st.(dnat); ok {
						ruled++
					}
				}
			}
		}
		if inMap+ruled != n || (n <= slotsPerRange) != (inMap == n) {
			t.Errorf("%d endpoints: %d in the endpoints map, %d with a DNAT rule", n, inMap, ruled)
		}
	}
}

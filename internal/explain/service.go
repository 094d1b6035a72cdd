package explain

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// Entry is one way into a Service: an address and port it answers on.
type Entry struct {
	Kind     string // "cluster IP", "NodePort", "external IP", "load balancer IP"
	Addr     netip.Addr
	Port     uint16
	Protocol string
	Service  string // ns/name[:port]
	Chain    string // the chain it jumps to, or REJECT
	// Results are traces from representative sources.
	Results []SourceResult
}

// SourceResult is what happens to traffic from one kind of source.
type SourceResult struct {
	Source  string // "from a pod (10.244.0.2)"
	Summary string
	Trace   *netfilter.Result
}

// Endpoint is one endpoint chain of a Service port.
type Endpoint struct {
	Addr  string
	Chain string
	Share float64
}

// ServicePort is everything the rules say about one Service port.
type ServicePort struct {
	Name      string
	Entries   []Entry
	Chains    []string // per-Service chains of this port, sorted
	Endpoints []Endpoint
	// Affinity is set when clients stick to an endpoint (sessionAffinity).
	Affinity bool
}

// ServiceReport answers `svcproxy explain NAMESPACE/NAME`.
type ServiceReport struct {
	Service string
	Ports   []ServicePort
}

// ErrNoService is returned when no rule names the Service.
type ErrNoService struct{ Name string }

func (e *ErrNoService) Error() string {
	return fmt.Sprintf("Service %s not found in the rules (no rule comment or chain names it)", e.Name)
}

// externalSource stands for a client outside the cluster (TEST-NET-3).
var externalSource = netip.MustParseAddr("203.0.113.10")

// Explain finds every rule that concerns a Service ("ns/name") and traces
// each of its entry points from a pod and from outside the cluster.
// localAddrs are the node's addresses; NodePorts are traced to its primary
// one (see NodeAddr).
func (idx *Index) Explain(rs *netfilter.Ruleset, service string, localAddrs []netip.Addr) (*ServiceReport, error) {
	return idx.explainIPTables(rs, service, belongsTo(service), localAddrs)
}

// ServicesReport is every Service port the rules know, each explained as
// explain explains one (Service "" in the report).
func (idx *Index) ServicesReport(rs *netfilter.Ruleset, localAddrs []netip.Addr) (*ServiceReport, error) {
	return idx.explainIPTables(rs, "", func(string) bool { return true }, localAddrs)
}

// belongsTo matches a Service's ports ("ns/name" or "ns/name:port").
func belongsTo(service string) func(spn string) bool {
	return func(spn string) bool { return spn == service || strings.HasPrefix(spn, service+":") }
}

func (idx *Index) explainIPTables(rs *netfilter.Ruleset, service string, belongs func(string) bool, localAddrs []netip.Addr) (*ServiceReport, error) {
	byPort := map[string]*ServicePort{}
	portOf := func(name string) *ServicePort {
		if p, ok := byPort[name]; ok {
			return p
		}
		p := &ServicePort{Name: name}
		byPort[name] = p
		return p
	}
	for _, t := range []struct{ table, chain string }{
		{"nat", "KUBE-SERVICES"}, {"nat", "KUBE-NODEPORTS"}, {"filter", "KUBE-SERVICES"}, {"filter", "KUBE-EXTERNAL-SERVICES"},
	} {
		for _, r := range chainRules(rs, t.table, t.chain) {
			spn := idx.Service(r.Target)
			if spn == "" {
				spn = ServiceInComment(r.Comment())
			}
			if spn == "" || !belongs(spn) {
				continue
			}
			e, ok := entryOf(t.table, t.chain, r, spn)
			if !ok {
				continue
			}
			sp := portOf(spn)
			if !slices.ContainsFunc(sp.Entries, func(x Entry) bool {
				return x.Kind == e.Kind && x.Addr == e.Addr && x.Port == e.Port && x.Protocol == e.Protocol
			}) {
				sp.Entries = append(sp.Entries, e)
			}
		}
	}
	for chain, spn := range idx.chains {
		if belongs(spn) && chainExists(rs, chain) {
			portOf(spn).Chains = append(portOf(spn).Chains, chain)
		}
	}
	return idx.explainPorts(service, byPort, localAddrs, func(e Entry) []source { return allowedSources(rs, e.Chain) },
		func(pkt netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
			return netfilter.Trace(rs, pkt, o)
		})
}

// explainPorts traces every entry point of every port of a Service from
// representative sources, with the tracer of the ruleset at hand.
func (idx *Index) explainPorts(service string, byPort map[string]*ServicePort, localAddrs []netip.Addr,
	extraSources func(Entry) []source, trace func(netfilter.Packet, netfilter.TraceOptions) (*netfilter.Result, error)) (*ServiceReport, error) {
	if len(byPort) == 0 {
		return nil, &ErrNoService{Name: service}
	}
	rep := &ServiceReport{Service: service}
	node, ok := NodeAddr(localAddrs)
	if !ok {
		localAddrs = append(localAddrs, node)
	}
	names := make([]string, 0, len(byPort))
	for n := range byPort {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sp := byPort[n]
		slices.Sort(sp.Chains)
		for i := range sp.Entries {
			e := &sp.Entries[i]
			dst := e.Addr
			if e.Kind == "NodePort" {
				dst = node
			}
			for _, src := range append(idx.sources(), extraSources(*e)...) {
				res, err := trace(netfilter.Packet{Src: src.addr, Dst: dst, Protocol: e.Protocol, DstPort: e.Port},
					netfilter.TraceOptions{Direction: netfilter.Arriving, LocalAddrs: localAddrs})
				if err != nil {
					return nil, err
				}
				e.Results = append(e.Results, SourceResult{Source: fmt.Sprintf("%s (%s)", src.label, src.addr), Summary: res.Summary(), Trace: res})
				if len(sp.Endpoints) == 0 {
					sp.Endpoints = endpointChains(res)
				}
				for _, a := range res.Assumptions {
					sp.Affinity = sp.Affinity || strings.Contains(a, "session affinity")
				}
			}
		}
		rep.Ports = append(rep.Ports, *sp)
	}
	return rep, nil
}

// NodeAddr is the address a client outside the node reaches it on: the
// first IPv4 address that is neither loopback nor link-local (a host's
// address list starts with 127.0.0.1, which would trace "from outside" as
// traffic to loopback), else such an IPv6 one. Without one, it is a
// documentation address, and ok is false.
func NodeAddr(local []netip.Addr) (addr netip.Addr, ok bool) {
	var v6 netip.Addr
	for _, a := range local {
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			continue
		}
		if a.Is4() || a.Is4In6() {
			return a.Unmap(), true
		}
		if !v6.IsValid() {
			v6 = a
		}
	}
	if v6.IsValid() {
		return v6, true
	}
	return netip.MustParseAddr("192.0.2.1"), false
}

type source struct {
	label string
	addr  netip.Addr
}

// sources are the clients each entry point is traced from: a pod when the
// cluster CIDR is known, and a host outside the cluster.
func (idx *Index) sources() []source {
	var out []source
	if idx.ClusterCIDR.IsValid() {
		out = append(out, source{"from a pod", idx.ClusterCIDR.Addr().Next().Next()})
	}
	return append(out, source{"from outside the cluster", externalSource})
}

// allowedSources are clients inside a load balancer's source ranges (the -s
// rules of its KUBE-FW chain), so that explain shows allowed traffic too.
func allowedSources(rs *netfilter.Ruleset, chain string) []source {
	if !strings.HasPrefix(chain, "KUBE-FW-") {
		return nil
	}
	var out []source
	for _, r := range chainRules(rs, "nat", chain) {
		v, neg := opt(r, "", "-s")
		if v == "" || neg || r.Target == "" {
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			if a, aerr := netip.ParseAddr(v); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				continue
			}
		}
		a := p.Addr()
		if p.Bits() < a.BitLen() {
			a = a.Next()
		}
		out = append(out, source{"from an allowed source range " + p.String(), a})
	}
	return out
}

func entryOf(table, chain string, r *netfilter.Rule, spn string) (Entry, bool) {
	e := Entry{Service: spn, Chain: r.Target}
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		if v, _ := opt(r, proto, "--dport"); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil {
				return e, false
			}
			e.Port, e.Protocol = uint16(p), proto
		}
	}
	if e.Protocol == "" {
		return e, false
	}
	comment := r.Comment()
	switch {
	case chain == "KUBE-NODEPORTS" || (chain == "KUBE-EXTERNAL-SERVICES" && r.Target == "REJECT" && dest(r) == ""):
		e.Kind = "NodePort"
		return e, true
	case strings.Contains(comment, "external IP"):
		e.Kind = "external IP"
	case strings.Contains(comment, "loadbalancer IP"):
		e.Kind = "load balancer IP"
	default:
		e.Kind = "cluster IP"
	}
	a, err := netip.ParseAddr(dest(r))
	if err != nil {
		return e, false
	}
	e.Addr = a
	_ = table
	return e, true
}

// endpointChains lists the DNAT destinations of a trace with their shares
// and the KUBE-SEP chain that rewrites to each.
func endpointChains(res *netfilter.Result) []Endpoint {
	var out []Endpoint
	for _, d := range res.Destinations() {
		ep := Endpoint{Addr: d.Addr.String(), Share: d.Probability}
		for _, p := range res.Paths {
			if p.DNAT != d.Addr {
				continue
			}
			for _, h := range p.Hops {
				if strings.HasPrefix(h.Chain, "KUBE-SEP-") || strings.HasPrefix(h.Chain, "endpoint-") {
					ep.Chain = h.Chain
				}
			}
		}
		out = append(out, ep)
	}
	return out
}

func chainRules(rs *netfilter.Ruleset, table, chain string) []*netfilter.Rule {
	if c := rs.Table(table).Chain(chain); c != nil {
		return c.Rules
	}
	return nil
}

func chainExists(rs *netfilter.Ruleset, chain string) bool {
	for _, t := range rs.Tables {
		if t.Chain(chain) != nil {
			return true
		}
	}
	return false
}

// WriteText prints the report as a tree.
func (rep *ServiceReport) WriteText(w io.Writer) {
	root := &treeNode{label: rep.Service}
	for _, sp := range rep.Ports {
		pn := root.add("port " + portLabel(sp.Name, rep.Service))
		for _, e := range sp.Entries {
			where := fmt.Sprintf("%s:%d/%s", e.Addr, e.Port, e.Protocol)
			if e.Kind == "NodePort" {
				where = fmt.Sprintf("%d/%s on this node's addresses", e.Port, e.Protocol)
			}
			en := pn.add(fmt.Sprintf("%s %s", e.Kind, where))
			for _, r := range e.Results {
				en.add(r.Source + ": " + r.Summary)
			}
		}
		if len(sp.Endpoints) > 0 {
			how := "picked at random"
			if sp.Affinity {
				how += "; a client sticks to its endpoint (sessionAffinity: ClientIP)"
			}
			epn := pn.add(fmt.Sprintf("%d endpoint(s), %s", len(sp.Endpoints), how))
			for _, ep := range sp.Endpoints {
				epn.add(strings.TrimRight(fmt.Sprintf("%-21s %6s  %s", ep.Addr, netfilter.Percent(ep.Share), ep.Chain), " "))
			}
		} else {
			pn.add("no endpoints: connections are rejected")
		}
		if len(sp.Chains) > 0 {
			pn.add("chains: " + strings.Join(sp.Chains, " "))
		}
	}
	root.write(w, "", "")
}

func portLabel(spn, service string) string {
	if p := strings.TrimPrefix(spn, service+":"); p != spn {
		return p
	}
	return "(unnamed)"
}

type treeNode struct {
	label    string
	children []*treeNode
}

func (n *treeNode) add(label string) *treeNode {
	c := &treeNode{label: label}
	n.children = append(n.children, c)
	return c
}

func (n *treeNode) write(w io.Writer, first, rest string) {
	fmt.Fprintf(w, "%s%s\n", first, n.label)
	for i, c := range n.children {
		if i == len(n.children)-1 {
			c.write(w, rest+"└── ", rest+"    ")
		} else {
			c.write(w, rest+"├── ", rest+"│   ")
		}
	}
}

package netfilter

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Direction says where a traced packet comes from.
type Direction int

const (
	// Arriving packets enter the node from a network interface (nat PREROUTING).
	Arriving Direction = iota
	// Local packets are sent by a process on the node (nat OUTPUT).
	Local
)

// Packet is the first packet of a connection to trace.
type Packet struct {
	Src      netip.Addr
	Dst      netip.Addr
	Protocol string // tcp, udp, sctp
	DstPort  uint16
	// SrcPort is optional; 0 means "any", and source-port matches are then
	// stated as assumptions.
	SrcPort uint16
	// InInterface is the interface the packet arrives on; "" means
	// unknown, and input interface matches are then stated as
	// assumptions.
	InInterface string
}

// interfaceMatches reports whether name matches pattern, where a trailing
// "+" (iptables) or "*" (nft) matches any rest.
func interfaceMatches(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// TraceOptions describe the node the rules belong to.
type TraceOptions struct {
	Direction Direction
	// LocalAddrs are the node's own addresses (addrtype LOCAL). Loopback
	// addresses are always local.
	LocalAddrs []netip.Addr
}

// Verdict is what finally happens to a packet.
type Verdict string

const (
	VerdictDNAT   Verdict = "DNAT"
	VerdictAccept Verdict = "ACCEPT"
	VerdictDrop   Verdict = "DROP"
	VerdictReject Verdict = "REJECT"
	// VerdictNone means no rule changed or decided the packet.
	VerdictNone Verdict = "NONE"
)

// Hop is one rule that matched (or the policy of a built-in chain).
type Hop struct {
	Table string `json:"table"`
	Chain string `json:"chain"`
	Rule  string `json:"rule"`
	// Line is the rule's line in the dump, 0 for a chain policy.
	Line int    `json:"line,omitempty"`
	Note string `json:"note,omitempty"`
	rule *Rule
}

// RuleRef returns the parsed rule of the hop, or nil for a policy hop.
func (h Hop) RuleRef() *Rule { return h.rule }

// Path is one way the packet can go; paths differ where a statistic match
// splits traffic between endpoints.
type Path struct {
	Probability float64
	Hops        []Hop
	Verdict     Verdict
	// DNAT is the rewritten destination, valid when Verdict is DNAT.
	DNAT       netip.AddrPort
	Masquerade bool
	// Mark is the packet mark at the end of the path.
	Mark uint32
}

// Result is the outcome of a trace.
type Result struct {
	Paths []Path
	// Assumptions are matches the tracer cannot evaluate from the packet alone
	// (conntrack state, recent lists, interfaces) and what it assumed.
	Assumptions []string
	// Unknown lists matches and targets the tracer does not understand; rules
	// with unknown matches are treated as not matching.
	Unknown []string
}

// Destination is a DNAT target with the share of traffic it gets.
type Destination struct {
	Addr        netip.AddrPort
	Probability float64
}

// Destinations sums the DNAT paths per destination, sorted by address.
func (r *Result) Destinations() []Destination {
	byAddr := map[netip.AddrPort]float64{}
	for _, p := range r.Paths {
		if p.Verdict == VerdictDNAT {
			byAddr[p.DNAT] += p.Probability
		}
	}
	out := make([]Destination, 0, len(byAddr))
	for a, p := range byAddr {
		out = append(out, Destination{Addr: a, Probability: p})
	}
	slices.SortFunc(out, func(a, b Destination) int { return a.Addr.Compare(b.Addr) })
	return out
}

// Verdict is the verdict shared by all paths, or the most likely one when
// paths differ.
func (r *Result) Verdict() Verdict {
	share := map[Verdict]float64{}
	for _, p := range r.Paths {
		share[p.Verdict] += p.Probability
	}
	best, bestP := VerdictNone, -1.0
	for _, v := range []Verdict{VerdictDNAT, VerdictAccept, VerdictReject, VerdictDrop, VerdictNone} {
		if share[v] > bestP {
			best, bestP = v, share[v]
		}
	}
	return best
}

// Masquerade reports whether every path that is not dropped is masqueraded.
func (r *Result) Masquerade() bool {
	any := false
	for _, p := range r.Paths {
		if p.Verdict == VerdictDrop || p.Verdict == VerdictReject {
			continue
		}
		if !p.Masquerade {
			return false
		}
		any = true
	}
	return any
}

// Trace follows pkt through the nat and filter tables of rs, as the kernel
// does for the first packet of a connection.
func Trace(rs *Ruleset, pkt Packet, opts TraceOptions) (*Result, error) {
	if !pkt.Src.IsValid() || !pkt.Dst.IsValid() {
		return nil, fmt.Errorf("trace needs a source and a destination address")
	}
	pkt.Protocol = strings.ToLower(pkt.Protocol)
	t := &tracer{rs: rs, res: &Result{}, local: map[netip.Addr]bool{}, budget: traceBudget}
	for _, a := range opts.LocalAddrs {
		t.local[a.Unmap()] = true
	}
	start := &state{prob: 1, pkt: pkt}
	var nat1, filt string
	if opts.Direction == Local {
		nat1 = "OUTPUT"
	} else {
		nat1 = "PREROUTING"
	}
	states := t.runBuiltin("nat", nat1, []*state{start})
	var out []*state
	for _, st := range states {
		switch t.route(st, opts.Direction) {
		case routeNone:
			out = append(out, st)
			continue
		case routeOutput:
			filt = "OUTPUT"
		case routeInput:
			filt = "INPUT"
		default:
			filt = "FORWARD"
		}
		after := t.runBuiltin("filter", filt, []*state{st})
		for _, a := range after {
			if a.final == VerdictDrop || a.final == VerdictReject || filt == "INPUT" {
				out = append(out, a)
				continue
			}
			// Only the verdict of filter counts past this point; nat
			// POSTROUTING decides masquerading.
			a.final = ""
			out = append(out, t.runBuiltin("nat", "POSTROUTING", []*state{a})...)
		}
	}
	if t.err != nil {
		return nil, t.err
	}
	return t.finish(out), nil
}

type routeKind int

const (
	routeNone    routeKind = iota // dropped or rejected: no further hooks
	routeOutput                   // sent by the node itself
	routeInput                    // delivered to the node
	routeForward                  // forwarded (to a pod after DNAT)
)

// route is the kernel's routing decision after the first hook: where the
// packet goes given its (possibly rewritten) destination.
func (t *tracer) route(st *state, dir Direction) routeKind {
	dst := st.pkt.Dst
	if st.dnat.IsValid() {
		dst = st.dnat.Addr()
	}
	switch {
	case st.final != "":
		return routeNone
	case dir == Local:
		return routeOutput
	case t.isLocal(dst):
		return routeInput
	}
	return routeForward
}

// finish turns the states that left the tables into the result's paths.
func (t *tracer) finish(out []*state) *Result {
	for _, st := range out {
		p := Path{Probability: st.prob, Hops: st.hops, Mark: st.mark, Masquerade: st.masq}
		switch {
		case st.final == VerdictDrop || st.final == VerdictReject:
			p.Verdict = st.final
		case st.dnat.IsValid():
			p.Verdict, p.DNAT = VerdictDNAT, st.dnat
		case st.accepted:
			p.Verdict = VerdictAccept
		default:
			p.Verdict = VerdictNone
		}
		t.res.Paths = append(t.res.Paths, p)
	}
	slices.SortStableFunc(t.res.Paths, func(a, b Path) int {
		return cmp.Or(a.DNAT.Compare(b.DNAT), cmp.Compare(a.Verdict, b.Verdict))
	})
	slices.Sort(t.res.Assumptions)
	t.res.Assumptions = slices.Compact(t.res.Assumptions)
	slices.Sort(t.res.Unknown)
	t.res.Unknown = slices.Compact(t.res.Unknown)
	return t.res
}

type tracer struct {
	rs    *Ruleset
	res   *Result
	local map[netip.Addr]bool
	// budget bounds the work on hostile input (loops with statistic
	// matches fork exponentially); a real ruleset needs a tiny fraction.
	budget int
	err    error
}

// traceBudget is how many rule evaluations and forks one trace may make.
const traceBudget = 1_000_000

// errTooComplex ends a trace whose ruleset would take too long to follow.
var errTooComplex = errors.New("ruleset too complex to trace (a chain loop, or over a million rule evaluations)")

// state is one branch of the trace.
type state struct {
	prob     float64
	pkt      Packet
	mark     uint32
	dnat     netip.AddrPort
	masq     bool
	accepted bool
	// final is set once the packet is dropped or rejected.
	final Verdict
	// table-local: set when a terminal target ends the current table.
	done bool
	// returned is set by RETURN until the calling chain resumes.
	returned bool
	hops     []Hop
}

func (s *state) fork(p float64) *state {
	c := *s
	c.prob = s.prob * p
	c.hops = slices.Clone(s.hops)
	return &c
}

func (t *tracer) isLocal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || t.local[a]
}

// runBuiltin runs states through a built-in chain and applies its policy to
// the ones that fall off its end.
func (t *tracer) runBuiltin(table, chain string, in []*state) []*state {
	tbl := t.rs.Table(table)
	c := tbl.Chain(chain)
	var out []*state
	for _, st := range in {
		st.done = false
		if c == nil {
			out = append(out, st)
			continue
		}
		for _, r := range t.runChain(tbl, c, st, 0) {
			if !r.done && r.final == "" && c.Policy != "" && c.Policy != "-" && c.Policy != "ACCEPT" {
				r.hops = append(r.hops, Hop{Table: table, Chain: chain, Rule: "policy " + c.Policy, Note: "chain policy"})
				switch c.Policy {
				case "DROP":
					r.final = VerdictDrop
				}
			}
			r.done = false
			out = append(out, r)
		}
	}
	return out
}

// runChain evaluates one chain for one state; it returns the states that
// leave it, either by falling off its end / RETURN (done false) or by a
// terminal target (done true).
func (t *tracer) runChain(tbl *Table, c *Chain, st *state, depth int) []*state {
	if depth > 64 {
		t.res.Unknown = append(t.res.Unknown, "jump depth over 64 at chain "+c.Name+" (loop?)")
		return []*state{st}
	}
	return t.runRules(len(c.Rules), st, func(i int, s *state) []*state {
		r := c.Rules[i]
		matched, rest := t.match(tbl.Name, r, s)
		var out []*state
		if rest != nil {
			out = append(out, rest)
		}
		if matched != nil {
			matched.hops = append(matched.hops, Hop{Table: tbl.Name, Chain: c.Name, Rule: r.Text, Line: r.Line, rule: r})
			out = append(out, t.target(tbl, r, matched, depth)...)
		}
		return out
	})
}

// runRules runs st through count rules in order, for iptables and nftables
// alike: apply returns the states that come out of rule i. States that are
// done (a terminal verdict), final (dropped, rejected) or returned leave the
// chain; the others go on to the next rule.
func (t *tracer) runRules(count int, st *state, apply func(i int, s *state) []*state) []*state {
	active := []*state{st}
	var out []*state
	for i := 0; i < count && len(active) > 0; i++ {
		var next []*state
		for _, s := range active {
			if t.budget -= 1; t.budget < 0 {
				t.err = errTooComplex
				return append(out, active...)
			}
			for _, o := range apply(i, s) {
				switch {
				case o.done || o.final != "":
					out = append(out, o)
				case o.returned:
					o.returned = false
					out = append(out, o)
				default:
					next = append(next, o)
				}
			}
		}
		active = next
	}
	return append(out, active...)
}

// match evaluates r for s. It returns the state that matched (nil if none)
// and the state that continues to the next rule (nil if none); both are
// non-nil when a statistic match splits the traffic.
func (t *tracer) match(table string, r *Rule, s *state) (matched, rest *state) {
	p := 1.0
	for i := range r.Matches {
		ok, prob := t.evalMatch(table, r, &r.Matches[i], s)
		if !ok {
			return nil, s
		}
		p *= prob
	}
	if p >= 1 {
		return s, nil
	}
	if p <= 0 {
		return nil, s
	}
	// Each fork copies the hops so far; bound them to bound memory.
	if t.budget -= 50; t.budget < 0 {
		t.err = errTooComplex
		return nil, s
	}
	return s.fork(p), s.fork(1 - p)
}

package netfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// TraceNft follows pkt through an nftables ruleset, hook by hook in
// priority order, as the kernel does for the first packet of a connection.
func TraceNft(rs *NftRuleset, pkt Packet, opts TraceOptions) (*Result, error) {
	if !pkt.Src.IsValid() || !pkt.Dst.IsValid() {
		return nil, fmt.Errorf("trace needs a source and a destination address")
	}
	pkt.Protocol = strings.ToLower(pkt.Protocol)
	t := &tracer{res: &Result{}, local: map[netip.Addr]bool{}, budget: traceBudget}
	for _, a := range opts.LocalAddrs {
		t.local[a.Unmap()] = true
	}
	n := &nftTracer{tracer: t, rs: rs, v6: pkt.Dst.Is6() && !pkt.Dst.Is4In6()}
	states := []*state{{prob: 1, pkt: pkt}}
	first := "prerouting"
	if opts.Direction == Local {
		first = "output"
	}
	states = n.hook(first, states)
	var out []*state
	for _, st := range states {
		switch t.route(st, opts.Direction) {
		case routeNone:
			out = append(out, st)
		case routeOutput:
			for _, p := range n.hook("postrouting", []*state{st}) {
				out = append(out, n.deliverLocal(p)...)
			}
		case routeInput:
			out = append(out, n.hook("input", []*state{st})...)
		default:
			for _, f := range n.hook("forward", []*state{st}) {
				if f.final != "" {
					out = append(out, f)
					continue
				}
				out = append(out, n.hook("postrouting", []*state{f})...)
			}
		}
	}
	if t.err != nil {
		return nil, t.err
	}
	return t.finish(out), nil
}

// deliverLocal runs the node's own packet to one of its addresses (not
// DNATed elsewhere) through the input hook, where it arrives over
// loopback; the filter verdicts there (a NodePort's endpoint checks) are
// the packet's. The prerouting hook it also passes only repeats the
// checks the output hook made.
func (n *nftTracer) deliverLocal(st *state) []*state {
	dst := st.pkt.Dst
	if st.dnat.IsValid() {
		dst = st.dnat.Addr()
	}
	if st.final != "" || !n.isLocal(dst) {
		return []*state{st}
	}
	// An accept in an output chain ended that hook only.
	accepted := st.accepted
	out := n.hook("input", []*state{st})
	for _, o := range out {
		o.accepted = o.accepted || accepted
	}
	return out
}

type nftTracer struct {
	*tracer
	rs *NftRuleset
	v6 bool
}

type baseChain struct {
	tbl *NftTable
	c   *NftChain
}

// hook runs states through every base chain of a hook, lowest priority
// first. An accept ends one base chain; a drop or reject ends the packet.
func (n *nftTracer) hook(hook string, in []*state) []*state {
	var bases []baseChain
	for _, tbl := range n.rs.Tables {
		if !(tbl.Family == "inet" || (tbl.Family == "ip" && !n.v6) || (tbl.Family == "ip6" && n.v6)) {
			continue
		}
		for _, c := range tbl.Chains {
			if c.Hook == hook {
				bases = append(bases, baseChain{tbl, c})
			}
		}
	}
	slices.SortStableFunc(bases, func(a, b baseChain) int { return a.c.Priority - b.c.Priority })
	states := in
	for _, b := range bases {
		var next []*state
		for _, st := range states {
			if st.final != "" {
				next = append(next, st)
				continue
			}
			st.done = false
			for _, r := range n.chain(b.tbl, b.c, st, 0) {
				if !r.done && r.final == "" && b.c.Policy == "drop" {
					r.hops = append(r.hops, Hop{Table: b.tbl.Family + " " + b.tbl.Name, Chain: b.c.Name, Rule: "policy drop", Note: "chain policy"})
					r.final = VerdictDrop
				}
				r.done = false
				next = append(next, r)
			}
		}
		states = next
	}
	return states
}

// chain evaluates one chain; like the iptables runChain, it returns the
// states that leave it.
func (n *nftTracer) chain(tbl *NftTable, c *NftChain, st *state, depth int) []*state {
	if depth > 64 {
		n.res.Unknown = append(n.res.Unknown, "jump depth over 64 at chain "+c.Name+" (loop?)")
		return []*state{st}
	}
	return n.runRules(len(c.Rules), st, func(i int, s *state) []*state {
		return n.rule(tbl, c, c.Rules[i], s, depth)
	})
}

// rule evaluates one rule: its matches left to right, then what it does.
func (n *nftTracer) rule(tbl *NftTable, c *NftChain, r *NftRule, s *state, depth int) []*state {
	toks := r.tokens
	hop := Hop{Table: tbl.Family + " " + tbl.Name, Chain: c.Name, Rule: r.Text, Line: r.Line}
	hopped := false
	addHop := func(st *state) {
		if !hopped {
			st.hops = append(st.hops, hop)
		}
	}
	// States that a random match let past the rule.
	var missed []*state
	for i := 0; i < len(toks); {
		res, next, err := n.statement(tbl, toks, i, s)
		if err != nil {
			n.res.Unknown = append(n.res.Unknown, fmt.Sprintf("%s %s line %d: %v", tbl.Name, c.Name, r.Line, err))
			return append(missed, s)
		}
		i = next
		switch {
		case res.prob > 0 && res.prob < 1:
			if n.budget -= 50; n.budget < 0 {
				n.err = errTooComplex
				return append(missed, s)
			}
			missed = append(missed, s.fork(1-res.prob))
			s = s.fork(res.prob)
		case res.noMatch:
			return append(missed, s)
		case res.branches != nil:
			// A map lookup or numgen: each branch continues with its verdict.
			// Forks copy the hops so far, so they cost more of the budget.
			if len(res.branches) > 1 {
				if n.budget -= 50 * len(res.branches); n.budget < 0 {
					n.err = errTooComplex
					return []*state{s}
				}
			}
			var out []*state
			for _, b := range res.branches {
				bs := s
				if len(res.branches) > 1 {
					bs = s.fork(b.prob)
				}
				if b.dnat.IsValid() {
					bs.dnat, bs.done = b.dnat, true
				}
				addHop(bs)
				out = append(out, n.verdict(tbl, c, b.verdict, bs, depth)...)
			}
			hopped = true
			return append(out, missed...)
		case res.verdict != nil:
			addHop(s)
			return append(n.verdict(tbl, c, res.verdict, s, depth), missed...)
		}
	}
	// Matched to the end without a verdict (e.g. "meta mark set ...").
	addHop(s)
	return append(missed, s)
}

type stmtResult struct {
	noMatch bool
	// prob, when set, is the chance that a random match matches: the
	// packet both goes on with the rule and, forked, past it.
	prob     float64
	verdict  []string
	branches []branch
}

type branch struct {
	prob    float64
	verdict []string
	// dnat, when set, is where this branch's destination is rewritten to.
	dnat netip.AddrPort
}

// verdict applies jump, goto, return, accept, drop, reject.
func (n *nftTracer) verdict(tbl *NftTable, c *NftChain, v []string, s *state, depth int) []*state {
	switch v[0] {
	case "accept":
		s.done = true
		if c.Type == "filter" || c.Type == "" {
			s.accepted = true
		}
	case "drop":
		s.final = VerdictDrop
	case "reject":
		s.final = VerdictReject
	case "return":
		s.returned = true
	case "continue":
	case "jump", "goto":
		if len(v) < 2 {
			n.res.Unknown = append(n.res.Unknown, "verdict "+v[0]+" without a chain")
			return []*state{s}
		}
		target := tbl.Chain(v[1])
		if target == nil {
			n.res.Unknown = append(n.res.Unknown, "missing chain "+v[1])
			return []*state{s}
		}
		out := n.chain(tbl, target, s, depth+1)
		if v[0] == "goto" {
			for _, o := range out {
				if !o.done && o.final == "" {
					o.returned = true
				}
			}
		}
		return out
	default:
		n.res.Unknown = append(n.res.Unknown, "verdict "+strings.Join(v, " "))
	}
	return []*state{s}
}

// statement evaluates the statement at toks[i].
func (n *nftTracer) statement(tbl *NftTable, toks []string, i int, s *state) (stmtResult, int, error) {
	t := toks[i]
	switch t {
	case "jump", "goto":
		if i+1 >= len(toks) {
			return stmtResult{}, 0, fmt.Errorf("%s without a chain", t)
		}
		return stmtResult{verdict: []string{t, toks[i+1]}}, i + 2, nil
	case "accept", "drop", "return", "continue":
		return stmtResult{verdict: []string{t}}, i + 1, nil
	case "reject":
		j := i + 1
		if j < len(toks) && toks[j] == "with" {
			j += 3 // "with icmp(x) type"
		}
		return stmtResult{verdict: []string{"reject"}}, min(j, len(toks)), nil
	case "counter":
		j := i + 1
		if j+1 < len(toks) && toks[j] == "name" {
			return stmtResult{}, j + 2, nil
		}
		for j+1 < len(toks) && (toks[j] == "packets" || toks[j] == "bytes") {
			j += 2
		}
		return stmtResult{}, j, nil
	case "comment":
		return stmtResult{}, i + 2, nil
	case "log", "notrack":
		return stmtResult{}, i + 1, nil
	case "update", "add":
		// update @set { ip saddr }: remembers the client (session
		// affinity); it changes nothing for this packet.
		if i+1 < len(toks) && strings.HasPrefix(toks[i+1], "@") {
			j := i + 2
			if j < len(toks) && toks[j] == "{" {
				for j < len(toks) && toks[j] != "}" {
					j++
				}
				j++
			}
			return stmtResult{}, min(j, len(toks)), nil
		}
	case "masquerade":
		s.masq, s.done = true, true
		j := i + 1
		for j < len(toks) && (toks[j] == "fully-random" || toks[j] == "random" || toks[j] == "persistent") {
			j++
		}
		return stmtResult{verdict: []string{"accept"}}, j, nil
	case "dnat":
		j := i + 1
		if j < len(toks) && (toks[j] == "ip" || toks[j] == "ip6") {
			j++
		}
		if j+1 >= len(toks) || toks[j] != "to" {
			return stmtResult{}, 0, fmt.Errorf("dnat without a destination")
		}
		if toks[j+1] == "numgen" {
			return dnatMap(tbl, toks, j+1)
		}
		ap, err := parseDNAT(toks[j+1], s.pkt.DstPort)
		if err != nil {
			return stmtResult{}, 0, fmt.Errorf("dnat to %q: %v", toks[j+1], err)
		}
		s.dnat, s.done = ap, true
		return stmtResult{verdict: []string{"accept"}}, j + 2, nil
	case "numgen":
		// numgen random mod N vmap { 0 : goto A , 1 : goto B }, or a
		// match of one value: numgen random mod N 0
		if i+4 >= len(toks) || toks[i+1] != "random" || toks[i+2] != "mod" {
			return stmtResult{}, 0, fmt.Errorf("unsupported numgen form")
		}
		mod, err := strconv.Atoi(toks[i+3])
		if err != nil || mod < 1 {
			return stmtResult{}, 0, fmt.Errorf("bad numgen modulus %q", toks[i+3])
		}
		if toks[i+4] != "vmap" {
			j := i + 4
			if toks[j] == "==" && j+1 < len(toks) {
				j++
			}
			v, err := strconv.Atoi(toks[j])
			if err != nil {
				return stmtResult{}, 0, fmt.Errorf("unsupported numgen form")
			}
			if v < 0 || v >= mod {
				return stmtResult{noMatch: true}, j + 1, nil
			}
			return stmtResult{prob: 1 / float64(mod)}, j + 1, nil
		}
		elems, next, err := anonMap(toks, i+5)
		if err != nil {
			return stmtResult{}, 0, err
		}
		var bs []branch
		for _, e := range elems {
			bs = append(bs, branch{prob: 1 / float64(mod), verdict: e.Verdict})
		}
		return stmtResult{branches: bs}, next, nil
	case "meta":
		if i+1 < len(toks) && toks[i+1] == "mark" {
			return n.mark(toks, i, s)
		}
	case "iifname":
		// iifname [!=] "name" (a trailing * matches any rest)
		j, neg := i+1, false
		if j < len(toks) && toks[j] == "!=" {
			neg, j = true, j+1
		}
		if j >= len(toks) {
			return stmtResult{}, 0, fmt.Errorf("iifname without a name")
		}
		name := strings.Trim(toks[j], `"`)
		if s.pkt.InInterface == "" {
			n.assume("input interface match iifname " + toks[j] + " assumed to match")
			return stmtResult{noMatch: neg}, j + 1, nil
		}
		return stmtResult{noMatch: interfaceMatches(name, s.pkt.InInterface) == neg}, j + 1, nil
	case "ct":
		if i+2 < len(toks) && (toks[i+1] == "state" || toks[i+1] == "status") {
			j, neg := i+2, false
			if toks[j] == "!=" {
				neg, j = true, j+1
			}
			vals, next := valueList(toks, j)
			want := "new"
			if toks[i+1] == "status" {
				want = "dnat"
				if !s.dnat.IsValid() {
					want = ""
				}
			}
			n.assume("conntrack state assumed new (first packet of a connection)")
			return stmtResult{noMatch: slices.Contains(vals, want) == neg}, next, nil
		}
	case "fib":
		// fib saddr|daddr type [!=] local
		if i+3 < len(toks) && toks[i+2] == "type" {
			j, neg := i+3, false
			if toks[j] == "!=" {
				neg, j = true, j+1
			}
			a := s.pkt.Src
			if toks[i+1] == "daddr" {
				a = n.dst(s)
			}
			local := n.isLocal(a)
			if j >= len(toks) || toks[j] != "local" {
				return stmtResult{}, 0, fmt.Errorf("fib type %v not understood", toks[j:])
			}
			return stmtResult{noMatch: local == neg}, j + 1, nil
		}
	}
	// A selector, or several joined by ".", then a comparison, a set or a map.
	var sels []string
	j := i
	for {
		sel, next, ok := selector(toks, j)
		if !ok {
			return stmtResult{}, 0, fmt.Errorf("statement %q not understood", strings.Join(toks[i:], " "))
		}
		sels = append(sels, sel)
		j = next
		if j < len(toks) && toks[j] == "." {
			j++
			continue
		}
		break
	}
	vals := make([]string, len(sels))
	for k, sel := range sels {
		vals[k] = n.field(sel, s)
	}
	if j < len(toks) && toks[j] == "vmap" {
		if j+1 < len(toks) && strings.HasPrefix(toks[j+1], "@") {
			set := tbl.Sets[toks[j+1][1:]]
			if set == nil {
				return stmtResult{}, 0, fmt.Errorf("missing map %s", toks[j+1])
			}
			for _, e := range set.Elements {
				if elementMatches(e.Key, vals) {
					return stmtResult{branches: []branch{{prob: 1, verdict: e.Verdict}}}, j + 2, nil
				}
			}
			return stmtResult{noMatch: true}, j + 2, nil
		}
		elems, next, err := anonMap(toks, j+1)
		if err != nil {
			return stmtResult{}, 0, err
		}
		for _, e := range elems {
			if elementMatches(e.Key, vals) {
				return stmtResult{branches: []branch{{prob: 1, verdict: e.Verdict}}}, next, nil
			}
		}
		return stmtResult{noMatch: true}, next, nil
	}
	neg := false
	if j < len(toks) && (toks[j] == "!=" || toks[j] == "==") {
		neg = toks[j] == "!="
		j++
	}
	if j >= len(toks) {
		return stmtResult{}, 0, fmt.Errorf("%s without a value", strings.Join(sels, " . "))
	}
	var in bool
	switch {
	case strings.HasPrefix(toks[j], "@"):
		set := tbl.Sets[toks[j][1:]]
		if set == nil {
			return stmtResult{}, 0, fmt.Errorf("missing set %s", toks[j])
		}
		for _, e := range set.Elements {
			in = in || elementMatches(e.Key, vals)
		}
		j++
	case toks[j] == "{":
		list, next := valueList(toks, j)
		for _, v := range list {
			in = in || elementMatches(strings.Split(v, " . "), vals)
		}
		j = next
	default:
		in = elementMatches([]string{toks[j]}, vals)
		j++
	}
	return stmtResult{noMatch: in == neg}, j, nil
}

// dnatMap reads "numgen random mod M [offset O] map @set" (or an anonymous
// map, "map { 0 : addr . port, ... }") after "dnat ... to":
// a random number from O to O+M-1, looked up in a map of number ranges to
// "addr . port". Each element is a branch, as likely as its share of the
// numbers.
func dnatMap(tbl *NftTable, toks []string, i int) (stmtResult, int, error) {
	if i+4 >= len(toks) || toks[i+1] != "random" || toks[i+2] != "mod" {
		return stmtResult{}, 0, fmt.Errorf("dnat from a map: unsupported numgen form")
	}
	mod, err := strconv.ParseUint(toks[i+3], 10, 32)
	if err != nil || mod < 1 {
		return stmtResult{}, 0, fmt.Errorf("bad numgen modulus %q", toks[i+3])
	}
	j := i + 4
	var offset uint64
	if toks[j] == "offset" && j+1 < len(toks) {
		if offset, err = strconv.ParseUint(toks[j+1], 10, 32); err != nil {
			return stmtResult{}, 0, fmt.Errorf("bad numgen offset %q", toks[j+1])
		}
		j += 2
	}
	if j+1 >= len(toks) || toks[j] != "map" {
		return stmtResult{}, 0, fmt.Errorf("dnat from a map: expected \"map @NAME\" or \"map { ... }\"")
	}
	// A named map (svcproxy's shared endpoints map), or an anonymous one
	// in the rule (upstream's: map { 0 : 10.244.0.2 . 53, 1 : ... }).
	var elements []NftElement
	name, next := "in the rule", j+2
	if strings.HasPrefix(toks[j+1], "@") {
		set := tbl.Sets[toks[j+1][1:]]
		if set == nil {
			return stmtResult{}, 0, fmt.Errorf("missing map %s", toks[j+1])
		}
		elements, name = set.Elements, set.Name
	} else {
		var err error
		if elements, next, err = anonMap(toks, j+1); err != nil {
			return stmtResult{}, 0, fmt.Errorf("dnat from a map: %w", err)
		}
	}
	lo, hi := offset, offset+mod-1
	var bs []branch
	covered := uint64(0)
	for _, e := range elements {
		if len(e.Key) != 1 || len(e.Verdict) != 2 {
			return stmtResult{}, 0, fmt.Errorf("map %s: element %v is not a number range and an address . port", name, e.Key)
		}
		first, last, err := numberRange(e.Key[0])
		a, err2 := netip.ParseAddr(e.Verdict[0])
		p, err3 := strconv.ParseUint(e.Verdict[1], 10, 16)
		if err != nil || err2 != nil || err3 != nil {
			return stmtResult{}, 0, fmt.Errorf("map %s: bad element %s : %s", name, e.Key[0], strings.Join(e.Verdict, " . "))
		}
		first, last = max(first, lo), min(last, hi)
		if first > last {
			continue
		}
		covered += last - first + 1
		bs = append(bs, branch{prob: float64(last-first+1) / float64(mod), verdict: []string{"accept"}, dnat: netip.AddrPortFrom(a, uint16(p))})
	}
	if covered < mod {
		// Numbers no element covers: the packet goes on unchanged.
		bs = append(bs, branch{prob: float64(mod-covered) / float64(mod), verdict: []string{"continue"}})
	}
	return stmtResult{branches: bs}, next, nil
}

// numberRange reads a map key as nft prints number ranges: "0x00050000",
// "0x00050000/17" (a prefix) or "0x00050000-0x00055555" (decimal too).
func numberRange(k string) (first, last uint64, err error) {
	num := func(v string) (uint64, error) { return strconv.ParseUint(v, 0, 32) }
	if a, b, ok := strings.Cut(k, "-"); ok {
		if first, err = num(a); err == nil {
			last, err = num(b)
		}
		return first, last, err
	}
	if a, b, ok := strings.Cut(k, "/"); ok {
		bits, err := strconv.Atoi(b)
		if err != nil || bits < 0 || bits > 32 {
			return 0, 0, fmt.Errorf("bad prefix %q", k)
		}
		if first, err = num(a); err != nil {
			return 0, 0, err
		}
		return first, first + (1 << (32 - bits)) - 1, nil
	}
	first, err = num(k)
	return first, first, err
}

// mark handles "meta mark & M == V" and "meta mark set meta mark OP V".
func (n *nftTracer) mark(toks []string, i int, s *state) (stmtResult, int, error) {
	num := func(v string) (uint32, error) {
		x, err := strconv.ParseUint(v, 0, 32)
		return uint32(x), err
	}
	switch {
	case i+6 < len(toks)+1 && i+5 < len(toks) && toks[i+2] == "&" && (toks[i+4] == "==" || toks[i+4] == "!="):
		m, err1 := num(toks[i+3])
		v, err2 := num(toks[i+5])
		if err1 != nil || err2 != nil {
			return stmtResult{}, 0, fmt.Errorf("bad mark comparison")
		}
		eq := s.mark&m == v
		return stmtResult{noMatch: eq == (toks[i+4] == "!=")}, i + 6, nil
	case i+6 < len(toks)+1 && i+5 < len(toks) && toks[i+2] == "set" && toks[i+3] == "meta" && toks[i+4] == "mark":
		if i+6 >= len(toks)+1 || i+6 > len(toks)-1 {
			return stmtResult{}, 0, fmt.Errorf("bad mark statement")
		}
		v, err := num(toks[i+6])
		if err != nil {
			return stmtResult{}, 0, fmt.Errorf("bad mark value %q", toks[i+6])
		}
		switch toks[i+5] {
		case "|":
			s.mark |= v
		case "^":
			s.mark ^= v
		case "&":
			s.mark &= v
		default:
			return stmtResult{}, 0, fmt.Errorf("mark operator %q not understood", toks[i+5])
		}
		return stmtResult{}, i + 7, nil
	case i+3 < len(toks) && toks[i+2] == "set":
		v, err := num(toks[i+3])
		if err != nil {
			return stmtResult{}, 0, fmt.Errorf("bad mark value %q", toks[i+3])
		}
		s.mark = v
		return stmtResult{}, i + 4, nil
	}
	return stmtResult{}, 0, fmt.Errorf("mark statement not understood")
}

// selector reads "ip daddr", "meta l4proto", "th dport", "tcp dport", ...
func selector(toks []string, i int) (string, int, bool) {
	if i+1 >= len(toks) {
		return "", 0, false
	}
	two := toks[i] + " " + toks[i+1]
	switch two {
	case "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "meta l4proto", "meta nfproto",
		"th dport", "th sport", "tcp dport", "tcp sport", "udp dport", "udp sport", "sctp dport", "sctp sport":
		return two, i + 2, true
	}
	return "", 0, false
}

func (n *nftTracer) dst(s *state) netip.Addr {
	if s.dnat.IsValid() {
		return s.dnat.Addr()
	}
	return s.pkt.Dst
}

// field is a selector's value for the packet; "" when it does not apply
// (tcp dport of a UDP packet), which matches nothing.
func (n *nftTracer) field(sel string, s *state) string {
	dport := s.pkt.DstPort
	if s.dnat.IsValid() {
		dport = s.dnat.Port()
	}
	switch sel {
	case "ip saddr", "ip6 saddr":
		return s.pkt.Src.String()
	case "ip daddr", "ip6 daddr":
		return n.dst(s).String()
	case "meta l4proto":
		return s.pkt.Protocol
	case "meta nfproto":
		if n.v6 {
			return "ipv6"
		}
		return "ipv4"
	case "th dport":
		return strconv.Itoa(int(dport))
	case "th sport", "tcp sport", "udp sport", "sctp sport":
		if s.pkt.SrcPort == 0 {
			n.assume("source port match assumed not to match (no --sport given)")
			return ""
		}
		return strconv.Itoa(int(s.pkt.SrcPort))
	default: // tcp/udp/sctp dport
		if strings.HasPrefix(sel, s.pkt.Protocol+" ") {
			return strconv.Itoa(int(dport))
		}
		return ""
	}
}

// elementMatches compares a set element (or a rule's value) with the
// packet's values, part by part: addresses against addresses or prefixes,
// ports against numbers or ranges, names exactly.
func elementMatches(key, vals []string) bool {
	if len(key) != len(vals) {
		return false
	}
	for k := range key {
		if !valueMatches(key[k], vals[k]) {
			return false
		}
	}
	return true
}

func valueMatches(want, got string) bool {
	if got == "" {
		return false
	}
	if want == got {
		return true
	}
	if strings.Contains(want, "/") {
		p, err := netip.ParsePrefix(want)
		a, err2 := netip.ParseAddr(got)
		return err == nil && err2 == nil && p.Contains(a)
	}
	if lo, hi, ok := strings.Cut(want, "-"); ok {
		l, e1 := strconv.Atoi(lo)
		h, e2 := strconv.Atoi(hi)
		g, e3 := strconv.Atoi(got)
		if e1 == nil && e2 == nil && e3 == nil {
			return g >= l && g <= h
		}
	}
	if a, err := netip.ParseAddr(want); err == nil {
		b, err := netip.ParseAddr(got)
		return err == nil && a == b
	}
	return false
}

// valueList reads "x" or "x,y" or "{ x , y }" (concatenations kept as
// "a . b") starting at toks[i].
func valueList(toks []string, i int) ([]string, int) {
	if i >= len(toks) {
		return nil, i
	}
	if toks[i] != "{" {
		return strings.Split(toks[i], ","), i + 1
	}
	var out []string
	var cur []string
	j := i + 1
	for ; j < len(toks) && toks[j] != "}"; j++ {
		switch toks[j] {
		case ",":
			out = append(out, strings.Join(cur, " "))
			cur = nil
		default:
			cur = append(cur, toks[j])
		}
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, " "))
	}
	return out, j + 1
}

// anonMap reads "{ key : verdict , ... }" starting at toks[i].
func anonMap(toks []string, i int) ([]NftElement, int, error) {
	if i >= len(toks) || toks[i] != "{" {
		return nil, 0, fmt.Errorf("expected an anonymous map")
	}
	end := i + 1
	for end < len(toks) && toks[end] != "}" {
		end++
	}
	if end >= len(toks) {
		return nil, 0, fmt.Errorf("unterminated anonymous map")
	}
	elems, err := parseElements(strings.Join(toks[i:end+1], " "), true)
	return elems, end + 1, err
}

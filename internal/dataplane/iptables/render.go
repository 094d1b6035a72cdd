package iptables

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"slices"
	"strconv"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// Options are the node-wide settings that shape the rules.
type Options = dataplane.Options

// Ruleset is a rendered ruleset: per table, the chains it owns and the rules
// that fill them. It does not say how to get there from what the kernel has;
// Compose does.
type Ruleset struct {
	Tables []TableRules
	// ServiceSpans say which nat chains and rules belong to each Service
	// port, so that they can be applied in separate transactions that each
	// carry whole Services (ComposeChunks).
	ServiceSpans []Span
	// fixedNat are the nat chains every Service needs (KUBE-MARK-MASQ,
	// KUBE-POSTROUTING) and their rules.
	fixedNatChains []string
	fixedNatRules  []byte
	// perServiceNat holds the rules ServiceSpans index into; nil when lazy.
	perServiceNat []byte
	// lazy is set when a lazy Renderer made the Ruleset: the per-Service-port
	// nat rules are rendered again when needed (portRules), and Tables' nat
	// table lacks them.
	lazy *lazyRender
	// natLines is how many nat rules Tables lacks.
	natLines  int
	natChains []string
	// dispatch are the nat KUBE-SERVICES and KUBE-NODEPORTS rules.
	dispatch [][]byte
	// natTail are nat KUBE-SERVICES' last rules, the node's own: the jump
	// to KUBE-NODEPORTS (per NodePort address) and the localhost rule.
	natTail []byte
	// shared are the buffers Span.Dispatch indexes: nat KUBE-SERVICES and
	// KUBE-NODEPORTS rules, and the filter rules.
	shared [3][]byte
}

// sharedTables names the table of each of Ruleset.shared.
var sharedTables = [3]string{"nat", "nat", "filter"}

// Span is one Service port's part of the nat table: chains
// natChains[ChainsFrom:ChainsTo] and rules perServiceNat[RulesFrom:RulesTo]
// (or, when lazy, rendered again from port).
type Span struct {
	// Key identifies the Service port ("ns/name:port/proto").
	Key                  string
	ChainsFrom, ChainsTo int
	RulesFrom, RulesTo   int
	// Dispatch are the Service port's lines in the shared chains, as offsets
	// into Ruleset.shared: nat KUBE-SERVICES, nat KUBE-NODEPORTS, filter.
	Dispatch [3][2]int
	// sum fingerprints the Service port's chains, rules and dispatch lines.
	sum uint64
	// port and names render the rules again (lazy Renderers only).
	port  *model.ServicePort
	names *portNames
}

// TableRules are the chains and rules of one table.
type TableRules struct {
	Name string
	// Chains are declared (and so flushed and refilled) on every apply.
	Chains []string
	// Rules are "-A CHAIN ..." lines, in segments written out in order
	// (kept apart so they are never copied into one buffer first).
	Rules [][]byte
}

// size is the byte length of the rules.
func (t *TableRules) size() int {
	n := 0
	for _, r := range t.Rules {
		n += len(r)
	}
	return n
}

// Render turns the desired state into rules. It is pure: the same state and
// options always give the same bytes.
func Render(st *model.State, opts Options) *Ruleset { return new(Renderer).Render(st, opts) }

// Renderer renders one State after another, as a sync loop does. It keeps
// each Service port's chain names while the port exists and reuses its
// buffers, so a render at 10k Services allocates little: a Ruleset it
// returns is valid until its next Render.
type Renderer struct {
	// Lazy keeps only a fingerprint of each Service port's nat rules: a
	// transaction that carries the port renders them again. A sync of 10k
	// Services × 10 endpoints then never holds their 26 MB of nat rules at
	// once. A lazy Ruleset's Tables lack those rules; the Compose functions
	// put them in.
	Lazy  bool
	names map[portKey]*portNames
	gen   uint32
	// Buffers of the last Ruleset, reused by the next.
	nat, natServices, natNodePorts, filter lines
	natChains                              []string
	spans                                  []Span
	scratch                                []byte
}

type portKey struct {
	name  model.ServicePortName
	proto model.Protocol
}

// Render is the package's Render, reusing what the last one worked out.
func (rr *Renderer) Render(st *model.State, opts Options) *Ruleset {
	if rr.names == nil {
		rr.names = map[portKey]*portNames{}
	}
	rr.gen++
	r := &renderer{opts: opts, Renderer: rr, node: st.Node}
	total, ports := 0, 0
	for i := range st.Services {
		if st.Services[i].ClusterIP.Is6() == opts.IPv6 {
			total += len(st.Services[i].Endpoints)
			ports++
		}
	}
	r.largeCluster = total > largeClusterEndpoints
	// Sized from what a Service port and an endpoint take (measured on
	// synthetic clusters; less without per-endpoint comments), so the
	// buffers are not regrown (and copied) while rendering large clusters.
	switch {
	case rr.Lazy:
		rr.nat.reset(64 << 10)
	case r.largeCluster:
		rr.nat.reset(total*270 + ports*250)
	default:
		rr.nat.reset(total*400 + ports*600)
	}
	rr.natServices.reset(ports * 160)
	rr.natNodePorts.reset(ports * 130)
	rr.filter.reset(4096)
	rr.natChains = append(slices.Grow(rr.natChains[:0], 8+total+3*ports), chainServices, chainNodePorts, chainMarkMasq, chainPostrouting)
	filterChains := []string{chainServices, chainExternalServices, chainNodePorts, chainForward, chainFirewall, chainProxyFirewall}
	r.fixedRules()
	fixedEnd := len(rr.nat)
	fixedChains := len(rr.natChains)
	spans := slices.Grow(rr.spans[:0], ports)
	shared := [3]*lines{&rr.natServices, &rr.natNodePorts, &rr.filter}
	natLines := 0
	for i := range st.Services {
		sp := st.Services[i]
		if sp.ClusterIP.Is6() != opts.IPv6 {
			continue
		}
		names := rr.portNames(sp)
		span := Span{Key: names.key, ChainsFrom: len(rr.natChains), RulesFrom: len(rr.nat) - fixedEnd}
		for k, b := range shared {
			span.Dispatch[k][0] = len(*b)
		}
		r.servicePort(sp, names)
		span.ChainsTo, span.RulesTo = len(rr.natChains), len(rr.nat)-fixedEnd
		for k, b := range shared {
			span.Dispatch[k][1] = len(*b)
		}
		rules := rr.nat[fixedEnd+span.RulesFrom:]
		span.sum = spanSum(rr.natChains[span.ChainsFrom:span.ChainsTo], rules, shared, span.Dispatch)
		if rr.Lazy {
			natLines += bytes.Count(rules, []byte{'\n'})
			rr.nat = rr.nat[:fixedEnd]
			span.RulesFrom, span.RulesTo = 0, 0
			span.port, span.names = sp, names
		}
		spans = append(spans, span)
	}
	for k, n := range rr.names {
		if n.seen != rr.gen {
			delete(rr.names, k)
		}
	}
	// Must stay the last rule(s) of nat KUBE-SERVICES: node ports are
	// matched only after every cluster IP.
	const npComment = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
	ns := &rr.natServices
	tailFrom := len(*ns)
	if addrs := st.NodePortAddresses(opts.NodePortCIDRs, opts.NodePortPrimary, opts.IPv6); addrs == nil {
		// Localhost NodePorts are for the node itself. Upstream lets a
		// neighbour that sends to 127.0.0.1 (possible once route_localnet
		// is set) reach them too; here such packets skip the NodePorts and
		// are dropped by KUBE-FIREWALL (CVE-2020-8558).
		switch {
		case opts.IPv6:
			// IPv6 has no route_localnet: ::1 never reaches a NodePort.
			ns.rule(chainServices).comment("block localhost nodeports").w("-d", "::1/128", "-j", "RETURN").end()
		case opts.LocalhostNodePorts:
			ns.rule(chainServices).comment("localhost NodePorts answer only this node").
				w("!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-j", "RETURN").end()
		default:
			ns.rule(chainServices).comment("block localhost nodeports").w("-d", "127.0.0.0/8", "-j", "RETURN").end()
		}
		ns.rule(chainServices).comment(npComment).w("-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts).end()
	} else {
		for _, a := range addrs {
			// Loopback only where localhost NodePorts are on (never for
			// IPv6, which has no route_localnet), as upstream.
			if a.IsLoopback() && (opts.IPv6 || !opts.LocalhostNodePorts) {
				continue
			}
			ns.rule(chainServices).comment(npComment).w("-d").addr(a).w("-j", chainNodePorts).end()
		}
	}
	rr.spans = spans

	// The canary chains stay empty; if one disappears, someone flushed the
	// tables and a full sync is due (see Monitor).
	natRules := []byte(rr.nat)
	var lazy *lazyRender
	if rr.Lazy {
		lazy = &lazyRender{opts: opts, node: st.Node, largeCluster: r.largeCluster}
	}
	return &Ruleset{
		lazy:     lazy,
		natLines: natLines,
		Tables: []TableRules{
			{Name: "mangle", Chains: []string{ChainCanary}},
			{Name: "filter", Chains: append(filterChains, ChainCanary), Rules: [][]byte{rr.filter}},
			{Name: "nat", Chains: append(rr.natChains, ChainCanary), Rules: [][]byte{rr.natServices, rr.natNodePorts, natRules}},
		},
		ServiceSpans:   spans,
		fixedNatChains: rr.natChains[2:fixedChains], // after KUBE-SERVICES and KUBE-NODEPORTS
		fixedNatRules:  natRules[:fixedEnd],
		perServiceNat:  natRules[fixedEnd:],
		natChains:      rr.natChains,
		natTail:        rr.natServices[tailFrom:],
		dispatch:       [][]byte{rr.natServices, rr.natNodePorts},
		shared:         [3][]byte{rr.natServices, rr.natNodePorts, rr.filter},
	}
}

// sumSeed seeds the Service port fingerprints: one per process, so that
// Rulesets from different Renderers compare.
var sumSeed = maphash.MakeSeed()

// spanSum fingerprints a Service port's nat chains, its nat rules and its
// lines in the shared chains (a new NodePort changes only those).
func spanSum(chains []string, rules []byte, shared [3]*lines, dispatch [3][2]int) uint64 {
	var h maphash.Hash
	h.SetSeed(sumSeed)
	for _, c := range chains {
		h.WriteString(c)
		h.WriteByte('\n')
	}
	h.Write(rules)
	for k, r := range dispatch {
		h.WriteByte(0)
		h.Write((*shared[k])[r[0]:r[1]])
	}
	return h.Sum64()
}

// lazyRender is what rendering a Service port's nat rules again takes.
type lazyRender struct {
	opts         Options
	node         model.Node
	largeCluster bool
	// scratch renders, so that the Renderer's buffers are left alone.
	scratch Renderer
}

// portRules appends the nat rules of the Service ports in spans to dst.
func (rs *Ruleset) portRules(dst []byte, spans []Span) []byte {
	if rs.lazy == nil {
		if len(spans) == 0 {
			return dst
		}
		return append(dst, rs.perServiceNat[spans[0].RulesFrom:spans[len(spans)-1].RulesTo]...)
	}
	l := rs.lazy
	r := &renderer{Renderer: &l.scratch, opts: l.opts, node: l.node, largeCluster: l.largeCluster}
	for _, sp := range spans {
		l.scratch.nat, l.scratch.natServices, l.scratch.natNodePorts, l.scratch.filter = lines(dst), l.scratch.natServices[:0], l.scratch.natNodePorts[:0], l.scratch.filter[:0]
		l.scratch.natChains = l.scratch.natChains[:0]
		r.servicePort(sp.port, sp.names)
		dst = l.scratch.nat
	}
	l.scratch.nat = nil
	return dst
}

// natTables are rs's Tables with every nat rule in them.
func (rs *Ruleset) natTables() []TableRules {
	if rs.lazy == nil {
		return rs.Tables
	}
	tables := slices.Clone(rs.Tables)
	for i, t := range tables {
		if t.Name == "nat" {
			all := rs.portRules(slices.Clone(rs.fixedNatRules), rs.ServiceSpans)
			tables[i].Rules = [][]byte{rs.dispatch[0], rs.dispatch[1], all}
		}
	}
	return tables
}

// RuleLines is how many rules rs puts in table.
func (rs *Ruleset) RuleLines(table string) int {
	n := 0
	for _, t := range rs.Tables {
		if t.Name == table {
			for _, r := range t.Rules {
				n += bytes.Count(r, []byte{'\n'})
			}
		}
	}
	if table == "nat" {
		n += rs.natLines
	}
	return n
}

// portNames returns the names of a Service port, marked as used by this
// render.
func (rr *Renderer) portNames(sp *model.ServicePort) *portNames {
	k := portKey{sp.Name, sp.Protocol}
	n := rr.names[k]
	if n == nil {
		n = newPortNames(sp.Name, sp.Protocol)
		rr.names[k] = n
	}
	// Endpoint names of endpoints long gone are dropped now and then; room
	// for the port's endpoints is made at once.
	if len(n.seps) > 2*len(sp.Endpoints)+16 {
		n.seps = n.seps[:0]
	}
	if cap(n.seps) < len(sp.Endpoints) {
		n.seps = slices.Grow(n.seps, len(sp.Endpoints)-len(n.seps))
	}
	n.seen = rr.gen
	return n
}

// renderer is one Render's state.
type renderer struct {
	*Renderer
	opts Options
	// node decides which endpoints are local and what the firewall allows.
	node model.Node
	// largeCluster drops per-endpoint comments, as upstream does above
	// largeClusterEndpoints endpoints.
	largeCluster bool
}

func (r *renderer) fixedRules() {
	// As iptables-save prints it.
	masqMark := "0x" + strconv.FormatUint(uint64(r.opts.Mark()), 16)
	n := &r.nat
	n.rule(chainMarkMasq).w("-j", "MARK", "--or-mark", masqMark).end()
	n.rule(chainPostrouting).w("-m", "mark", "!", "--mark", masqMark+"/"+masqMark, "-j", "RETURN").end()
	// Clear the mark so that a packet re-entering the stack (e.g. after
	// IPsec) is not masqueraded twice.
	n.rule(chainPostrouting).w("-j", "MARK", "--xor-mark", masqMark).end()
	n.rule(chainPostrouting).comment("kubernetes service traffic requiring SNAT").w("-j", "MASQUERADE", "--random-fully").end()

	f := &r.filter
	if r.opts.LocalhostNodePorts && !r.opts.IPv6 {
		f.rule(chainFirewall).comment("block incoming localnet connections").
			w("-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP").end()
	}
	if !r.opts.ConntrackTCPLiberal {
		f.rule(chainForward).w("-m", "conntrack", "--ctstate", "INVALID")
		if r.opts.NFAcct {
			f.w("-m", "nfacct", "--nfacct-name", NFAcctInvalidDropped)
		}
		f.w("-j", "DROP").end()
	}
	f.rule(chainForward).comment("kubernetes forwarding rules").w("-m", "mark", "--mark", masqMark+"/"+masqMark, "-j", "ACCEPT").end()
	f.rule(chainForward).comment("kubernetes forwarding conntrack rule").w("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT").end()
}

// largeClusterEndpoints is upstream's threshold above which per-endpoint
// comments are left out, to keep the restore input small.
const largeClusterEndpoints = 1000

func (r *renderer) servicePort(sp *model.ServicePort, names *portNames) {
	spn := names.spn
	proto := string(sp.Protocol)
	plan := sp.Plan(r.node)

	svcChain, svlChain, extChain, fwChain := names.svc, names.svl, names.ext, names.fw
	internalChain, externalPolicyChain := svcChain, svcChain
	if plan.InternalLocal {
		internalChain = svlChain
	}
	if plan.ExternalLocal {
		externalPolicyChain = svlChain
	}
	usesFW := plan.NATFirewall

	// What the filter table does when there is nowhere to send traffic:
	// the comment's second part and the target.
	noEndpoints, filterTarget := " has no endpoints", "REJECT"
	if plan.HasEndpoints {
		noEndpoints, filterTarget = " has no local endpoints", "DROP"
	}
	f, n, ns := &r.filter, &r.nat, &r.natServices
	// match writes the protocol and destination of a Service address.
	match := func(l *lines, ip netip.Addr) *lines {
		return l.w("-m", proto, "-p", proto, "-d").addr(ip).w("--dport").num(sp.Port)
	}

	if plan.HasInternal {
		match(ns.rule(chainServices).comment(spn, " cluster IP"), sp.ClusterIP).w("-j", internalChain).end()
	} else {
		match(f.rule(chainServices).comment(spn, noEndpoints), sp.ClusterIP).w("-j", filterTarget).end()
	}

	for _, ip := range sp.ExternalIPs {
		if plan.External {
			match(ns.rule(chainServices).comment(spn, " external IP"), ip).w("-j", extChain).end()
		}
		if !plan.HasExternal {
			match(f.rule(chainExternalServices).comment(spn, noEndpoints), ip).w("-j", filterTarget).end()
		}
	}
	for _, ip := range sp.LoadBalancerIPs {
		switch {
		case usesFW:
			match(ns.rule(chainServices).comment(spn, " loadbalancer IP"), ip).w("-j", fwChain).end()
			match(f.rule(chainProxyFirewall).comment(spn, " traffic not accepted by ", fwChain), ip).w("-j", "DROP").end()
		case plan.External:
			match(ns.rule(chainServices).comment(spn, " loadbalancer IP"), ip).w("-j", extChain).end()
		}
	}
	if !plan.HasExternal {
		for _, ip := range sp.LoadBalancerIPs {
			match(f.rule(chainExternalServices).comment(spn, noEndpoints), ip).w("-j", filterTarget).end()
		}
	}
	if sp.NodePort != 0 {
		if plan.External {
			if r.opts.LocalhostNodePorts && r.opts.NFAcct && !r.opts.IPv6 {
				// As upstream: the node's localhost NodePort packets first,
				// counted.
				r.natNodePorts.rule(chainNodePorts).comment(spn).w("-m", proto, "-p", proto, "-d", "127.0.0.0/8", "--dport").num(sp.NodePort).
					w("-m", "nfacct", "--nfacct-name", NFAcctLocalhostNodePorts, "-j", extChain).end()
			}
			r.natNodePorts.rule(chainNodePorts).comment(spn).w("-m", proto, "-p", proto, "--dport").num(sp.NodePort).w("-j", extChain).end()
		}
		if !plan.HasExternal {
			f.rule(chainExternalServices).comment(spn, noEndpoints).
				w("-m", "addrtype", "--dst-type", "LOCAL", "-m", proto, "-p", proto, "--dport").num(sp.NodePort).w("-j", filterTarget).end()
		}
	}
	if sp.HealthCheckNodePort != 0 {
		f.rule(chainNodePorts).comment(spn, " health check node port").
			w("-m", "tcp", "-p", "tcp", "--dport").num(sp.HealthCheckNodePort).w("-j", "ACCEPT").end()
	}

	if usesFW {
		r.natChains = append(r.natChains, fwChain)
		for _, src := range sp.SourceRanges {
			n.rule(fwChain).comment(spn, " loadbalancer IP").w("-s").prefix(src).w("-j", extChain).end()
		}
		if plan.FirewallAllowsLBIPs {
			for _, ip := range sp.LoadBalancerIPs {
				n.rule(fwChain).comment(spn, " loadbalancer IP").w("-s").addr(ip).w("-j", extChain).end()
			}
		}
		n.rule(fwChain).comment("other traffic to ", spn, " will be dropped by KUBE-PROXY-FIREWALL").end()
	}
	if plan.External {
		r.natChains = append(r.natChains, extChain)
		if plan.ExternalLocal {
			if pods := r.opts.LocalTraffic(r.node); pods.Known() {
				n.rule(extChain).comment("pod traffic for ", spn, " external destinations").
					local(pods, false).w("-j", svcChain).end()
			}
			n.rule(extChain).comment("masquerade LOCAL traffic for ", spn, " external destinations").
				w("-m", "addrtype", "--src-type", "LOCAL", "-j", chainMarkMasq).end()
			n.rule(extChain).comment("route LOCAL traffic for ", spn, " external destinations").
				w("-m", "addrtype", "--src-type", "LOCAL", "-j", svcChain).end()
		} else {
			n.rule(extChain).comment("masquerade traffic for ", spn, " external destinations").w("-j", chainMarkMasq).end()
		}
		if plan.HasExternal {
			n.rule(extChain).w("-j", externalPolicyChain).end()
		}
	}

	if plan.UsesCluster {
		r.policyChain(sp, names, svcChain, internalChain == svcChain, plan.Cluster)
	}
	if plan.UsesLocal {
		r.policyChain(sp, names, svlChain, internalChain == svlChain, plan.Local)
	}
	// Endpoint chains, each once, for every endpoint a policy chain uses.
	if plan.UsesCluster {
		for _, ep := range plan.Cluster {
			r.endpointChain(sp, names, ep)
		}
	}
	if plan.UsesLocal {
		for _, ep := range plan.Local {
			if !plan.UsesCluster || !slices.ContainsFunc(plan.Cluster, func(c model.Endpoint) bool { return c.IP == ep.IP && c.Port == ep.Port }) {
				r.endpointChain(sp, names, ep)
			}
		}
	}
}

// policyChain writes a KUBE-SVC or KUBE-SVL chain: the masquerade rule for
// cluster IP traffic (on the chain cluster IP traffic enters), session
// affinity, then one jump per endpoint with upstream's probabilities.
func (r *renderer) policyChain(sp *model.ServicePort, names *portNames, chain string, internal bool, eps []model.Endpoint) {
	proto := string(sp.Protocol)
	n := &r.nat
	r.natChains = append(r.natChains, chain)
	pods := r.opts.LocalTraffic(r.node)
	if internal && (r.opts.MasqueradeAll || pods.Known()) {
		n.rule(chain).comment(names.spn, " cluster IP").w("-m", proto, "-p", proto, "-d").addr(sp.ClusterIP).w("--dport").num(sp.Port)
		if !r.opts.MasqueradeAll {
			n.local(pods, true)
		}
		n.w("-j", chainMarkMasq).end()
	}
	if sp.AffinitySeconds > 0 {
		for _, ep := range eps {
			sep := names.sep(sp.Protocol, ep.AddrPort(), &r.scratch)
			n.rule(chain).comment(names.spn, " -> ", ep.String()).
				w("-m", "recent", "--name", sep, "--rcheck", "--seconds").num(sp.AffinitySeconds).w("--reap", "-j", sep).end()
		}
	}
	count := len(eps)
	for i, ep := range eps {
		sep := names.sep(sp.Protocol, ep.AddrPort(), &r.scratch)
		n.rule(chain)
		if !r.largeCluster {
			n.comment(names.spn, " -> ", ep.String())
		}
		if i < count-1 {
			n.w("-m", "statistic", "--mode", "random", "--probability", probability(count-i))
		}
		n.w("-j", sep).end()
	}
}

// endpointChain writes a KUBE-SEP chain: hairpin masquerade, then DNAT.
func (r *renderer) endpointChain(sp *model.ServicePort, names *portNames, ep model.Endpoint) {
	proto := string(sp.Protocol)
	sep := names.sep(sp.Protocol, ep.AddrPort(), &r.scratch)
	r.natChains = append(r.natChains, sep)
	n := &r.nat
	// Hairpin: a pod reaching itself through the Service must be
	// masqueraded or its reply would bypass the DNAT.
	n.rule(sep)
	if !r.largeCluster {
		n.comment(names.spn)
	}
	n.w("-s").addr(ep.IP).w("-j", chainMarkMasq).end()
	n.rule(sep)
	if !r.largeCluster {
		n.comment(names.spn)
	}
	if sp.AffinitySeconds > 0 {
		n.w("-m", "recent", "--name", sep, "--set")
	}
	n.w("-m", proto, "-p", proto, "-j", "DNAT", "--to-destination").endpoint(ep.AddrPort()).end()
}

// probabilities are 1/n for small n, printed as upstream does ("%0.10f").
var probabilities = func() (p [64]string) {
	for n := 1; n < len(p); n++ {
		p[n] = strconv.FormatFloat(1/float64(n), 'f', 10, 64)
	}
	return p
}()

func probability(n int) string {
	if n < len(probabilities) {
		return probabilities[n]
	}
	return strconv.FormatFloat(1/float64(n), 'f', 10, 64)
}

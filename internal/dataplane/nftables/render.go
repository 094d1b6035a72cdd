package nftables

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// Options are the node-wide settings that shape the rules.
type Options = dataplane.Options

// Ruleset is the whole desired content of one family's kube-proxy table:
// the fixed part every node has, then one Service per Service port with
// everything that belongs to it alone, so that it can be applied (and
// re-applied) as a unit.
type Ruleset struct {
	IPv6  bool
	Base  []BaseChain
	Fixed []Chain
	Sets  []Set
	// Counters are the named counters.
	Counters []string
	// Services are sorted by Key.
	Services []Service
}

// BaseChain is a chain attached to a netfilter hook.
type BaseChain struct {
	Chain
	Type, Hook string
	Priority   int
}

// Chain is a regular chain and its rules.
type Chain struct {
	Name  string
	Rules []Rule
}

// Set is a named set or map. Key fields are "addr", "proto", "port" and
// "slot" (ranges of numgen values, in the endpoints map).
type Set struct {
	Name  string
	Keys  []string
	IsMap bool
	// Endpoints makes a map's values endpoints ("addr . port") instead of
	// verdicts, and its keys ranges.
	Endpoints bool
	Comment   string
	// Elements that belong to the node rather than to a Service.
	Elements []Element
	// Timeout (seconds) makes a dynamic set whose elements expire
	// (session affinity).
	Timeout int32
}

// Element is one set or map element. Only the fields the set's key has are
// meaningful.
type Element struct {
	Addr    netip.Addr
	Proto   string
	Port    uint16
	Verdict verdict
	Comment string
	// Slots (first, last) and Target are an endpoints map element: the
	// numgen values that pick the endpoint.
	Slots  [2]uint32
	Target netip.AddrPort
}

// MapElement is an element and the set or map it belongs to.
type MapElement struct {
	Set string
	Element
}

// Service is everything one Service port owns: its chains, its elements in
// the shared maps and its affinity sets.
type Service struct {
	// Key identifies the Service port ("ns/name:port/proto").
	Key          string
	Chains       []Chain
	Elements     []MapElement
	AffinitySets []Set
	// sum and chainSum fingerprint the rendered Service, rules counts its
	// rules (see fingerprint). A partial sync passes unchanged Services
	// with these alone.
	sum, chainSum uint64
	rules         int
}

// Render turns the desired state into the table's content. It is pure:
// endpoint ranges (see Ranges) are numbered in the order of the Services.
func Render(st *model.State, opts Options) *Ruleset { return renderWith(st, opts, &Ranges{}) }

// renderWith is Render with the endpoint ranges numbered by ids.
func renderWith(st *model.State, opts Options, ids *Ranges) *Ruleset {
	rs := fixed(st, opts)
	used := map[string]bool{}
	for i := range st.Services {
		sp := st.Services[i]
		if sp.ClusterIP.Is6() == opts.IPv6 {
			svc := servicePort(sp, st.Node, opts, ids)
			for _, e := range svc.Elements {
				if isEndpointMap(e.Set) {
					used[e.Set] = true
				}
			}
			rs.Services = append(rs.Services, svc)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(used)) {
		rs.Sets = append(rs.Sets, endpointMapSet(m))
	}
	return rs
}

// addrType is the nft type of an address of the family.
func addrType(v6 bool) string {
	if v6 {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// fixed is the part of the table that does not depend on Services: hooks,
// dispatch through the maps, masquerading.
func fixed(st *model.State, opts Options) *Ruleset {
	v6 := opts.IPv6
	ctJump := func(c string) Rule { return rule(matchCtNew{}, jump(c)) }
	rs := &Ruleset{IPv6: v6}
	mark := opts.Mark()
	// The base chains are upstream's, hook for hook and priority for
	// priority, so that either proxy can take the table over from the
	// other (see read). The firewall runs before DNAT, on the destination
	// the client used; the endpoint and cluster IP checks after it, the
	// node's own traffic included: an externalTrafficPolicy: Local Service
	// without local endpoints still serves the node (short-circuit).
	rs.Base = []BaseChain{
		{Chain{Name: "filter-prerouting-pre-dnat", Rules: []Rule{ctJump(chainFirewallCheck)}}, "filter", "prerouting", -110},
		{Chain{Name: "filter-output-pre-dnat", Rules: []Rule{ctJump(chainFirewallCheck)}}, "filter", "output", -110},
		{Chain{Name: "filter-input", Rules: []Rule{ctJump(chainNodePortEPCheck), ctJump(chainServiceEPCheck)}}, "filter", "input", 0},
		{Chain{Name: "filter-forward", Rules: []Rule{ctJump(chainServiceEPCheck), ctJump(chainClusterIPsCheck)}}, "filter", "forward", 0},
		{Chain{Name: "filter-output", Rules: []Rule{ctJump(chainServiceEPCheck), ctJump(chainClusterIPsCheck)}}, "filter", "output", 0},
		{Chain{Name: "nat-prerouting", Rules: []Rule{rule(jump(chainServices))}}, "nat", "prerouting", -100},
		{Chain{Name: "nat-output", Rules: []Rule{rule(jump(chainServices))}}, "nat", "output", -100},
		// Hairpin: a pod DNATed to itself must be masqueraded, or its reply
		// would skip the DNAT. Upstream marks it in each endpoint chain.
		{Chain{Name: "nat-postrouting", Rules: []Rule{rule(matchCtDNAT{}, matchSet{[]keyField{fSaddr, fDaddr}, setHairpin}, markOr{mark}), rule(jump(chainMasquerading))}}, "nat", "postrouting", 100},
	}
	concat3 := []keyField{fDaddr, fL4Proto, fDport}
	nodePorts := nodePortAddresses(st, opts)
	var npMatch []stmt
	if nodePorts == nil {
		npMatch = []stmt{matchFibLocal{}, matchAddr{p: dataplane.Loopback(v6), neg: true}}
	} else {
		npMatch = []stmt{matchAddrSet{set: setNodePortIPs}}
	}
	// Reached only by packets no Service rule rewrote: a cluster IP's
	// other ports are rejected, and the Service CIDRs' unallocated
	// addresses dropped (as upstream), instead of being routed on.
	ipCheck := Chain{Name: chainClusterIPsCheck, Rules: []Rule{{Stmts: []stmt{matchAddrSet{set: setClusterIPs}, reject{}}, Comment: "Reject traffic to invalid ports of ClusterIPs"}}}
	for _, p := range st.ServiceCIDRs {
		if p.Addr().Is6() == v6 {
			ipCheck.Rules = append(ipCheck.Rules, Rule{Stmts: []stmt{matchAddr{p: p}, drop()}, Comment: "Drop traffic to unallocated ClusterIPs"})
		}
	}
	rs.Fixed = []Chain{
		ipCheck,
		{Name: chainFirewallCheck, Rules: []Rule{rule(vmapLookup{concat3, mapFirewallIPs})}},
		{Name: chainMasquerading, Rules: []Rule{rule(matchMarkClear{mark}, returnV()), rule(markXor{mark}), rule(masq{})}},
		{Name: chainNodePortEPCheck, Rules: []Rule{rule(append(append([]stmt{}, npMatch[len(npMatch)-1]), vmapLookup{[]keyField{fL4Proto, fDport}, mapNoEndpointNodePorts})...)}},
		{Name: chainReject, Rules: []Rule{rule(reject{})}},
		{Name: chainServices, Rules: []Rule{
			rule(vmapLookup{concat3, mapServiceIPs}),
			rule(append(append([]stmt{}, npMatch...), vmapLookup{[]keyField{fL4Proto, fDport}, mapServiceNodePorts})...),
		}},
		{Name: chainServiceEPCheck, Rules: []Rule{rule(vmapLookup{concat3, mapNoEndpointServices})}},
	}
	addr := []string{"addr"}
	triple := []string{"addr", "proto", "port"}
	pair := []string{"proto", "port"}
	rs.Sets = []Set{
		{Name: setClusterIPs, Keys: addr, Comment: "Active ClusterIPs"},
		{Name: mapFirewallIPs, Keys: triple, IsMap: true, Comment: "destinations that are subject to LoadBalancerSourceRanges"},
		{Name: mapNoEndpointNodePorts, Keys: pair, IsMap: true, Comment: "vmap to drop or reject packets to service nodeports with no endpoints"},
		{Name: mapNoEndpointServices, Keys: triple, IsMap: true, Comment: "vmap to drop or reject packets to services with no endpoints"},
		{Name: mapServiceIPs, Keys: triple, IsMap: true, Comment: "ClusterIP, ExternalIP and LoadBalancer IP traffic"},
		{Name: mapServiceNodePorts, Keys: pair, IsMap: true, Comment: "NodePort traffic"},
		{Name: setHairpin, Keys: []string{"addr", "addr"}, Comment: "each endpoint twice: a connection from it DNATed to it is masqueraded"},
	}
	if nodePorts != nil {
		np := Set{Name: setNodePortIPs, Keys: addr, Comment: "IPs that accept NodePort traffic"}
		for _, a := range nodePorts {
			np.Elements = append(np.Elements, Element{Addr: a})
		}
		rs.Sets = append(rs.Sets, np)
	}
	localhostNodePorts(rs, opts)
	return rs
}

// localhostNodePorts adds, with upstream's gate, the rejection of NodePort
// traffic to loopback that nothing serves: looked up by protocol and port
// among the table's NodePorts (see servicePort), counted per protocol.
// Only new connections of the node's own reach it (filter input): other
// hosts' packets to loopback are martians the kernel drops.
func localhostNodePorts(rs *Ruleset, opts Options) {
	protos := localhostRejects(opts)
	if len(protos) == 0 {
		return
	}
	for _, p := range protos {
		rs.Counters = append(rs.Counters, localhostRejectCounter(p))
		rs.Fixed = append(rs.Fixed, Chain{Name: localhostRejectChain(p), Rules: []Rule{rule(counterRef{localhostRejectCounter(p)}, reject{})}})
	}
	rs.Sets = append(rs.Sets, Set{Name: mapLocalhostReject, Keys: []string{"proto", "port"}, IsMap: true, Comment: "localhost NodePorts rejected by kube-proxy"})
	for i := range rs.Fixed {
		if c := &rs.Fixed[i]; c.Name == chainNodePortEPCheck {
			c.Rules = append(c.Rules, rule(matchAddr{p: dataplane.Loopback(opts.IPv6)}, vmapLookup{[]keyField{fL4Proto, fDport}, mapLocalhostReject}))
		}
	}
}

// servicePort renders one Service port as upstream's nftables proxier does
// (see policy for where it differs), its endpoint ranges numbered by ids.
func servicePort(sp *model.ServicePort, node model.Node, opts Options, ids *Ranges) Service {
	v6 := opts.IPv6
	spn := sp.Name.String()
	svc := Service{Key: spn + "/" + string(sp.Protocol)}
	proto := strings.ToLower(string(sp.Protocol))
	port := uint16(sp.Port)
	base := portBase(sp)
	clusterChain, localChain := "service-"+base, "local-"+base
	extChain, fwChain := "external-"+base, "firewall-"+base

	plan := sp.Plan(node)
	pods := opts.LocalTraffic(node)
	// Marked for masquerading, as upstream, in the rule itself.
	setMasq := markOr{opts.Mark()}
	internalChain, externalPolicyChain := clusterChain, clusterChain
	if plan.InternalLocal {
		internalChain = localChain
	}
	if plan.ExternalLocal {
		externalPolicyChain = localChain
	}

	// What the filter maps do when there is nowhere to send traffic.
	internalNone, externalNone := drop(), drop()
	if !plan.HasEndpoints {
		internalNone, externalNone = goTo(chainReject), goTo(chainReject)
	}
	spn = truncateComment(spn)
	// Room for the usual elements at once (an endpoint range each, the
	// cluster IP's and a few more): grown one by one, a first sync at 100k
	// allocated half a gigabyte more.
	svc.Elements = make([]MapElement, 0, len(sp.Endpoints)+4+len(sp.ExternalIPs)+len(sp.LoadBalancerIPs))
	el := func(set string, e Element) { svc.Elements = append(svc.Elements, MapElement{set, e}) }
	addrEl := func(a netip.Addr, v verdict, comment string) Element {
		return Element{Addr: a, Proto: proto, Port: port, Verdict: v, Comment: comment}
	}

	el(setClusterIPs, Element{Addr: sp.ClusterIP})
	if plan.HasInternal {
		el(mapServiceIPs, addrEl(sp.ClusterIP, goTo(internalChain), ""))
	} else {
		el(mapNoEndpointServices, addrEl(sp.ClusterIP, internalNone, spn))
	}
	for _, ip := range sp.ExternalIPs {
		if ip.Is6() != v6 {
			continue
		}
		if plan.External {
			el(mapServiceIPs, addrEl(ip, goTo(extChain), ""))
		}
		if !plan.HasExternal {
			el(mapNoEndpointServices, addrEl(ip, externalNone, spn))
		}
	}
	for _, ip := range sp.LoadBalancerIPs {
		if ip.Is6() != v6 {
			continue
		}
		if plan.External {
			el(mapServiceIPs, addrEl(ip, goTo(extChain), ""))
		}
		if plan.Firewall {
			el(mapFirewallIPs, addrEl(ip, goTo(fwChain), ""))
		}
		if !plan.HasExternal {
			el(mapNoEndpointServices, addrEl(ip, externalNone, spn))
		}
	}
	if sp.NodePort != 0 {
		np := Element{Proto: proto, Port: uint16(sp.NodePort)}
		if plan.External {
			np.Verdict = goTo(extChain)
			el(mapServiceNodePorts, np)
		}
		if !plan.HasExternal {
			np.Verdict, np.Comment = externalNone, spn
			el(mapNoEndpointNodePorts, np)
		}
		if slices.Contains(localhostRejects(opts), sp.Protocol) {
			el(mapLocalhostReject, Element{Proto: proto, Port: uint16(sp.NodePort), Verdict: goTo(localhostRejectChain(sp.Protocol))})
		}
	}

	// Chains, in upstream's order of creation. Endpoint chains only with
	// session affinity, which needs one per endpoint; otherwise the policy
	// chains pick from the endpoints maps (see policy).
	affine := sp.AffinitySeconds > 0
	epChains := map[string]string{}
	affinity := map[string]string{}
	var reachable []model.Endpoint
	hairpin := map[netip.Addr]bool{}
	note := func(eps []model.Endpoint) {
		for _, ep := range eps {
			// Only a pod on this node is DNATed to itself here.
			if ep.IsLocal && !hairpin[ep.IP] {
				hairpin[ep.IP] = true
				el(setHairpin, Element{Addr: ep.IP})
			}
			if k := ep.String(); affine && epChains[k] == "" {
				b := endpointBase(sp, ep)
				epChains[k] = "endpoint-" + b
				affinity[k] = affinitySetPrefix + b
				reachable = append(reachable, ep)
			}
		}
	}
	if plan.UsesCluster {
		note(plan.Cluster)
	}
	if plan.UsesLocal {
		note(plan.Local)
	}

	if plan.External {
		c := Chain{Name: extChain}
		if !plan.ExternalLocal {
			// Endpoints may be on other nodes: masquerade so replies
			// come back through this one.
			c.Rules = append(c.Rules, rule(setMasq))
		} else {
			if pods.Known() {
				c.Rules = append(c.Rules, Rule{Stmts: []stmt{local(pods, false), goTo(clusterChain)}, Comment: "short-circuit pod traffic"})
			}
			c.Rules = append(c.Rules,
				Rule{Stmts: []stmt{matchFibLocal{src: true}, setMasq}, Comment: "masquerade local traffic"},
				Rule{Stmts: []stmt{matchFibLocal{src: true}, goTo(clusterChain)}, Comment: "short-circuit local traffic"})
		}
		if plan.HasExternal {
			c.Rules = append(c.Rules, rule(goTo(externalPolicyChain)))
		}
		svc.Chains = append(svc.Chains, c)
	}
	// Unlike iptables mode's, the firewall filters before DNAT (see
	// fixed), whether or not the Service has endpoints.
	if plan.Firewall {
		c := Chain{Name: fwChain}
		for _, r := range sp.SourceRanges {
			if r.Addr().Is6() == v6 {
				c.Rules = append(c.Rules, rule(matchAddr{src: true, p: r}, returnV()))
			}
		}
		if plan.FirewallAllowsLBIPs {
			for _, ip := range sp.LoadBalancerIPs {
				if ip.Is6() == v6 {
					c.Rules = append(c.Rules, rule(addrIs(true, ip), returnV()))
				}
			}
		}
		c.Rules = append(c.Rules, rule(drop()))
		svc.Chains = append(svc.Chains, c)
	}
	policy := func(name string, internal bool, eps []model.Endpoint) {
		c := Chain{Name: name}
		if internal {
			m := []stmt{addrIs(false, sp.ClusterIP), matchPort{proto, port}}
			switch {
			case opts.MasqueradeAll:
				c.Rules = append(c.Rules, rule(append(m, setMasq)...))
			case pods.Known():
				c.Rules = append(c.Rules, rule(append(m, local(pods, true), setMasq)...))
			}
		}
		if affine {
			for _, ep := range eps {
				k := ep.String()
				c.Rules = append(c.Rules, rule(matchAddrSet{src: true, set: affinity[k]}, goTo(epChains[k])))
			}
		}
		// Without affinity the chain picks an endpoint by one lookup in the
		// endpoints map: a random number in the chain's own range of
		// numgen values, of which each endpoint has an equal share. An
		// endpoint change is then a change of map elements only, which the
		// kernel commits without validating the whole table again (a new
		// rule or verdict makes it walk every chain: 100 ms and more at 10k
		// Services). Upstream jumps through an anonymous verdict map to an
		// endpoint chain each.
		id, ok := uint32(0), false
		if !affine && ids != nil && len(eps) <= slotsPerRange {
			id, ok = ids.For(name)
		}
		if ok {
			c.Rules = append(c.Rules, rule(matchL4{proto}, dnatMap{id}))
			n := uint64(len(eps))
			for i, ep := range eps {
				first, last := uint64(i)*slotsPerRange/n, (uint64(i)+1)*slotsPerRange/n-1
				el(endpointMap(id), Element{Slots: [2]uint32{id<<rangeBits | uint32(first), id<<rangeBits | uint32(last)}, Target: ep.AddrPort()})
			}
			svc.Chains = append(svc.Chains, c)
			return
		}
		// A ladder picks each endpoint with probability 1/N, as iptables'
		// statistic rules do: with affinity through endpoint chains, and
		// (should the map's ranges run out) DNAT by DNAT.
		for i, ep := range eps {
			r := rule(matchL4{proto}, dnat{ep.IP, uint16(ep.Port)})
			if affine {
				r = rule(goTo(epChains[ep.String()]))
			}
			if left := len(eps) - i; left > 1 {
				r.Stmts = append([]stmt{numgenPick{left}}, r.Stmts...)
			}
			c.Rules = append(c.Rules, r)
		}
		svc.Chains = append(svc.Chains, c)
	}
	if plan.UsesCluster {
		policy(clusterChain, internalChain == clusterChain, plan.Cluster)
	}
	if plan.UsesLocal {
		policy(localChain, internalChain == localChain, plan.Local)
	}
	for _, ep := range reachable {
		k := ep.String()
		c := Chain{Name: epChains[k]}
		c.Rules = append(c.Rules, rule(updateSet{affinity[k]}))
		svc.AffinitySets = append(svc.AffinitySets, Set{Name: affinity[k], Keys: []string{"addr"}, Timeout: sp.AffinitySeconds})
		c.Rules = append(c.Rules, rule(matchL4{proto}, dnat{ep.IP, uint16(ep.Port)}))
		svc.Chains = append(svc.Chains, c)
	}
	return svc
}

// nodePortAddresses are the addresses NodePorts answer on, or nil for every
// local address but loopback (as upstream's nftables mode, which has no
// localhost NodePorts).
func nodePortAddresses(st *model.State, opts Options) []netip.Addr {
	addrs := st.NodePortAddresses(opts.NodePortCIDRs, opts.NodePortPrimary, opts.IPv6)
	if addrs == nil {
		return nil
	}
	return slices.DeleteFunc(addrs, netip.Addr.IsLoopback)
}

// commentMax is the longest comment the kernel keeps whole enough for nft
// to load a listing back ("comment too long" past it), as upstream's.
const commentMax = 128

// truncateComment cuts s to commentMax bytes; comments only explain.
func truncateComment(s string) string {
	if len(s) > commentMax {
		return s[:commentMax]
	}
	return s
}

func timeoutDuration(secs int32) time.Duration { return time.Duration(secs) * time.Second }

// rangeBits are the bits of a key that pick a slot in a range: each
// Service chain has 16,384 numgen values in the endpoints maps, and a
// Service with more endpoints than that gets a ladder instead. The rest of
// the 32-bit key numbers the range: 262,142 Service chains get one (with
// ranges of 65,536 a table ran out at 65,534, and past that an endpoint
// change rewrote a chain, which makes the kernel validate the whole table:
// 225 ms more per change at 100k Services).
const rangeBits = 14

// slotsPerRange is how many numgen values each Service chain has in the
// endpoints maps.
const slotsPerRange = 1 << rangeBits

// maxRange is the last range number: keys are 32 bits, and the last
// range's end must still fit.
const maxRange = 1<<(32-rangeBits) - 2

// Ranges numbers the Service chains' ranges in the endpoints maps: range n
// is the numgen values n<<rangeBits to n<<rangeBits + slotsPerRange - 1. A
// number stays with its chain
// while the chain exists, because the chain's rule names it; reserved ones
// (in the kernel, left by another process) are not handed out.
type Ranges struct {
	byChain  map[string]uint32
	taken    map[uint32]bool
	reserved map[uint32]bool
	next     uint32
}

// For returns the chain's range number, giving it one if it has none; false
// when all are taken.
func (r *Ranges) For(chain string) (uint32, bool) {
	if id, ok := r.byChain[chain]; ok {
		return id, true
	}
	if r.byChain == nil {
		r.byChain, r.taken = map[string]uint32{}, map[uint32]bool{}
	}
	if len(r.taken)+len(r.reserved) >= maxRange {
		// All are out (above 262,142 Service chains): said at once, not
		// after a walk over all of them for every chain past the last.
		return 0, false
	}
	for tries := 0; tries < maxRange; tries++ {
		r.next = r.next%maxRange + 1
		if !r.taken[r.next] && !r.reserved[r.next] {
			r.byChain[chain], r.taken[r.next] = r.next, true
			return r.next, true
		}
	}
	return 0, false
}

// Keep forgets the chains keep does not hold, so that their numbers can go
// to others.
func (r *Ranges) Keep(keep func(chain string) bool) {
	for c, id := range r.byChain {
		if !keep(c) {
			delete(r.byChain, c)
			delete(r.taken, id)
		}
	}
}

// Reserve keeps these numbers from being handed out; nil lifts it.
func (r *Ranges) Reserve(ids map[uint32]bool) { r.reserved = ids }

package iptables

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Options are the node-wide settings that shape the rules.
type Options struct {
	// ClusterCIDR is the pod CIDR (--cluster-cidr). Traffic to a cluster IP
	// from outside it is masqueraded; when unset, only external traffic is.
	ClusterCIDR netip.Prefix
	// MasqueradeAll masquerades all traffic to cluster IPs (--masquerade-all).
	MasqueradeAll bool
	// LocalhostNodePorts makes NodePorts answer on 127.0.0.1 and adds the
	// CVE-2020-8558 rule that keeps them unreachable from other hosts.
	LocalhostNodePorts bool
	// NodePortAddresses limits NodePorts to these addresses of the node
	// (--nodeport-addresses); empty means every local address.
	NodePortAddresses []netip.Addr
	// NodePortPrimary adds the node's primary addresses (from its Node
	// object) to NodePortAddresses ("primary").
	NodePortPrimary bool
	// IPv6 renders the IPv6 family (ip6tables); the other family's Service
	// ports are left out. ClusterCIDR must be of the same family.
	IPv6 bool
}

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
	// perServiceNat holds the rules ServiceSpans index into.
	perServiceNat []byte
	natChains     []string
	// dispatch are the nat KUBE-SERVICES and KUBE-NODEPORTS rules.
	dispatch [][]byte
	// shared are the buffers Span.Dispatch indexes: nat KUBE-SERVICES and
	// KUBE-NODEPORTS rules, and the filter rules.
	shared [3][]byte
}

// sharedTables names the table of each of Ruleset.shared.
var sharedTables = [3]string{"nat", "nat", "filter"}

// Span is one Service port's part of the nat table: chains
// natChains[ChainsFrom:ChainsTo] and rules perServiceNat[RulesFrom:RulesTo].
type Span struct {
	// Key identifies the Service port ("ns/name:port/proto").
	Key                  string
	ChainsFrom, ChainsTo int
	RulesFrom, RulesTo   int
	// Dispatch are the Service port's lines in the shared chains, as offsets
	// into Ruleset.shared: nat KUBE-SERVICES, nat KUBE-NODEPORTS, filter.
	Dispatch [3][2]int
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
func Render(st *model.State, opts Options) *Ruleset {
	r := &renderer{opts: opts}
	total, ports := 0, 0
	for i := range st.Services {
		if st.Services[i].ClusterIP.Is6() == opts.IPv6 {
			total += len(st.Services[i].Endpoints)
			ports++
		}
	}
	r.largeCluster = total > largeClusterEndpoints
	// Sized from what a Service port and an endpoint take, so the buffers
	// are not regrown (and copied) while rendering large clusters.
	r.nat.rules.Grow(total*400 + ports*600)
	r.nat.chains = append(make([]string, 0, 8+total+3*ports), chainServices, chainNodePorts, chainMarkMasq, chainPostrouting)
	r.natServices.Grow(ports * 160)
	r.natNodePorts.Grow(ports * 130)
	r.filter.chains = []string{chainServices, chainExternalServices, chainNodePorts, chainForward, chainFirewall, chainProxyFirewall}
	r.fixedRules()
	fixedEnd := r.nat.rules.Len()
	fixedChains := len(r.nat.chains)
	var spans []Span
	for i := range st.Services {
		if st.Services[i].ClusterIP.Is6() == opts.IPv6 {
			sp := Span{Key: st.Services[i].Name.String() + "/" + string(st.Services[i].Protocol),
				ChainsFrom: len(r.nat.chains), RulesFrom: r.nat.rules.Len() - fixedEnd}
			shared := [3]*lineBuf{&r.natServices, &r.natNodePorts, &r.filter.rules}
			for k, b := range shared {
				sp.Dispatch[k][0] = b.Len()
			}
			r.servicePort(&st.Services[i])
			sp.ChainsTo, sp.RulesTo = len(r.nat.chains), r.nat.rules.Len()-fixedEnd
			for k, b := range shared {
				sp.Dispatch[k][1] = b.Len()
			}
			spans = append(spans, sp)
		}
	}
	// Must stay the last rule(s) of nat KUBE-SERVICES: node ports are
	// matched only after every cluster IP.
	const npComment = `"kubernetes service nodeports; NOTE: this must be the last rule in this chain"`
	if addrs := st.NodePortAddresses(opts.NodePortAddresses, opts.NodePortPrimary, opts.IPv6); addrs == nil {
		// Localhost NodePorts are for the node itself. Upstream lets a
		// neighbour that sends to 127.0.0.1 (possible once route_localnet
		// is set) reach them too; here such packets skip the NodePorts and
		// are dropped by KUBE-FIREWALL (CVE-2020-8558).
		switch {
		case opts.IPv6:
			// IPv6 has no route_localnet: ::1 never reaches a NodePort.
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", `"block localhost nodeports"`, "-d", "::1/128", "-j", "RETURN")
		case opts.LocalhostNodePorts:
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", `"localhost NodePorts answer only this node"`,
				"!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-j", "RETURN")
		default:
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", `"block localhost nodeports"`, "-d", "127.0.0.0/8", "-j", "RETURN")
		}
		r.natServices.line("-A", chainServices, "-m", "comment", "--comment", npComment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)
	} else {
		for _, a := range addrs {
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", npComment, "-d", a.String(), "-j", chainNodePorts)
		}
	}

	// The canary chains stay empty; if one disappears, someone flushed the
	// tables and a full sync is due (see Monitor).
	natRules := r.nat.rules.Bytes()
	return &Ruleset{
		Tables: []TableRules{
			{Name: "mangle", Chains: []string{ChainCanary}},
			{Name: "filter", Chains: append(r.filter.chains, ChainCanary), Rules: [][]byte{r.filter.rules.Bytes()}},
			{Name: "nat", Chains: append(r.nat.chains, ChainCanary), Rules: [][]byte{r.natServices.Bytes(), r.natNodePorts.Bytes(), natRules}},
		},
		ServiceSpans:   spans,
		fixedNatChains: r.nat.chains[2:fixedChains], // after KUBE-SERVICES and KUBE-NODEPORTS
		fixedNatRules:  natRules[:fixedEnd],
		perServiceNat:  natRules[fixedEnd:],
		natChains:      r.nat.chains,
		dispatch:       [][]byte{r.natServices.Bytes(), r.natNodePorts.Bytes()},
		shared:         [3][]byte{r.natServices.Bytes(), r.natNodePorts.Bytes(), r.filter.rules.Bytes()},
	}
}

type tableBuf struct {
	chains []string
	rules  lineBuf
}

type renderer struct {
	opts Options
	// largeCluster drops per-endpoint comments, as upstream does above
	// largeClusterEndpoints endpoints.
	largeCluster bool
	// sepByEP caches the KUBE-SEP names of the Service port being rendered.
	sepByEP     map[string]string
	filter, nat tableBuf
	// nat KUBE-SERVICES and KUBE-NODEPORTS rules are collected apart so
	// that the dispatch chains read in one block.
	natServices, natNodePorts lineBuf
}

func (r *renderer) fixedRules() {
	n := &r.nat.rules
	n.line("-A", chainMarkMasq, "-j", "MARK", "--or-mark", masqMark)
	n.line("-A", chainPostrouting, "-m", "mark", "!", "--mark", masqMark+"/"+masqMark, "-j", "RETURN")
	// Clear the mark so that a packet re-entering the stack (e.g. after
	// IPsec) is not masqueraded twice.
	n.line("-A", chainPostrouting, "-j", "MARK", "--xor-mark", masqMark)
	n.line("-A", chainPostrouting, "-m", "comment", "--comment", `"kubernetes service traffic requiring SNAT"`, "-j", "MASQUERADE", "--random-fully")

	f := &r.filter.rules
	if r.opts.LocalhostNodePorts && !r.opts.IPv6 {
		f.line("-A", chainFirewall, "-m", "comment", "--comment", `"block incoming localnet connections"`,
			"-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
	}
	f.line("-A", chainForward, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	f.line("-A", chainForward, "-m", "comment", "--comment", `"kubernetes forwarding rules"`, "-m", "mark", "--mark", masqMark+"/"+masqMark, "-j", "ACCEPT")
	f.line("-A", chainForward, "-m", "comment", "--comment", `"kubernetes forwarding conntrack rule"`, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
}

// largeClusterEndpoints is upstream's threshold above which per-endpoint
// comments are left out, to keep the restore input small.
const largeClusterEndpoints = 1000

func (r *renderer) servicePort(sp *model.ServicePort) {
	spn := sp.Name.String()
	proto := string(sp.Protocol)
	port := strconv.Itoa(int(sp.Port))
	clusterEps, localEps := sp.ClusterEndpoints(), sp.LocalEndpoints()
	hasEndpoints := len(clusterEps) > 0 || len(localEps) > 0

	svcChain := ServiceChain(sp.Name, sp.Protocol)
	svlChain := LocalChain(sp.Name, sp.Protocol)
	extChain := ExternalChain(sp.Name, sp.Protocol)
	fwChain := FirewallChain(sp.Name, sp.Protocol)

	// As upstream: the cluster policy chain also serves pods and the node
	// reaching an external address of an externalTrafficPolicy: Local
	// Service, so it exists whenever the Service is reachable from outside.
	usesSVC := len(clusterEps) > 0 && (!sp.InternalPolicyLocal || sp.ExternallyAccessible())
	usesSVL := len(localEps) > 0 && (sp.InternalPolicyLocal || sp.ExternalPolicyLocal)

	internalChain, hasInternal := svcChain, len(clusterEps) > 0
	if sp.InternalPolicyLocal {
		internalChain, hasInternal = svlChain, len(localEps) > 0
	}
	externalPolicyChain, hasExternal := svcChain, len(clusterEps) > 0
	if sp.ExternalPolicyLocal {
		externalPolicyChain, hasExternal = svlChain, len(localEps) > 0
	}
	usesEXT := hasExternal && sp.ExternallyAccessible()
	usesFW := usesEXT && len(sp.SourceRanges) > 0 && len(sp.LoadBalancerIPs) > 0

	// What the filter table does when there is nowhere to send traffic.
	filterTarget := func(policyLocal bool) (target, comment string) {
		if !hasEndpoints {
			return "REJECT", quote(spn + " has no endpoints")
		}
		return "DROP", quote(spn + " has no local endpoints")
	}
	f := &r.filter.rules
	n := &r.nat.rules

	clusterComment := quote(spn + " cluster IP")
	clusterIP := sp.ClusterIP.String()
	if hasInternal {
		r.natServices.line("-A", chainServices, "-m", "comment", "--comment", clusterComment,
			"-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "-j", internalChain)
	} else {
		t, c := filterTarget(sp.InternalPolicyLocal)
		f.line("-A", chainServices, "-m", "comment", "--comment", c, "-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "-j", t)
	}

	extTarget, extComment := filterTarget(sp.ExternalPolicyLocal)
	for _, ip := range sp.ExternalIPs {
		if usesEXT {
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", quote(spn+" external IP"),
				"-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", extChain)
		} else {
			f.line("-A", chainExternalServices, "-m", "comment", "--comment", extComment, "-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", extTarget)
		}
	}
	for _, ip := range sp.LoadBalancerIPs {
		switch {
		case usesFW:
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", quote(spn+" loadbalancer IP"),
				"-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", fwChain)
			f.line("-A", chainProxyFirewall, "-m", "comment", "--comment", quote(spn+" traffic not accepted by "+fwChain),
				"-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", "DROP")
		case usesEXT:
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", quote(spn+" loadbalancer IP"),
				"-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", extChain)
		default:
			f.line("-A", chainExternalServices, "-m", "comment", "--comment", extComment, "-m", proto, "-p", proto, "-d", ip.String(), "--dport", port, "-j", extTarget)
		}
	}
	if sp.NodePort != 0 {
		np := strconv.Itoa(int(sp.NodePort))
		if usesEXT {
			r.natNodePorts.line("-A", chainNodePorts, "-m", "comment", "--comment", quote(spn),
				"-m", proto, "-p", proto, "--dport", np, "-j", extChain)
		} else {
			f.line("-A", chainExternalServices, "-m", "comment", "--comment", extComment,
				"-m", "addrtype", "--dst-type", "LOCAL", "-m", proto, "-p", proto, "--dport", np, "-j", extTarget)
		}
	}
	if sp.HealthCheckNodePort != 0 {
		f.line("-A", chainNodePorts, "-m", "comment", "--comment", quote(spn+" health check node port"),
			"-m", "tcp", "-p", "tcp", "--dport", strconv.Itoa(int(sp.HealthCheckNodePort)), "-j", "ACCEPT")
	}

	if usesFW {
		r.nat.chains = append(r.nat.chains, fwChain)
		for _, src := range sp.SourceRanges {
			n.line("-A", fwChain, "-m", "comment", "--comment", quote(spn+" loadbalancer IP"), "-s", src.String(), "-j", extChain)
		}
		// Nodes reaching the load balancer through its own address.
		for _, ip := range sp.LoadBalancerIPs {
			n.line("-A", fwChain, "-m", "comment", "--comment", quote(spn+" loadbalancer IP"), "-s", ip.String(), "-j", extChain)
		}
		n.line("-A", fwChain, "-m", "comment", "--comment", quote("other traffic to "+spn+" will be dropped by KUBE-PROXY-FIREWALL"))
	}
	if usesEXT {
		r.nat.chains = append(r.nat.chains, extChain)
		if sp.ExternalPolicyLocal {
			if r.opts.ClusterCIDR.IsValid() {
				n.line("-A", extChain, "-m", "comment", "--comment", quote("pod traffic for "+spn+" external destinations"),
					"-s", r.opts.ClusterCIDR.String(), "-j", svcChain)
			}
			n.line("-A", extChain, "-m", "comment", "--comment", quote("masquerade LOCAL traffic for "+spn+" external destinations"),
				"-m", "addrtype", "--src-type", "LOCAL", "-j", chainMarkMasq)
			n.line("-A", extChain, "-m", "comment", "--comment", quote("route LOCAL traffic for "+spn+" external destinations"),
				"-m", "addrtype", "--src-type", "LOCAL", "-j", svcChain)
		} else {
			n.line("-A", extChain, "-m", "comment", "--comment", quote("masquerade traffic for "+spn+" external destinations"), "-j", chainMarkMasq)
		}
		n.line("-A", extChain, "-j", externalPolicyChain)
	}

	// The cache is per Service port: the same endpoint hashes differently
	// under another Service.
	clear(r.sepByEP)
	if usesSVC {
		r.policyChain(sp, svcChain, internalChain == svcChain, clusterEps)
	}
	if usesSVL {
		r.policyChain(sp, svlChain, internalChain == svlChain, localEps)
	}
	// Endpoint chains, each once, for every endpoint a policy chain uses.
	var used []model.Endpoint
	if usesSVC {
		used = append(used, clusterEps...)
	}
	if usesSVL {
		used = append(used, localEps...)
	}
	done := map[string]bool{}
	for _, ep := range used {
		if epStr := ep.String(); !done[epStr] {
			done[epStr] = true
			r.endpointChain(sp, epStr, ep.IP.String(), r.sepName(sp, epStr))
		}
	}
}

// policyChain writes a KUBE-SVC or KUBE-SVL chain: the masquerade rule for
// cluster IP traffic (on the chain cluster IP traffic enters), session
// affinity, then one jump per endpoint with upstream's probabilities.
func (r *renderer) policyChain(sp *model.ServicePort, chain string, internal bool, eps []model.Endpoint) {
	spn := sp.Name.String()
	proto := string(sp.Protocol)
	n := &r.nat.rules
	r.nat.chains = append(r.nat.chains, chain)
	if internal {
		match := []string{"-A", chain, "-m", "comment", "--comment", quote(spn + " cluster IP"),
			"-m", proto, "-p", proto, "-d", sp.ClusterIP.String(), "--dport", strconv.Itoa(int(sp.Port))}
		switch {
		case r.opts.MasqueradeAll:
			n.line(append(match, "-j", chainMarkMasq)...)
		case r.opts.ClusterCIDR.IsValid():
			n.line(append(match, "!", "-s", r.opts.ClusterCIDR.String(), "-j", chainMarkMasq)...)
		}
	}
	if sp.AffinitySeconds > 0 {
		secs := strconv.Itoa(int(sp.AffinitySeconds))
		for _, ep := range eps {
			epStr := ep.String()
			sep := r.sepName(sp, epStr)
			n.line("-A", chain, "-m", "comment", "--comment", quote(spn+" -> "+epStr),
				"-m", "recent", "--name", sep, "--rcheck", "--seconds", secs, "--reap", "-j", sep)
		}
	}
	count := len(eps)
	for i, ep := range eps {
		epStr := ep.String()
		sep := r.sepName(sp, epStr)
		args := []string{"-A", chain}
		if !r.largeCluster {
			args = append(args, "-m", "comment", "--comment", quote(spn+" -> "+epStr))
		}
		if i < count-1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", probability(count-i))
		}
		n.line(append(args, "-j", sep)...)
	}
}

// sepName is the KUBE-SEP chain of an endpoint of the Service port being
// rendered, hashed once however many rules name it.
func (r *renderer) sepName(sp *model.ServicePort, epStr string) string {
	if r.sepByEP == nil {
		r.sepByEP = map[string]string{}
	}
	if n, ok := r.sepByEP[epStr]; ok {
		return n
	}
	n := EndpointChain(sp.Name, sp.Protocol, epStr)
	r.sepByEP[epStr] = n
	return n
}

// endpointChain writes a KUBE-SEP chain: hairpin masquerade, then DNAT.
func (r *renderer) endpointChain(sp *model.ServicePort, epStr, epIP, sep string) {
	proto := string(sp.Protocol)
	r.nat.chains = append(r.nat.chains, sep)
	var comment []string
	if !r.largeCluster {
		comment = []string{"-m", "comment", "--comment", quote(sp.Name.String())}
	}
	n := &r.nat.rules
	// Hairpin: a pod reaching itself through the Service must be
	// masqueraded or its reply would bypass the DNAT.
	n.line(append(append([]string{"-A", sep}, comment...), "-s", epIP, "-j", chainMarkMasq)...)
	args := append([]string{"-A", sep}, comment...)
	if sp.AffinitySeconds > 0 {
		args = append(args, "-m", "recent", "--name", sep, "--set")
	}
	n.line(append(args, "-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", epStr)...)
}

// probability is 1/n printed as upstream does ("%0.10f").
func probability(n int) string {
	return strconv.FormatFloat(1/float64(n), 'f', 10, 64)
}

// quote quotes a comment only when it needs it, as iptables-save prints it.
func quote(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return `"` + s + `"`
		}
	}
	return s
}

// lineBuf accumulates restore lines.
type lineBuf struct{ bytes.Buffer }

func (b *lineBuf) line(words ...string) {
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	b.WriteByte('\n')
}

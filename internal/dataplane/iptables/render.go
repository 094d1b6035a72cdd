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
}

// Ruleset is a rendered ruleset: per table, the chains it owns and the rules
// that fill them. It does not say how to get there from what the kernel has;
// Compose does.
type Ruleset struct {
	Tables []TableRules
}

// TableRules are the chains and rules of one table.
type TableRules struct {
	Name string
	// Chains are declared (and so flushed and refilled) on every apply.
	Chains []string
	// Rules are "-A CHAIN ..." lines.
	Rules []byte
}

// Render turns the desired state into rules. It is pure: the same state and
// options always give the same bytes.
func Render(st *model.State, opts Options) *Ruleset {
	r := &renderer{opts: opts}
	r.filter.chains = []string{chainServices, chainExternalServices, chainNodePorts, chainForward, chainFirewall, chainProxyFirewall}
	r.nat.chains = []string{chainServices, chainNodePorts, chainMarkMasq, chainPostrouting}
	r.fixedRules()
	for i := range st.Services {
		r.servicePort(&st.Services[i])
	}
	// Must stay the last rule(s) of nat KUBE-SERVICES: node ports are
	// matched only after every cluster IP.
	const npComment = `"kubernetes service nodeports; NOTE: this must be the last rule in this chain"`
	if addrs := nodePortAddresses(st, opts); addrs == nil {
		r.natServices.line("-A", chainServices, "-m", "comment", "--comment", npComment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)
	} else {
		for _, a := range addrs {
			r.natServices.line("-A", chainServices, "-m", "comment", "--comment", npComment, "-d", a.String(), "-j", chainNodePorts)
		}
	}

	var nat bytes.Buffer
	nat.Grow(r.natServices.Len() + r.natNodePorts.Len() + r.nat.rules.Len())
	nat.Write(r.natServices.Bytes())
	nat.Write(r.natNodePorts.Bytes())
	nat.Write(r.nat.rules.Bytes())
	return &Ruleset{Tables: []TableRules{
		{Name: "filter", Chains: r.filter.chains, Rules: r.filter.rules.Bytes()},
		{Name: "nat", Chains: r.nat.chains, Rules: nat.Bytes()},
	}}
}

type tableBuf struct {
	chains []string
	rules  lineBuf
}

type renderer struct {
	opts        Options
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
	if r.opts.LocalhostNodePorts {
		f.line("-A", chainFirewall, "-m", "comment", "--comment", `"block incoming localnet connections"`,
			"-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
	}
	f.line("-A", chainForward, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	f.line("-A", chainForward, "-m", "comment", "--comment", `"kubernetes forwarding rules"`, "-m", "mark", "--mark", masqMark+"/"+masqMark, "-j", "ACCEPT")
	f.line("-A", chainForward, "-m", "comment", "--comment", `"kubernetes forwarding conntrack rule"`, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
}

func (r *renderer) servicePort(sp *model.ServicePort) {
	spn := sp.Name.String()
	proto := string(sp.Protocol)
	clusterIP := sp.ClusterIP.String()
	port := strconv.Itoa(int(sp.Port))

	if len(sp.Endpoints) == 0 {
		f := &r.filter.rules
		f.line("-A", chainServices, "-m", "comment", "--comment", quote(spn+" has no endpoints"),
			"-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "-j", "REJECT")
		if sp.NodePort != 0 {
			f.line("-A", chainExternalServices, "-m", "comment", "--comment", quote(spn+" has no endpoints"),
				"-m", "addrtype", "--dst-type", "LOCAL", "-m", proto, "-p", proto, "--dport", strconv.Itoa(int(sp.NodePort)), "-j", "REJECT")
		}
		return
	}

	svcChain := ServiceChain(sp.Name, sp.Protocol)
	clusterComment := quote(spn + " cluster IP")
	r.nat.chains = append(r.nat.chains, svcChain)
	r.natServices.line("-A", chainServices, "-m", "comment", "--comment", clusterComment,
		"-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "-j", svcChain)

	n := &r.nat.rules
	if sp.NodePort != 0 {
		extChain := ExternalChain(sp.Name, sp.Protocol)
		r.nat.chains = append(r.nat.chains, extChain)
		r.natNodePorts.line("-A", chainNodePorts, "-m", "comment", "--comment", quote(spn),
			"-m", proto, "-p", proto, "--dport", strconv.Itoa(int(sp.NodePort)), "-j", extChain)
		n.line("-A", extChain, "-m", "comment", "--comment", quote("masquerade traffic for "+spn+" external destinations"), "-j", chainMarkMasq)
		n.line("-A", extChain, "-j", svcChain)
	}

	switch {
	case r.opts.MasqueradeAll:
		n.line("-A", svcChain, "-m", "comment", "--comment", clusterComment,
			"-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "-j", chainMarkMasq)
	case r.opts.ClusterCIDR.IsValid():
		n.line("-A", svcChain, "-m", "comment", "--comment", clusterComment,
			"-m", proto, "-p", proto, "-d", clusterIP, "--dport", port, "!", "-s", r.opts.ClusterCIDR.String(), "-j", chainMarkMasq)
	}

	count := len(sp.Endpoints)
	for i, ep := range sp.Endpoints {
		epStr := ep.String()
		sepChain := EndpointChain(sp.Name, sp.Protocol, epStr)
		r.nat.chains = append(r.nat.chains, sepChain)
		if i < count-1 {
			n.line("-A", svcChain, "-m", "comment", "--comment", quote(spn+" -> "+epStr),
				"-m", "statistic", "--mode", "random", "--probability", probability(count-i), "-j", sepChain)
		} else {
			n.line("-A", svcChain, "-m", "comment", "--comment", quote(spn+" -> "+epStr), "-j", sepChain)
		}
	}
	for _, ep := range sp.Endpoints {
		epStr := ep.String()
		sepChain := EndpointChain(sp.Name, sp.Protocol, epStr)
		// Hairpin: a pod reaching itself through the Service must be
		// masqueraded or its reply would bypass the DNAT.
		n.line("-A", sepChain, "-m", "comment", "--comment", quote(spn), "-s", ep.IP.String(), "-j", chainMarkMasq)
		n.line("-A", sepChain, "-m", "comment", "--comment", quote(spn), "-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", epStr)
	}
}

// nodePortAddresses returns the addresses NodePorts answer on, or nil for
// every local address. A set that resolves to nothing yields an empty,
// non-nil slice: no NodePorts anywhere, rather than everywhere.
func nodePortAddresses(st *model.State, opts Options) []netip.Addr {
	if len(opts.NodePortAddresses) == 0 && !opts.NodePortPrimary {
		return nil
	}
	out := []netip.Addr{}
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a.Is4() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range opts.NodePortAddresses {
		add(a)
	}
	if opts.NodePortPrimary && len(st.Node.IPs) > 0 {
		add(st.Node.IPs[0])
	}
	return out
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

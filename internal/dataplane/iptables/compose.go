package iptables

import (
	"bytes"
	"slices"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// jump is a rule in a built-in chain that sends traffic into our chains.
type jump struct {
	table, from, to, comment string
	extra                    []string
}

// jumps are upstream kube-proxy's jumps from the built-in chains, in the
// order they are inserted (each is inserted at the top of its chain).
var jumps = []jump{
	{"filter", "INPUT", chainExternalServices, "kubernetes externally-visible service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainExternalServices, "kubernetes externally-visible service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "INPUT", chainNodePorts, "kubernetes health check service ports", nil},
	{"filter", "FORWARD", chainServices, "kubernetes service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "OUTPUT", chainServices, "kubernetes service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainForward, "kubernetes forwarding rules", nil},
	{"filter", "INPUT", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "OUTPUT", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "INPUT", chainFirewall, "", nil},
	{"filter", "OUTPUT", chainFirewall, "", nil},
	{"nat", "OUTPUT", chainServices, "kubernetes service portals", nil},
	{"nat", "PREROUTING", chainServices, "kubernetes service portals", nil},
	{"nat", "POSTROUTING", chainPostrouting, "kubernetes postrouting rules", nil},
}

func (j jump) args() []string {
	args := slices.Clone(j.extra)
	if j.comment != "" {
		args = append(args, "-m", "comment", "--comment", quote(j.comment))
	}
	return append(args, "-j", j.to)
}

// present reports whether the built-in chain already has this jump.
func (j jump) present(cur *netfilter.Ruleset) bool {
	if cur == nil {
		return false
	}
	c := cur.Table(j.table).Chain(j.from)
	if c == nil {
		return false
	}
	for _, r := range c.Rules {
		if r.Target == j.to && r.Comment() == j.comment {
			return true
		}
	}
	return false
}

// isOwnedChain reports whether svcproxy created a chain of this name.
func isOwnedChain(name string) bool {
	switch name {
	case chainServices, chainExternalServices, chainNodePorts, chainPostrouting, chainMarkMasq,
		chainForward, chainFirewall, chainProxyFirewall, ChainCanary:
		return true
	}
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Compose returns the iptables-restore --noflush input that takes the kernel
// from cur (parsed iptables-save output; nil for an empty kernel) to rs in
// one transaction: our chains rewritten, missing jumps from built-in chains
// inserted, and per-Service chains that are no longer needed flushed and
// deleted. Rules and chains that are not ours are never named, so they are
// left alone.
func Compose(rs *Ruleset, cur *netfilter.Ruleset) []byte {
	return composeTables(rs.Tables, cur, wanted(rs))
}

// DefaultChunkServices is how many Service ports one transaction of a large
// sync carries. A single iptables-restore --noflush grows quadratically
// with its size; transactions of this size keep a sync linear (2k
// Services × 10 endpoints: 30.6 s in one transaction, 2.8 s in chunks).
const DefaultChunkServices = 250

// ComposeChunks returns the restore inputs that take the kernel from cur to
// rs, to be applied in order:
//
//  1. the chains every Service needs (KUBE-MARK-MASQ, KUBE-POSTROUTING);
//  2. the chains of perChunk Service ports at a time, each Service port's
//     chains (SVC, SVL, EXT, FW, SEP) always in one transaction, so that no
//     Service is ever half-programmed;
//  3. the dispatch chains (KUBE-SERVICES, KUBE-NODEPORTS), the filter table,
//     the jumps from built-in chains and the deletion of stale chains.
//
// New Services become reachable only in the last step, after their chains
// exist. When rs has at most perChunk Service ports it is one transaction,
// exactly Compose's.
func ComposeChunks(rs *Ruleset, cur *netfilter.Ruleset, perChunk int) [][]byte {
	if perChunk <= 0 || len(rs.ServiceSpans) <= perChunk {
		return [][]byte{Compose(rs, cur)}
	}
	nat := func(chains []string, rules ...[]byte) []byte {
		b := []byte("*nat\n")
		for _, c := range chains {
			b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
		}
		for _, r := range rules {
			b = append(b, r...)
		}
		return append(b, "COMMIT\n"...)
	}
	out := [][]byte{nat(rs.fixedNatChains, rs.fixedNatRules)}
	for i := 0; i < len(rs.ServiceSpans); i += perChunk {
		group := rs.ServiceSpans[i:min(i+perChunk, len(rs.ServiceSpans))]
		first, last := group[0], group[len(group)-1]
		out = append(out, nat(rs.natChains[first.ChainsFrom:last.ChainsTo], rs.perServiceNat[first.RulesFrom:last.RulesTo]))
	}
	var final []TableRules
	for _, t := range rs.Tables {
		if t.Name == "nat" {
			t = TableRules{Name: "nat", Chains: []string{chainServices, chainNodePorts, ChainCanary}, Rules: rs.dispatch}
		}
		final = append(final, t)
	}
	return append(out, composeTables(final, cur, wanted(rs)))
}

// wanted are all chains rs declares, per table.
func wanted(rs *Ruleset) map[string]map[string]bool {
	w := map[string]map[string]bool{}
	for _, t := range rs.Tables {
		w[t.Name] = make(map[string]bool, len(t.Chains))
		for _, c := range t.Chains {
			w[t.Name][c] = true
		}
	}
	return w
}

// composeTables writes one transaction: tables' chains declared and filled,
// missing jumps inserted, and per-Service chains in cur that want does not
// have deleted.
func composeTables(tables []TableRules, cur *netfilter.Ruleset, want map[string]map[string]bool) []byte {
	total := 4096
	for _, t := range tables {
		total += t.size() + 32*len(t.Chains)
	}
	b := make([]byte, 0, total)
	for _, t := range tables {
		b = append(append(append(b, '*'), t.Name...), '\n')
		for _, c := range t.Chains {
			b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
		}
		var stale []string
		if cur != nil {
			for _, c := range cur.Table(t.Name).ChainNames() {
				if !want[t.Name][c] && isPerService(c) {
					stale = append(stale, c)
					b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
				}
			}
		}
		for _, r := range t.Rules {
			b = append(b, r...)
		}
		for _, j := range jumps {
			if j.table == t.Name && !j.present(cur) {
				b = append(b, "-I "+j.from+" "+strings.Join(j.args(), " ")+"\n"...)
			}
		}
		for _, c := range stale {
			b = append(append(append(b, "-X "...), c...), '\n')
		}
		b = append(b, "COMMIT\n"...)
	}
	return b
}

func isPerService(name string) bool {
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// CleanupInput returns the restore input that removes everything svcproxy
// installed in cur: its jumps from built-in chains, then its chains. It
// returns nil when there is nothing to remove.
func CleanupInput(cur *netfilter.Ruleset) []byte {
	var b bytes.Buffer
	for _, t := range cur.Tables {
		var owned []string
		var dels []string
		for _, c := range t.Chains {
			if isOwnedChain(c.Name) && c.Policy == "-" {
				owned = append(owned, c.Name)
				continue
			}
			for _, r := range c.Rules {
				if isOwnedChain(r.Target) {
					dels = append(dels, "-D "+c.Name+" "+r.Text+"\n")
				}
			}
		}
		if len(owned) == 0 && len(dels) == 0 {
			continue
		}
		b.WriteString("*" + t.Name + "\n")
		for _, c := range owned {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, d := range dels {
			b.WriteString(d)
		}
		for _, c := range owned {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil
	}
	return b.Bytes()
}

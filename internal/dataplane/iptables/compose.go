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
// from cur (parsed iptables-save output; nil for an empty kernel) to rs: our
// chains rewritten, missing jumps from built-in chains inserted, and
// per-Service chains that are no longer needed flushed and deleted. Rules and
// chains that are not ours are never named, so they are left alone.
func Compose(rs *Ruleset, cur *netfilter.Ruleset) []byte {
	total := 4096
	for _, t := range rs.Tables {
		total += t.size() + 32*len(t.Chains)
	}
	b := make([]byte, 0, total)
	for _, t := range rs.Tables {
		b = append(append(append(b, '*'), t.Name...), '\n')
		want := make(map[string]bool, len(t.Chains))
		for _, c := range t.Chains {
			want[c] = true
			b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
		}
		var stale []string
		if cur != nil {
			for _, c := range cur.Table(t.Name).ChainNames() {
				if !want[c] && isPerService(c) {
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

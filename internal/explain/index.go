// Package explain turns netfilter rulesets and packet traces into words,
// trees and pictures for people: which Service a hashed chain belongs to,
// what each rule on a packet's path means, and every rule that concerns one
// Service. It reads parsed rules only; it never touches the kernel.
package explain

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// Index knows which Service each per-Service chain belongs to.
type Index struct {
	// chains maps "KUBE-SVC-..." (and SVL, EXT, FW, SEP) to "ns/name[:port]".
	chains map[string]string
	// ClusterCIDR is the pod CIDR found in the rules ("! -s CIDR -j
	// KUBE-MARK-MASQ"), if any.
	ClusterCIDR netip.Prefix
}

// servicePortRE finds "namespace/name" or "namespace/name:port" in a comment.
var servicePortRE = regexp.MustCompile(`[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)?`)

// ServiceInComment returns the "ns/name[:port]" a kube-proxy comment names.
func ServiceInComment(c string) string {
	return servicePortRE.FindString(c)
}

// perServicePrefixes are chains that belong to one Service port.
var perServicePrefixes = []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-", "KUBE-XLB-"}

// IsServiceChain reports whether a chain belongs to one Service port.
func IsServiceChain(name string) bool {
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// NewIndex learns chain owners from rule comments, as written by svcproxy
// and by upstream kube-proxy alike.
func NewIndex(rs *netfilter.Ruleset) *Index {
	idx := &Index{chains: map[string]string{}}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				svc := ServiceInComment(r.Comment())
				if svc == "" {
					continue
				}
				if IsServiceChain(r.Target) {
					idx.learn(r.Target, svc)
				}
				if IsServiceChain(c.Name) {
					idx.learn(c.Name, svc)
				}
				if r.Target == "KUBE-MARK-MASQ" && (strings.HasPrefix(c.Name, "KUBE-SVC-") || c.Name == "KUBE-SERVICES") && !idx.ClusterCIDR.IsValid() {
					for _, m := range r.Matches {
						for _, o := range m.Opts {
							if m.Module == "" && o.Name == "-s" && o.Neg && len(o.Values) == 1 {
								if p, err := netip.ParsePrefix(o.Values[0]); err == nil {
									idx.ClusterCIDR = p
								}
							}
						}
					}
				}
			}
		}
	}
	return idx
}

func (idx *Index) learn(chain, svc string) {
	if _, ok := idx.chains[chain]; !ok {
		idx.chains[chain] = svc
	}
}

// AddModel teaches the index the chains of a model's Services, computed with
// the same hash svcproxy and kube-proxy use. It resolves chains even when the
// rules carry no comments (large clusters).
func (idx *Index) AddModel(st *model.State) {
	for _, sp := range st.Services {
		name := sp.Name.String()
		idx.chains[iptables.ServiceChain(sp.Name, sp.Protocol)] = name
		idx.chains[iptables.ExternalChain(sp.Name, sp.Protocol)] = name
		for _, ep := range sp.Endpoints {
			idx.chains[iptables.EndpointChain(sp.Name, sp.Protocol, ep.AddrPort())] = name
		}
	}
}

// Service returns the Service port a chain belongs to, or "".
func (idx *Index) Service(chain string) string {
	return idx.chains[chain]
}

// Services lists every Service port the index knows, sorted.
func (idx *Index) Services() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range idx.chains {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

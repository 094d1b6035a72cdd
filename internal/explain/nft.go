package explain

import (
	"net/netip"
	"regexp"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// nftChainRE matches upstream's nftables per-Service chain names:
// "service-HASH-ns/name/proto/port" (and local-, external-, firewall-,
// endpoint-...__ip/port).
var nftChainRE = regexp.MustCompile(`^(service|local|external|firewall|endpoint)-[A-Z0-9]+-([^/]+)/([^/]+)/[a-z]+/([^/_]*)`)

// nftService returns "ns/name[:port]" for an nftables per-Service chain.
func nftService(chain string) string {
	m := nftChainRE.FindStringSubmatch(chain)
	if m == nil {
		return ""
	}
	s := m[2] + "/" + m[3]
	if m[4] != "" {
		s += ":" + m[4]
	}
	return s
}

// NewNftIndex learns chain owners from an nftables ruleset's chain names.
func NewNftIndex(rs *netfilter.NftRuleset) *Index {
	idx := &Index{chains: map[string]string{}}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			if svc := nftService(c.Name); svc != "" {
				idx.chains[c.Name] = svc
			}
			for _, r := range c.Rules {
				// The masquerade rule for traffic from outside the pods
				// names the cluster CIDR: "ip saddr != 10.244.0.0/16 meta
				// mark set ..." in a service chain (svcproxy's layout), or
				// "ip daddr @cluster-ips ip saddr != 10.244.0.0/16 meta
				// mark set ..." in services (upstream's).
				masq := strings.Contains(r.Text, "meta mark set") &&
					(strings.HasPrefix(c.Name, "service-") || c.Name == "services" && strings.Contains(r.Text, "@cluster-ips"))
				if !idx.ClusterCIDR.IsValid() && masq {
					if _, after, ok := strings.Cut(r.Text, "saddr != "); ok {
						if p, err := netip.ParsePrefix(strings.Fields(after)[0]); err == nil {
							idx.ClusterCIDR = p
						}
					}
				}
			}
		}
	}
	return idx
}

func dnatTo(rule string) string {
	_, to, _ := strings.Cut(rule, " to ")
	return "destination rewritten to " + strings.Fields(to + " ?")[0] + " (DNAT)"
}

// describeNft says what an nftables rule on a packet's path did.
func (idx *Index) describeNft(h netfilter.Hop) string {
	r := h.Rule
	target := func(verb string) string {
		if _, after, ok := strings.Cut(r, verb+" "); ok {
			return strings.Fields(after)[0]
		}
		return ""
	}
	comment := ""
	if _, after, ok := strings.Cut(r, `comment "`); ok {
		comment, _, _ = strings.Cut(after, `"`)
	}
	switch {
	case strings.Contains(r, "jump services"):
		return "check the packet against every Service address (services)"
	case strings.Contains(r, "vmap @service-ips"):
		return "look the destination up in the Service map (service-ips)"
	case strings.Contains(r, "vmap @service-nodeports"):
		return "destination is a NodePort address: look the port up (service-nodeports)"
	case strings.Contains(r, "vmap @firewall-ips"):
		return "load balancer source-range check (firewall-ips)"
	case strings.Contains(r, "vmap @no-endpoint-services"), strings.Contains(r, "vmap @no-endpoint-nodeports"):
		return "Services without endpoints are rejected or dropped here"
	case strings.HasPrefix(r, "numgen random mod ") && strings.Contains(r, "dnat "):
		return "1 in " + strings.Fields(r)[3] + " of the connections still here: " + dnatTo(r)
	case strings.HasPrefix(r, "numgen random mod "):
		return "picks one of " + strings.Fields(r)[3] + " endpoints at random"
	case strings.Contains(r, "@hairpin-endpoints"):
		return "marked for masquerade: hairpin (an endpoint reaching itself through its Service)"
	case strings.Contains(r, " to numgen random mod ") && strings.Contains(r, " map @"):
		_, m, _ := strings.Cut(r, " map @")
		return "picks an endpoint at random from map " + strings.Fields(m + " ?")[0] + " (each has an equal share of this chain's range of numbers) and rewrites the destination to it (DNAT)"
	case strings.Contains(r, " to numgen random mod ") && strings.Contains(r, " map {"):
		return "picks one of " + strings.Fields(r[strings.Index(r, " to numgen random mod ")+len(" to numgen random mod "):])[0] + " endpoints at random and rewrites the destination to it (DNAT)"
	case strings.Contains(r, "@hairpin-connections") && strings.Contains(r, "masquerade"):
		return "masquerade: hairpin (an endpoint reaching itself through its Service)"
	case strings.Contains(r, "dnat ") && !strings.Contains(r, "ct status dnat"):
		return dnatTo(r)
	case strings.HasPrefix(r, "masquerade"):
		return "masquerade: the source becomes this node's address on the way out"
	case strings.Contains(r, "jump mark-for-masquerade"), h.Chain != "mark-for-masquerade" && strings.Contains(r, "mark set") && strings.Contains(r, "|"):
		switch {
		case strings.Contains(r, "saddr != "):
			return "marked for masquerade: source outside the cluster CIDR"
		case strings.HasPrefix(h.Chain, "endpoint-"):
			return "marked for masquerade: hairpin (the endpoint is reaching itself)"
		case strings.Contains(r, "fib saddr type local"):
			return "marked for masquerade: traffic from this node"
		case strings.Contains(r, " daddr "):
			return "marked for masquerade: every connection to the cluster IP (masquerade-all)"
		default:
			return "marked for masquerade: external traffic (externalTrafficPolicy: Cluster)"
		}
	case strings.Contains(r, "mark set") && strings.Contains(r, "|"):
		_, mark, _ := strings.Cut(r, "| ")
		return "set the masquerade mark " + strings.Fields(mark + " ?")[0]
	case strings.Contains(r, "mark set") && strings.Contains(r, "^"):
		return "clear the masquerade mark (so the packet is not masqueraded twice)"
	case strings.Contains(r, "== 0x00000000 return"):
		return "not marked for masquerade: leave the source alone"
	case strings.HasPrefix(r, "ct state new jump"):
		return "new connections: " + target("jump")
	}
	for _, verb := range []string{"goto", "jump"} {
		if t := target(verb); t != "" {
			svc := idx.Service(t)
			switch {
			case strings.HasPrefix(t, "service-"):
				return "to the endpoints of " + svc
			case strings.HasPrefix(t, "local-"):
				return "to the endpoints on this node only (externalTrafficPolicy: Local) of " + svc
			case strings.HasPrefix(t, "external-"):
				return "external traffic to " + svc
			case strings.HasPrefix(t, "firewall-"):
				return "load balancer source-range check of " + svc
			}
			return verb + " " + t
		}
	}
	switch {
	case strings.Contains(r, "reject"):
		return "rejected" + withComment(comment)
	case strings.Contains(r, "drop"):
		return "dropped" + withComment(comment)
	}
	return r
}

func withComment(c string) string {
	if c == "" {
		return ""
	}
	return ": " + c
}

// ExplainNft does what Explain does for an nftables ruleset: the entry
// points come from the service-ips, service-nodeports and no-endpoint maps.
func (idx *Index) ExplainNft(rs *netfilter.NftRuleset, service string, localAddrs []netip.Addr) (*ServiceReport, error) {
	return idx.explainNft(rs, service, belongsTo(service), localAddrs)
}

// ServicesReportNft is ServicesReport for an nftables ruleset.
func (idx *Index) ServicesReportNft(rs *netfilter.NftRuleset, localAddrs []netip.Addr) (*ServiceReport, error) {
	return idx.explainNft(rs, "", func(string) bool { return true }, localAddrs)
}

func (idx *Index) explainNft(rs *netfilter.NftRuleset, service string, belongs func(string) bool, localAddrs []netip.Addr) (*ServiceReport, error) {
	ports := map[string]*ServicePort{}
	add := func(spn string, e Entry) {
		if ports[spn] == nil {
			ports[spn] = &ServicePort{Name: spn}
		}
		ports[spn].Entries = append(ports[spn].Entries, e)
	}
	var allowed []source
	for _, t := range rs.Tables {
		clusterIPs := map[string]bool{}
		if s := t.Sets["cluster-ips"]; s != nil {
			for _, e := range s.Elements {
				clusterIPs[e.Key[0]] = true
			}
		}
		for _, m := range []string{"service-ips", "no-endpoint-services", "service-nodeports", "no-endpoint-nodeports"} {
			set := t.Sets[m]
			if set == nil {
				continue
			}
			for _, el := range set.Elements {
				chain := ""
				if len(el.Verdict) == 2 {
					chain = el.Verdict[1]
				}
				spn := idx.Service(chain)
				if spn == "" {
					spn = ServiceInComment(el.Comment)
				}
				if spn == "" || !belongs(spn) {
					continue
				}
				if strings.HasPrefix(m, "no-endpoint") {
					chain = "REJECT"
				}
				e := Entry{Service: spn, Chain: chain}
				if strings.HasSuffix(m, "nodeports") && len(el.Key) == 2 {
					e.Kind, e.Protocol, e.Port = "NodePort", el.Key[0], parsePort(el.Key[1])
				} else if len(el.Key) == 3 {
					e.Addr, _ = netip.ParseAddr(el.Key[0])
					e.Protocol, e.Port = el.Key[1], parsePort(el.Key[2])
					e.Kind = "cluster IP"
					if !clusterIPs[el.Key[0]] {
						e.Kind = "external or load balancer IP"
					}
				} else {
					continue
				}
				add(spn, e)
			}
		}
		for _, c := range t.Chains {
			if strings.HasPrefix(c.Name, "firewall-") && belongs(idx.Service(c.Name)) {
				for _, r := range c.Rules {
					if _, after, ok := strings.Cut(r.Text, "saddr != "); ok {
						for _, f := range strings.FieldsFunc(after, func(r rune) bool { return r == ' ' || r == '{' || r == '}' || r == ',' }) {
							if p, err := netip.ParsePrefix(f); err == nil {
								allowed = append(allowed, source{"from an allowed source range " + p.String(), p.Addr().Next()})
							}
						}
					}
				}
			}
		}
	}
	for chain, spn := range idx.chains {
		if belongs(spn) && ports[spn] != nil && nftChainExists(rs, chain) {
			ports[spn].Chains = append(ports[spn].Chains, chain)
		}
	}
	return idx.explainPorts(service, ports, localAddrs, func(e Entry) []source {
		if e.Kind != "external or load balancer IP" {
			return nil
		}
		return allowed
	}, func(pkt netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
		return netfilter.TraceNft(rs, pkt, o)
	})
}

func parsePort(s string) uint16 {
	var p uint16
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		p = p*10 + uint16(c-'0')
	}
	return p
}

func nftChainExists(rs *netfilter.NftRuleset, chain string) bool {
	for _, t := range rs.Tables {
		if t.Chain(chain) != nil {
			return true
		}
	}
	return false
}

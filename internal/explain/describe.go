package explain

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// Describe says in words what a rule on a packet's path did.
func (idx *Index) Describe(h netfilter.Hop) string {
	r := h.RuleRef()
	switch {
	case r == nil && h.Note == "chain policy":
		return "end of chain: policy " + strings.TrimPrefix(h.Rule, "policy ")
	case r == nil:
		return idx.describeNft(h)
	}
	comment := r.Comment()
	svc := ServiceInComment(comment)
	if svc == "" {
		svc = idx.Service(r.Target)
	}
	if svc == "" {
		svc = idx.Service(r.Chain)
	}
	switch {
	case r.Target == "KUBE-SERVICES" && !IsServiceChain(r.Chain):
		if h.Table == "nat" {
			return "check the packet against every Service address (KUBE-SERVICES)"
		}
		return "Service filter rules: rejects for Services without endpoints"
	case r.Target == "KUBE-NODEPORTS" && h.Table == "nat":
		return "destination is an address of this node: look for a NodePort"
	case r.Target == "KUBE-POSTROUTING":
		return "masquerade what was marked for it"
	case r.Target == "KUBE-FORWARD":
		return "forwarding rules for Service traffic"
	case r.Target == "KUBE-EXTERNAL-SERVICES":
		return "rules for NodePorts and external IPs of this node"
	case r.Target == "KUBE-PROXY-FIREWALL":
		return "load balancer source ranges (firewall)"
	case r.Target == "KUBE-FIREWALL":
		return "localhost protection (CVE-2020-8558)"
	case r.Target == "KUBE-NODEPORTS" && h.Table == "filter":
		return "health check node ports"
	case r.Chain == "KUBE-NODEPORTS" && h.Table == "nat":
		return fmt.Sprintf("NodePort %s of %s", port(r), svc)
	case r.Chain == "KUBE-SERVICES" && h.Table == "nat" && IsServiceChain(r.Target):
		kind := "cluster IP"
		switch {
		case strings.Contains(comment, "external IP"):
			kind = "external IP"
		case strings.Contains(comment, "loadbalancer IP"):
			kind = "load balancer IP"
		}
		return fmt.Sprintf("%s %s:%s of %s", kind, dest(r), port(r), svc)
	case r.Target == "KUBE-MARK-MASQ":
		return "marked for masquerade: " + masqReason(r, comment)
	case r.Target == "MARK" && r.Chain == "KUBE-MARK-MASQ":
		return "set the masquerade mark " + r.TargetOpt("--or-mark")
	case r.Target == "MARK" && r.Chain == "KUBE-POSTROUTING":
		return "clear the masquerade mark (so the packet is not masqueraded twice)"
	case r.Target == "MASQUERADE":
		return "masquerade: the source becomes this node's address on the way out"
	case strings.HasPrefix(r.Target, "KUBE-SEP-"):
		ep := strings.TrimSpace(strings.TrimPrefix(comment, svc+" ->"))
		if !strings.Contains(comment, "->") {
			ep = r.Target
		}
		if p := probability(r); p != "" {
			return fmt.Sprintf("picks endpoint %s with probability %s of what is left", ep, p)
		}
		if affinity(r) {
			return fmt.Sprintf("session affinity: a client seen recently goes back to %s", ep)
		}
		return fmt.Sprintf("picks endpoint %s (all that is left)", ep)
	case strings.HasPrefix(r.Target, "KUBE-SVC-") || strings.HasPrefix(r.Target, "KUBE-SVL-"):
		if strings.HasPrefix(r.Target, "KUBE-SVL-") {
			return "to the endpoints on this node only (externalTrafficPolicy: Local) of " + svc
		}
		return "to the endpoints of " + svc
	case strings.HasPrefix(r.Target, "KUBE-EXT-"):
		return "external traffic to " + svc
	case strings.HasPrefix(r.Target, "KUBE-FW-"):
		return "load balancer source-range check of " + svc
	case r.Target == "DNAT":
		return "destination rewritten to " + r.TargetOpt("--to-destination") + " (DNAT)"
	case r.Target == "REJECT":
		if comment != "" {
			return "rejected: " + comment
		}
		return "rejected"
	case r.Target == "DROP":
		if comment != "" {
			return "dropped: " + comment
		}
		return "dropped"
	case r.Target == "ACCEPT":
		if comment != "" {
			return "accepted: " + comment
		}
		return "accepted"
	case r.Target == "RETURN":
		return "back to the calling chain"
	}
	if comment != "" {
		return comment
	}
	return "jump to " + r.Target
}

func masqReason(r *netfilter.Rule, comment string) string {
	for _, m := range r.Matches {
		for _, o := range m.Opts {
			if m.Module == "" && o.Name == "-s" && o.Neg {
				return "source outside the cluster CIDR " + o.Values[0]
			}
			if m.Module == "" && o.Name == "-s" && !o.Neg && strings.HasPrefix(r.Chain, "KUBE-SEP-") {
				return "hairpin: the endpoint " + o.Values[0] + " is reaching itself"
			}
			if m.Module == "addrtype" && o.Name == "--src-type" {
				return "traffic from this node to an external address"
			}
		}
	}
	switch {
	case strings.HasPrefix(r.Chain, "KUBE-EXT-"):
		return "external traffic (externalTrafficPolicy: Cluster)"
	case strings.HasPrefix(r.Chain, "KUBE-SVC-"):
		return "all cluster IP traffic (--masquerade-all)"
	case strings.HasPrefix(r.Chain, "KUBE-NODEPORTS"):
		return "NodePort traffic"
	}
	if comment != "" {
		return comment
	}
	return "rule " + r.Text
}

func opt(r *netfilter.Rule, module, name string) (string, bool) {
	for _, m := range r.Matches {
		if m.Module != module {
			continue
		}
		for _, o := range m.Opts {
			if o.Name == name && len(o.Values) > 0 {
				return o.Values[0], o.Neg
			}
		}
	}
	return "", false
}

func port(r *netfilter.Rule) string {
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		if v, _ := opt(r, proto, "--dport"); v != "" {
			return v + "/" + proto
		}
	}
	return "?"
}

func dest(r *netfilter.Rule) string {
	v, _ := opt(r, "", "-d")
	return strings.TrimSuffix(v, "/32")
}

func probability(r *netfilter.Rule) string {
	v, _ := opt(r, "statistic", "--probability")
	if v == "" {
		return ""
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	return strconv.FormatFloat(f, 'f', -1, 32)
}

func affinity(r *netfilter.Rule) bool {
	for _, m := range r.Matches {
		if m.Module == "recent" {
			return true
		}
	}
	return false
}

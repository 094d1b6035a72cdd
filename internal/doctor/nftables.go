package doctor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/dataplane/nftables"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// nftTable is the node's kube-proxy table in nftables mode, or nil.
func nftTable(env Env) *netfilter.NftTable {
	text, err := env.NftList()
	if err != nil || text == "" {
		return nil
	}
	rs, err := netfilter.ParseNft(text)
	if err != nil || len(rs.Tables) == 0 {
		return nil
	}
	return rs.Tables[0]
}

// checkNftRules is the rules check for a node in nftables mode: the dispatch
// map holds every expected Service port (or, without expectations, says how
// many there are).
func checkNftRules(t *netfilter.NftTable, opts Options) Finding {
	f := Finding{Check: "rules"}
	keys := map[string]bool{}
	for _, name := range []string{"service-ips", "no-endpoint-services"} {
		if s := t.Sets[name]; s != nil {
			for _, e := range s.Elements {
				keys[strings.Join(e.Key, " . ")] = true
			}
		}
	}
	if opts.Expected == nil {
		n := 0
		for _, c := range t.Chains {
			if _, ok := nftables.ServiceOfChain(c.Name); ok && strings.HasPrefix(c.Name, "service-") {
				n++
			}
		}
		f.Status, f.Summary = OK, fmt.Sprintf("nftables mode: table %s %s with %d Service port chain(s) and %d dispatch entries", t.Family, t.Name, n, len(keys))
		return f
	}
	var missing []string
	for _, sp := range opts.Expected.Services {
		k := sp.ClusterIP.String() + " . " + strings.ToLower(string(sp.Protocol)) + " . " + strconv.Itoa(int(sp.Port))
		if !keys[k] {
			missing = append(missing, sp.Name.String())
		}
	}
	return expected(f, missing, len(opts.Expected.Services), "are not in the dispatch maps", "nftables mode: dispatch entries present")
}

// nftNodePorts lists the NodePorts the service-nodeports map serves; the
// Service is read back from the chain name (external-HASH-ns/name/proto/port).
func nftNodePorts(t *netfilter.NftTable) []nodePortRule {
	s := t.Sets["service-nodeports"]
	if s == nil {
		return nil
	}
	var out []nodePortRule
	for _, e := range s.Elements {
		if len(e.Key) != 2 {
			continue
		}
		p, err := strconv.Atoi(e.Key[1])
		if err != nil {
			continue
		}
		service := ""
		if len(e.Verdict) == 2 { // goto external-HASH-ns/name/proto/port
			service, _ = nftables.ServiceOfChain(e.Verdict[1])
		}
		out = append(out, nodePortRule{port: int32(p), proto: model.Protocol(e.Key[0]), service: service})
	}
	return out
}

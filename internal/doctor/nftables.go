package doctor

import (
	"fmt"
	"slices"
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

// checkNftLeftovers finds named sets and maps of the kube-proxy table that
// no rule uses: another proxy's, left when it stopped without handing the
// table over (svcproxy killed, then upstream kube-proxy writing over its
// table keeps svcproxy's endpoints maps).
func checkNftLeftovers(t *netfilter.NftTable) Finding {
	f := Finding{Check: "leftovers"}
	used := map[string]bool{}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for _, tok := range strings.Fields(r.Text) {
				if name, ok := strings.CutPrefix(tok, "@"); ok {
					used[name] = true
				}
			}
		}
	}
	for name := range t.Sets {
		if !used[name] {
			f.Details = append(f.Details, t.Family+" "+t.Name+" "+name)
		}
	}
	if len(f.Details) == 0 {
		f.Status, f.Summary = OK, "every set and map of the table is in use"
		return f
	}
	slices.Sort(f.Details)
	f.Status, f.Summary = Warn, fmt.Sprintf("%d set(s) or map(s) no rule uses", len(f.Details))
	f.Meaning = "left by another proxy that stopped without handing the table over (svcproxy killed, then kube-proxy took the node over); harmless for traffic"
	f.Action = "nft delete map (or set) " + t.Family + " " + t.Name + " NAME for each, or reboot; a restart of svcproxy replaces the table whole"
	return f
}

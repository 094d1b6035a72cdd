// Package nftables is svcproxy's nftables dataplane: a pure renderer from the
// model (and its Service plan) to a table in upstream kube-proxy's names
// (table ip/ip6 kube-proxy, dispatch through verdict maps, endpoints picked
// from shared endpoints maps), and the syncer that applies it over netlink:
// it keeps a record of what the table holds, works out what each sync must
// add and delete (only the Services that changed between full syncs), and
// sends that in transactions that each carry whole Services.
package nftables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/svcproxy/svcproxy/internal/model"
)

// TableName is the table svcproxy owns in each family, named as upstream's.
const TableName = "kube-proxy"

// Chains and containers of the table, with upstream's names.
const (
	chainServices          = "services"
	chainMasquerading      = "masquerading"
	chainReject            = "reject-chain"
	chainFirewallCheck     = "firewall-check"
	chainServiceEPCheck    = "service-endpoints-check"
	chainNodePortEPCheck   = "nodeport-endpoints-check"
	chainClusterIPsCheck   = "cluster-ips-check"
	setClusterIPs          = "cluster-ips"
	setNodePortIPs         = "nodeport-ips"
	mapServiceIPs          = "service-ips"
	mapServiceNodePorts    = "service-nodeports"
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePorts = "no-endpoint-nodeports"
	mapFirewallIPs         = "firewall-ips"
	setHairpin             = "hairpin-endpoints"
	// Localhost NodePorts in nftables mode (upstream's
	// KubeProxyNFTablesLocalhostNodePorts): a map of the NodePorts whose
	// loopback traffic is rejected, a chain per protocol that counts and
	// rejects it, and that chain's named counter.
	mapLocalhostReject        = "localhost-nodeport-reject-ports"
	localhostRejectChainPre   = "localhost-nodeport-reject-"
	localhostRejectCounterPre = "localhost-nodeport-rejected-"
)

// localhostRejectCounter is the named counter of the localhost NodePort
// packets of a protocol that the table rejects.
func localhostRejectCounter(proto model.Protocol) string {
	return localhostRejectCounterPre + string(proto)
}

func localhostRejectChain(proto model.Protocol) string {
	return localhostRejectChainPre + string(proto)
}

// localhostRejects are the protocols whose localhost NodePort traffic the
// table rejects, as upstream: none without the gate; the ones svcproxy's
// listeners do not serve (all but TCP) when they run; all otherwise.
func localhostRejects(opts Options) []model.Protocol {
	switch {
	case !opts.RejectLocalhostNodePorts:
		return nil
	case opts.LocalhostNodePorts:
		return []model.Protocol{model.UDP, model.SCTP}
	}
	return []model.Protocol{model.TCP, model.UDP, model.SCTP}
}

// Prefixes of the per-Service objects; one the state does not need is stale.
var (
	perServiceChainPrefixes = []string{"service-", "local-", "external-", "firewall-", "endpoint-"}
	affinitySetPrefix       = "affinity-"
)

// isServiceChain reports whether a chain is a per-Service or per-endpoint
// chain (as opposed to the table's fixed chains).
func isServiceChain(name string) bool {
	_, ok := chainBase(name)
	return ok
}

// chainBase is what follows a per-Service or per-endpoint chain's prefix,
// 8-character hash and dash ("namespace/name/protocol/port", see portBase);
// false for the table's fixed chains.
func chainBase(name string) (string, bool) {
	for _, p := range perServiceChainPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok && len(rest) > 9 && rest[8] == '-' && isHash(rest[:8]) {
			return rest[9:], true
		}
	}
	return "", false
}

// ServiceOfChain is the "namespace/name" of the Service a per-Service or
// per-endpoint chain belongs to, read from its name (upstream's or
// svcproxy's); false for other chains.
func ServiceOfChain(name string) (string, bool) {
	base, ok := chainBase(name)
	ns, rest, found := strings.Cut(base, "/")
	svc, _, _ := strings.Cut(rest, "/")
	if !ok || !found || svc == "" {
		return "", false
	}
	return ns + "/" + svc, true
}

func isHash(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// endpointMapPrefix starts the names of the endpoints maps.
const endpointMapPrefix = "endpoints-"

// rangesPerMap is how many Service chains' ranges one endpoints map holds.
// One map for all would not scale: the kernel makes every rule that uses a
// map walk all its elements, and every element added walk all its rules.
// Many small maps do not either: it finds a map by name in a list. A first
// sync of 10k and 100k Services × 10 endpoints took 2.0 s and 43 s with 64
// per map, 2.2 s and 35 s with 128, 2.8 s and 34 s with 256.
const rangesPerMap = 128

// endpointMap is the name of the endpoints map that holds range id.
func endpointMap(id uint32) string { return fmt.Sprintf("%s%03x", endpointMapPrefix, id/rangesPerMap) }

func isEndpointMap(name string) bool { return strings.HasPrefix(name, endpointMapPrefix) }

// endpointMapSet declares an endpoints map.
func endpointMapSet(name string) Set {
	return Set{Name: name, Keys: []string{"slot"}, IsMap: true, Endpoints: true, Comment: "Service chains' endpoints, by numgen value"}
}

// maxChainBase is upstream's limit on the part of a name after its prefix.
const maxChainBase = 240

// hashAndTruncate prefixes name with 8 characters of base32(sha256(name)), as
// upstream does, so that truncated or look-alike names stay distinct.
func hashAndTruncate(name string) string {
	sum := sha256.Sum256([]byte(name))
	name = base32.StdEncoding.EncodeToString(sum[:])[:8] + "-" + name
	if len(name) > maxChainBase {
		name = name[:maxChainBase-3] + "..."
	}
	return name
}

// portBase is "HASH-namespace/name/protocol/port" for a Service port.
func portBase(sp *model.ServicePort) string {
	return hashAndTruncate(sp.Name.Namespace + "/" + sp.Name.Name + "/" + strings.ToLower(string(sp.Protocol)) + "/" + sp.Name.Port)
}

// endpointBase is "HASH-namespace/name/protocol/port__ip/port"; the colons of
// an IPv6 address become dots, as chain names cannot hold colons.
func endpointBase(sp *model.ServicePort, ep model.Endpoint) string {
	ip := strings.ReplaceAll(ep.IP.String(), ":", ".")
	return hashAndTruncate(sp.Name.Namespace + "/" + sp.Name.Name + "/" + strings.ToLower(string(sp.Protocol)) + "/" + sp.Name.Port +
		"__" + ip + "/" + strconv.Itoa(int(ep.Port)))
}

// family is the knftables family of the table.
func family(v6 bool) knftables.Family {
	if v6 {
		return knftables.IPv6Family
	}
	return knftables.IPv4Family
}

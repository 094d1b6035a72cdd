// Package iptables is svcproxy's iptables dataplane: a pure renderer from
// the model to iptables-restore input in upstream kube-proxy's layout, and a
// thin layer that applies it with iptables-save/iptables-restore.
package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"slices"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Chains svcproxy owns, with upstream's names.
const (
	chainServices         = "KUBE-SERVICES"
	chainExternalServices = "KUBE-EXTERNAL-SERVICES"
	chainNodePorts        = "KUBE-NODEPORTS"
	chainPostrouting      = "KUBE-POSTROUTING"
	chainMarkMasq         = "KUBE-MARK-MASQ"
	chainForward          = "KUBE-FORWARD"
	chainFirewall         = "KUBE-FIREWALL"
	chainProxyFirewall    = "KUBE-PROXY-FIREWALL"

	// ChainCanary is watched: when it is gone, the tables were flushed.
	ChainCanary = "KUBE-PROXY-CANARY"
)

// Prefixes of the per-Service and per-endpoint chains; a chain with one of
// these that the current state does not need is stale and deleted.
var perServicePrefixes = []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"}

// portChainHash is upstream's hash: the first 16 characters of
// base32(sha256(servicePortName + protocol)).
func portChainHash(name model.ServicePortName, proto model.Protocol) string {
	return hash16(name.String() + string(proto))
}

// hash16 is the first 16 characters of base32(sha256(s)).
func hash16(s string) string { return string(appendHash16(nil, []byte(s))) }

func appendHash16(dst, b []byte) []byte {
	sum := sha256.Sum256(b)
	var enc [56]byte
	base32.StdEncoding.Encode(enc[:], sum[:])
	return append(dst, enc[:16]...)
}

// ServiceChain is the KUBE-SVC chain of a Service port.
func ServiceChain(name model.ServicePortName, proto model.Protocol) string {
	return "KUBE-SVC-" + portChainHash(name, proto)
}

// ExternalChain is the KUBE-EXT chain of a Service port.
func ExternalChain(name model.ServicePortName, proto model.Protocol) string {
	return "KUBE-EXT-" + portChainHash(name, proto)
}

// LocalChain is the KUBE-SVL chain (local endpoints only) of a Service port.
func LocalChain(name model.ServicePortName, proto model.Protocol) string {
	return "KUBE-SVL-" + portChainHash(name, proto)
}

// FirewallChain is the KUBE-FW chain (load balancer source ranges).
func FirewallChain(name model.ServicePortName, proto model.Protocol) string {
	return "KUBE-FW-" + portChainHash(name, proto)
}

// EndpointChain is the KUBE-SEP chain of one endpoint of a Service port.
func EndpointChain(name model.ServicePortName, proto model.Protocol, endpoint netip.AddrPort) string {
	var scratch []byte
	return string(appendEndpointChain(nil, &scratch, name.String(), proto, endpoint))
}

// appendEndpointChain appends EndpointChain's name for the Service port
// named spn ("ns/name:port") to dst, building the hash input in scratch.
func appendEndpointChain(dst []byte, scratch *[]byte, spn string, proto model.Protocol, endpoint netip.AddrPort) []byte {
	*scratch = endpoint.AppendTo(append(append((*scratch)[:0], spn...), proto...))
	return appendHash16(append(dst, "KUBE-SEP-"...), *scratch)
}

// portNames are a Service port's chain names and texts. Each name is a
// sha256, so a Renderer works them out once and keeps them while the port
// exists.
type portNames struct {
	spn string // "ns/name:port"
	key string // Span.Key
	svc string
	svl string
	ext string
	fw  string
	// seps are the endpoint chain names, sorted by endpoint: a map per
	// port would take twice the memory (10k of them at 10k Services).
	seps []sepName
	seen uint32 // the Renderer generation that last used these
}

type sepName struct {
	ep   netip.AddrPort
	name string
}

func newPortNames(name model.ServicePortName, proto model.Protocol) *portNames {
	h := portChainHash(name, proto)
	spn := name.String()
	return &portNames{spn: spn, key: spn + "/" + string(proto),
		svc: "KUBE-SVC-" + h, svl: "KUBE-SVL-" + h, ext: "KUBE-EXT-" + h, fw: "KUBE-FW-" + h}
}

// sep is EndpointChain for one of the port's endpoints, using scratch for
// the hash input.
func (p *portNames) sep(proto model.Protocol, ep netip.AddrPort, scratch *[]byte) string {
	i, ok := slices.BinarySearchFunc(p.seps, ep, func(s sepName, ep netip.AddrPort) int { return s.ep.Compare(ep) })
	if ok {
		return p.seps[i].name
	}
	var buf [25]byte // "KUBE-SEP-" and the hash: one allocation, the string
	n := string(appendEndpointChain(buf[:0], scratch, p.spn, proto, ep))
	p.seps = slices.Insert(p.seps, i, sepName{ep, n})
	return n
}

// Package iptables is svcproxy's iptables dataplane: a pure renderer from
// the model to iptables-restore input in upstream kube-proxy's layout, and a
// thin layer that applies it with iptables-save/iptables-restore.
package iptables

import (
	"crypto/sha256"
	"encoding/base32"

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

	// masqMark is bit 14, the mark upstream uses for "masquerade me".
	masqMark = "0x4000"
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
func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	var enc [56]byte
	base32.StdEncoding.Encode(enc[:], sum[:])
	return string(enc[:16])
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
func EndpointChain(name model.ServicePortName, proto model.Protocol, endpoint string) string {
	return "KUBE-SEP-" + hash16(name.String()+string(proto)+endpoint)
}

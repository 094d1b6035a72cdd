package dataplane

import (
	"net/netip"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Options are the node-wide settings that shape both modes' rules, for one
// IP family.
type Options struct {
	// ClusterCIDR is the pod CIDR (--cluster-cidr). Traffic to a cluster IP
	// from outside it is masqueraded; when unset, only external traffic is.
	ClusterCIDR netip.Prefix
	// MasqueradeAll masquerades all traffic to cluster IPs (--masquerade-all).
	MasqueradeAll bool
	// LocalhostNodePorts makes NodePorts answer on loopback. iptables mode
	// (IPv4 only) DNATs them, with the CVE-2020-8558 rule that keeps them
	// unreachable from other hosts; nftables mode (with
	// RejectLocalhostNodePorts) leaves TCP ones to svcproxy's userspace
	// listeners on 127.0.0.1 / ::1 and rejects only the other protocols.
	LocalhostNodePorts bool
	// RejectLocalhostNodePorts (nftables mode, upstream's
	// KubeProxyNFTablesLocalhostNodePorts gate) rejects NodePort traffic
	// to loopback that nothing serves and counts it per protocol, so that
	// operators see who still relies on localhost NodePorts.
	RejectLocalhostNodePorts bool
	// NodePortCIDRs limit NodePorts to the node's addresses in them
	// (--nodeport-addresses, this family's CIDRs); nil means every local
	// address. The addresses are the State's, read at every sync.
	NodePortCIDRs []netip.Prefix
	// NodePortPrimary adds the node's primary address of the family (from
	// its Node object) to those ("primary").
	NodePortPrimary bool
	// LocalByNodeCIDR tells pod traffic by its source being in this node's
	// pod range (the Node's spec.podCIDRs: --detect-local-mode NodeCIDR)
	// instead of in ClusterCIDR.
	LocalByNodeCIDR bool
	// LocalInterface, when set, tells pod traffic by the interface it
	// arrives on instead: the pods' bridge (--detect-local-mode
	// BridgeInterface), or with LocalInterfacePrefix any interface whose
	// name starts with it (InterfaceNamePrefix).
	LocalInterface       string
	LocalInterfacePrefix bool
	// MasqueradeMark is the packet mark that asks for masquerading
	// (1 << --iptables-masquerade-bit); 0 is upstream's default, bit 14.
	MasqueradeMark uint32
	// ConntrackTCPLiberal is set when nf_conntrack_tcp_be_liberal is on:
	// out-of-window packets are then not INVALID, and iptables mode drops
	// no INVALID packets (as upstream).
	ConntrackTCPLiberal bool
	// NFAcct is set when the kernel has upstream's nfacct counters
	// (iptables mode): the localhost NodePort rules and the INVALID drop
	// count in them, for upstream's metrics of both.
	NFAcct bool
	// IPv6 renders the IPv6 family; the other family's Service ports are
	// left out. ClusterCIDR must be of the same family.
	IPv6 bool
}

// LocalTraffic is how pod traffic is told apart on node: by its source
// (CIDR valid) or the interface it arrives on (Interface set); neither
// when nothing tells it (then only --masquerade-all masquerades cluster IP
// traffic, and external traffic is not short-circuited for pods).
type LocalTraffic struct {
	CIDR      netip.Prefix
	Interface string
	// Prefix makes Interface a name prefix.
	Prefix bool
}

// Known reports whether pod traffic can be told apart at all.
func (l LocalTraffic) Known() bool { return l.CIDR.IsValid() || l.Interface != "" }

// LocalTraffic is how pod traffic is told apart on node.
func (o Options) LocalTraffic(node model.Node) LocalTraffic {
	if o.LocalInterface != "" {
		return LocalTraffic{Interface: o.LocalInterface, Prefix: o.LocalInterfacePrefix}
	}
	return LocalTraffic{CIDR: o.PodCIDR(node)}
}

// PodCIDR is the range whose sources count as pods on node (invalid when
// none is known: then only --masquerade-all masquerades cluster IP traffic,
// and external traffic is not short-circuited for pods).
func (o Options) PodCIDR(node model.Node) netip.Prefix {
	if !o.LocalByNodeCIDR {
		return o.ClusterCIDR
	}
	p, _ := node.PodCIDR(o.IPv6)
	return p
}

// Mark is the masquerade mark in force.
func (o Options) Mark() uint32 {
	if o.MasqueradeMark == 0 {
		return 1 << 14
	}
	return o.MasqueradeMark
}

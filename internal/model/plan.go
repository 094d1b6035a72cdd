package model

import "net/netip"

// Plan is what one Service port's rules do on this node, worked out once
// for both proxy modes from the port's traffic policies and endpoints, as
// upstream kube-proxy's CategorizeEndpoints and the gates around it do. A
// renderer reads it and writes its own lines; it never decides policy.
type Plan struct {
	// Cluster and Local are the endpoints of the Cluster and Local policy
	// chains (KUBE-SVC / KUBE-SVL, service- / local-).
	Cluster, Local []Endpoint
	// UsesCluster and UsesLocal say which policy chains exist. The Cluster
	// chain also serves an externalTrafficPolicy: Local Service, because
	// pods and the node reach its external addresses through it
	// (short-circuit).
	UsesCluster, UsesLocal bool
	// InternalLocal sends cluster IP traffic to the Local chain
	// (internalTrafficPolicy: Local); ExternalLocal sends external traffic
	// there (externalTrafficPolicy: Local).
	InternalLocal, ExternalLocal bool
	// HasEndpoints is true when the Service has a usable endpoint on any
	// node. Without one all its traffic is rejected.
	HasEndpoints bool
	// HasInternal and HasExternal are true when cluster IP traffic and
	// external traffic have endpoints to go to from this node; when one is
	// false (and HasEndpoints true) that traffic is dropped.
	HasInternal, HasExternal bool
	// External says that the external chain (KUBE-EXT, external-) exists
	// and the NodePort, external IPs and load balancer IPs lead to it. Its
	// gate is HasEndpoints, not HasExternal: an externalTrafficPolicy:
	// Local Service without endpoints on this node still serves pods and
	// the node itself through it; only traffic from outside falls through
	// to a drop.
	External bool
	// Firewall is true when loadBalancerSourceRanges limit who may use the
	// load balancer IPs. FirewallAllowsLBIPs adds the load balancer IPs as
	// allowed sources: only when a source range holds the node's own IP,
	// for a VIP bound on this node that loops back with itself as source.
	Firewall, FirewallAllowsLBIPs bool
	// NATFirewall is Firewall where the firewall is a nat chain reached by
	// the jump to the Service (iptables mode's KUBE-FW): that jump exists
	// only while the Service has endpoints, and without any the filter
	// table rejects every source alike. nftables mode filters before DNAT
	// and reads Firewall.
	NATFirewall bool
}

// Plan works out sp's plan on node.
func (sp *ServicePort) Plan(node Node) Plan {
	p := Plan{InternalLocal: sp.InternalPolicyLocal, ExternalLocal: sp.ExternalPolicyLocal}
	p.Cluster, p.Local = sp.ClusterEndpoints(), sp.LocalEndpoints()
	external := sp.ExternallyAccessible()
	// Endpoints are ready ones, or serving terminating ones when none is
	// ready (per chain, see usable): so any endpoint in either list means
	// one exists somewhere.
	p.HasEndpoints = len(p.Cluster) > 0 || len(p.Local) > 0
	p.UsesCluster = len(p.Cluster) > 0 && (!sp.InternalPolicyLocal || external)
	p.UsesLocal = len(p.Local) > 0 && (sp.InternalPolicyLocal || sp.ExternalPolicyLocal)
	p.HasInternal, p.HasExternal = p.HasEndpoints, p.HasEndpoints
	if sp.InternalPolicyLocal {
		p.HasInternal = len(p.Local) > 0
	}
	if sp.ExternalPolicyLocal {
		p.HasExternal = len(p.Local) > 0
	}
	p.External = p.HasEndpoints && external
	p.Firewall = len(sp.LoadBalancerIPs) > 0 && len(sp.SourceRanges) > 0
	p.NATFirewall = p.Firewall && p.HasEndpoints
	if p.Firewall {
		if ip, ok := node.IP(sp.ClusterIP.Is6()); ok {
			for _, r := range sp.SourceRanges {
				if r.Contains(ip) {
					p.FirewallAllowsLBIPs = true
					break
				}
			}
		}
	}
	return p
}

// PodCIDR is the node's pod range of the family (spec.podCIDRs).
func (n Node) PodCIDR(v6 bool) (netip.Prefix, bool) {
	for _, p := range n.PodCIDRs {
		if p.Addr().Is6() == v6 {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// IP is the node's primary address of the family, from its Node object.
func (n Node) IP(v6 bool) (netip.Addr, bool) {
	for _, ip := range n.IPs {
		if ip.Is6() == v6 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

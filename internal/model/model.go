// Package model owns svcproxy's view of the cluster: one entry per Service
// port with the endpoints that serve it, and each port's plan (plan.go:
// which endpoints serve internal and external traffic, which chains exist).
// It reads Kubernetes objects itself (NewService, NewEndpointSlice,
// NewServiceCIDR), which sources call as objects arrive; everything
// downstream (sync loop, dataplanes, tracer) sees only these types, never
// client-go or API types.
package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Protocol is the lower-case L4 protocol name as iptables spells it.
type Protocol string

const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// ServicePortName identifies one port of one Service, the unit every rule is
// keyed by. Its String form ("ns/name:port", or "ns/name" when the port is
// unnamed) is the one upstream kube-proxy hashes and writes into comments.
type ServicePortName struct {
	Namespace string
	Name      string
	Port      string
}

func (n ServicePortName) String() string {
	if n.Port == "" {
		return n.Namespace + "/" + n.Name
	}
	return n.Namespace + "/" + n.Name + ":" + n.Port
}

// ServiceName is the "namespace/name" of the Service the port belongs to.
func (n ServicePortName) ServiceName() string { return n.Namespace + "/" + n.Name }

// ServicePort is everything the dataplane needs to program one Service port.
type ServicePort struct {
	Name      ServicePortName
	Protocol  Protocol
	ClusterIP netip.Addr
	Port      int32
	// NodePort is 0 when the Service has none.
	NodePort int32
	// ExternalIPs are spec.externalIPs.
	ExternalIPs []netip.Addr
	// LoadBalancerIPs are status.loadBalancer.ingress[].ip.
	LoadBalancerIPs []netip.Addr
	// SourceRanges are spec.loadBalancerSourceRanges: when set, only these
	// clients may use the load balancer IPs.
	SourceRanges []netip.Prefix
	// ExternalPolicyLocal is externalTrafficPolicy: Local.
	ExternalPolicyLocal bool
	// InternalPolicyLocal is internalTrafficPolicy: Local.
	InternalPolicyLocal bool
	// HealthCheckNodePort serves the local-endpoint health check for
	// externalTrafficPolicy: Local (0 when none).
	HealthCheckNodePort int32
	// AffinitySeconds is the sessionAffinity: ClientIP timeout; 0 means no
	// affinity.
	AffinitySeconds int32
	// Endpoints are all endpoints with their conditions, sorted by their
	// "ip:port" text (as upstream). ClusterEndpoints and LocalEndpoints
	// choose among them.
	Endpoints []Endpoint
}

// ExternallyAccessible reports whether traffic from outside the cluster
// can reach the Service (NodePort, external or load balancer IPs).
func (sp *ServicePort) ExternallyAccessible() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
}

// ClusterEndpoints are the endpoints for Cluster traffic policy: the ready
// ones, or, when none is ready, the ones still serving while terminating
// (as upstream: connections drain instead of failing).
func (sp *ServicePort) ClusterEndpoints() []Endpoint {
	return usable(sp.Endpoints, func(e Endpoint) bool { return !e.OutOfTopology })
}

// LocalEndpoints are the endpoints on this node, chosen the same way.
func (sp *ServicePort) LocalEndpoints() []Endpoint {
	return usable(sp.Endpoints, func(e Endpoint) bool { return e.IsLocal })
}

func usable(eps []Endpoint, keep func(Endpoint) bool) []Endpoint {
	// Mostly every endpoint is ready and kept: then eps itself (capped, so
	// that appending to it copies) saves an allocation per Service per sync.
	all := true
	for i := range eps {
		if !eps[i].Ready || !keep(eps[i]) {
			all = false
			break
		}
	}
	if all {
		return eps[:len(eps):len(eps)]
	}
	var ready, terminating []Endpoint
	for _, e := range eps {
		switch {
		case !keep(e):
		case e.Ready:
			ready = append(ready, e)
		case e.Serving && e.Terminating:
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	IP       netip.Addr
	NodeName string
	// Hints are the slice's topology hints, nil when it has none.
	Hints *Hints
	Port  int32
	// IsLocal is true when the endpoint runs on this node.
	IsLocal bool
	// Ready, Serving and Terminating are the EndpointSlice conditions.
	Ready, Serving, Terminating bool
	// OutOfTopology is set when topology hints steer this node's Cluster
	// traffic to other endpoints (see applyTopology).
	OutOfTopology bool
}

// Hints are an endpoint's topology hints (forZones, forNodes), written by
// the EndpointSlice controller for trafficDistribution and topology-aware
// routing. Most endpoints have none: a pointer keeps Endpoint at 64 bytes.
type Hints struct {
	Zones, Nodes []string
}

func (e *Endpoint) zoneHints() []string {
	if e.Hints == nil {
		return nil
	}
	return e.Hints.Zones
}

func (e *Endpoint) nodeHints() []string {
	if e.Hints == nil {
		return nil
	}
	return e.Hints.Nodes
}

// String is the "ip:port" form used for DNAT targets and endpoint hashes.
func (e Endpoint) String() string { return e.AddrPort().String() }

// AddrPort is the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.IP, uint16(e.Port)) }

// State is the complete desired state for one sync, sorted by Service port
// name so that rendering is deterministic. States built one after another
// share what did not change (the ports themselves and their endpoint
// lists): they are read-only.
type State struct {
	// Services are pointers so that a State differing from the last in a
	// few ports copies 8 bytes per port, not the ports: at 100k a copy of
	// the ports themselves is 23 MB per change.
	Services []*ServicePort
	// Node is the node the state was built for.
	Node Node
	// ServiceCIDRs are the ranges cluster IPs come from (ServiceCIDR
	// objects), sorted.
	ServiceCIDRs []netip.Prefix
	// LocalAddrs are this host's addresses, read afresh for every sync:
	// --nodeport-addresses CIDRs select from them, so an address added
	// later serves NodePorts from the next sync on.
	LocalAddrs []netip.Addr
	// Gen numbers the States one Builder builds, from 1 (0: not built by
	// a Builder).
	Gen uint64
	// Since, when set, is how little this State differs from the one its
	// Builder built before it.
	Since *Delta
}

// Delta is how a State differs from the State numbered Gen: only in the
// endpoints of the Service ports at the indices Changed (sorted). The rest
// is the same: the Service ports and their order, the node, the
// ServiceCIDRs (LocalAddrs are read for each sync apart). A consumer that
// kept what it made of State Gen need look at nothing else: under a stream
// of endpoint changes at 10k Services, a sync then costs what changed.
type Delta struct {
	Gen     uint64
	Changed []int
}

// ChangedSince returns the indices of the Service ports whose endpoints
// changed since the State numbered gen, when that is all that changed: none
// when st is that State (synced again), Since.Changed when st follows it.
// ok is false when st cannot say (gen 0, or an older State).
func (st *State) ChangedSince(gen uint64) (changed []int, ok bool) {
	switch {
	case gen == 0:
		return nil, false
	case st.Gen == gen:
		return nil, true
	case st.Since != nil && st.Since.Gen == gen:
		return st.Since.Changed, true
	}
	return nil, false
}

// ObjectError is a problem with one input object. It names the object and the
// field so that an operator can find and fix it; the object is skipped and
// everything else is still programmed.
type ObjectError struct {
	// Source is where the object came from (a file path, or "api").
	Source string
	Kind   string
	// Object is "namespace/name" (or a position such as "document 2" when the
	// object has no name yet).
	Object string
	Field  string
	Err    error
	// Kept is set when the object is still programmed: only what Field
	// names is left out, or read the legacy way.
	Kept bool
	// Warning marks a problem that changes nothing users rely on (a legacy
	// form, read as upstream reads it).
	Warning bool
}

func (e *ObjectError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Kind != "" {
		b.WriteString(e.Kind)
		b.WriteString(" ")
	}
	b.WriteString(e.Object)
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Outcome says what an error from a source or Build did to its object:
// "skipped" (left out), "partly used" (programmed without what the error
// names) or "warning" (programmed; a legacy form was read).
func Outcome(err error) string {
	var oe *ObjectError
	switch {
	case !errors.As(err, &oe) || !oe.Kept:
		return "skipped"
	case oe.Warning:
		return "warning"
	}
	return "partly used"
}

// NodePortAddresses are the addresses NodePorts answer on for one family
// (--nodeport-addresses): the host's addresses in the CIDRs, plus with
// primary the node's first address of the family from its Node object.
// cidrs nil means no CIDR is given for the family: then the result is nil
// too, every local address. CIDRs that match nothing give an empty,
// non-nil list: no NodePorts anywhere, rather than everywhere.
func (st *State) NodePortAddresses(cidrs []netip.Prefix, primary, v6 bool) []netip.Addr {
	ip, known := st.Node.IP(v6)
	if cidrs == nil && (!primary || !known) {
		// As upstream: "primary" of a family whose node address is not
		// known leaves that family without CIDRs, which is every address.
		return nil
	}
	out := []netip.Addr{}
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a.Is6() == v6 && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range st.LocalAddrs {
		for _, p := range cidrs {
			if p.Contains(a) {
				add(a)
			}
		}
	}
	if known && primary {
		add(ip)
	}
	return out
}

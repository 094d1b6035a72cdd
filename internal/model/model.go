// Package model owns svcproxy's view of the cluster: one entry per Service
// port with the endpoints that serve it. Sources translate Kubernetes objects
// into this model; everything downstream (sync loop, dataplanes, tracer) sees
// only these types, never client-go or API types.
package model

import (
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
	// Endpoints are the usable endpoints, sorted by address then port; empty
	// means the Service has no endpoints and traffic to it is rejected.
	Endpoints []Endpoint
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	IP       netip.Addr
	Port     int32
	NodeName string
	// IsLocal is true when the endpoint runs on this node.
	IsLocal bool
}

// String is the "ip:port" form used for DNAT targets and endpoint hashes.
func (e Endpoint) String() string {
	return netip.AddrPortFrom(e.IP, uint16(e.Port)).String()
}

// State is the complete desired state for one sync, sorted by Service port
// name so that rendering is deterministic.
type State struct {
	Services []ServicePort
	// Node is the node the state was built for.
	Node Node
}

// Lookup returns the ServicePort with the given name.
func (s *State) Lookup(name ServicePortName) (*ServicePort, bool) {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i], true
		}
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

package model

import (
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Service is what the model keeps of one Service object: its Service ports,
// or why it has none, worked out once when a source receives the object.
// Sources keep these instead of the API objects, which at 10k Services take
// several times the memory, and hand out an unchanged object as the same
// pointer. A Service is read-only once made.
type Service struct {
	// Namespace and Name are cut from key: one string for the three.
	Namespace, Name string
	// ResourceVersion is the API server's ("" for manifests); UID too.
	ResourceVersion string
	UID             string
	// Source is where the object came from (a file), for its errors. Like
	// the rest, set before the object is handed out.
	Source string

	key   string // namespace/name
	ports []ServicePort
	// names are the ports' names as strings, for sorting.
	names []string
	skip  bool
	// err names the field; Build adds the object and where it came from.
	err *ObjectError
	// notes are problems that leave the Service programmed: a port left
	// without its NodePort, an address in a legacy form.
	notes []*ObjectError
}

// NewService reads a Service object.
func NewService(svc *corev1.Service) *Service {
	s := &Service{ResourceVersion: svc.ResourceVersion, UID: string(svc.UID)}
	s.key, s.Namespace, s.Name = namespacedKey(svc.Namespace, svc.Name)
	s.ports, s.skip, s.err, s.notes = servicePorts(svc)
	for _, sp := range s.ports {
		s.names = append(s.names, sp.Name.String())
	}
	return s
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.key }

// EndpointSlice is what the model keeps of one EndpointSlice object: its
// usable endpoints per Service port, marked local for the node it was read
// for, and its errors. Like Service, read-only and made by sources.
type EndpointSlice struct {
	Namespace, Name string
	ResourceVersion string
	Source          string

	key string // namespace/name
	// service is its Service's namespace/name ("" without the label).
	service string
	// trigger is the endpoints.kubernetes.io/last-change-trigger-time
	// annotation, zero without one.
	trigger time.Time
	// node is the node name IsLocal was worked out for.
	node string
	keys []endpointKey
	eps  [][]Endpoint
	// errs name the field; Build adds where the object came from.
	errs []*ObjectError
}

// NewEndpointSlice reads an EndpointSlice object for the node named node
// (Build works IsLocal out again for another node). Node names go through
// names, so that the 10 or 100k endpoints on a few hundred nodes share them.
func NewEndpointSlice(s *discoveryv1.EndpointSlice, node string, names *Interner) *EndpointSlice {
	es := &EndpointSlice{ResourceVersion: s.ResourceVersion, node: node}
	es.key, es.Namespace, es.Name = namespacedKey(s.Namespace, s.Name)
	if v, ok := s.Annotations[lastChangeTriggerTime]; ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			es.trigger = t
		}
	}
	readEndpoints(es, s, names)
	return es
}

// Key is "namespace/name".
func (s *EndpointSlice) Key() string { return s.key }

// ServiceKey is its Service's "namespace/name", from the
// kubernetes.io/service-name label ("" without one).
func (s *EndpointSlice) ServiceKey() string { return s.service }

// namespacedKey returns "namespace/name" and its two parts, all in one
// allocation.
func namespacedKey(namespace, name string) (key, ns, n string) {
	key = namespace + "/" + name
	return key, key[:len(namespace)], key[len(namespace)+1:]
}

// withSource returns errs with where the object came from and its name.
func withSource(errs []*ObjectError, kind, key, source string) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		c := *e
		c.Source, c.Kind, c.Object = source, kind, key
		out[i] = &c
	}
	return out
}

// ServiceCIDR is what the model keeps of a ServiceCIDR object
// (networking.k8s.io/v1): the ranges cluster IPs are allocated from.
// nftables mode drops traffic to their addresses that no Service holds.
type ServiceCIDR struct {
	Name, ResourceVersion string
	Source                string
	CIDRs                 []netip.Prefix
	errs                  []*ObjectError
}

// NewServiceCIDR reads a ServiceCIDR object.
func NewServiceCIDR(o *networkingv1.ServiceCIDR) *ServiceCIDR {
	c := &ServiceCIDR{Name: o.Name, ResourceVersion: o.ResourceVersion}
	for i, s := range o.Spec.CIDRs {
		field := fmt.Sprintf("spec.cidrs[%d]", i)
		p, legacy, err := parsePrefix(s)
		if err != nil {
			c.errs = append(c.errs, &ObjectError{Field: field, Err: err})
			continue
		}
		if legacy {
			c.errs = append(c.errs, legacyWarning(field, s, p))
		}
		c.CIDRs = append(c.CIDRs, p)
	}
	return c
}

// Key is the object's name (ServiceCIDRs have no namespace).
func (c *ServiceCIDR) Key() string { return c.Name }

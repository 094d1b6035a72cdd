package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpointKey addresses the endpoints of one named, typed port of a Service,
// which is how EndpointSlice ports are matched to Service ports.
type endpointKey struct {
	service  string // namespace/name
	port     string
	protocol Protocol
	v6       bool
}

type endpointIndex map[endpointKey][]Endpoint

// forPort returns the endpoints of one Service port, sorted and de-duplicated
// (several slices of one Service may list the same address).
func (idx endpointIndex) forPort(name ServicePortName, proto Protocol, v6 bool) []Endpoint {
	eps := slices.Clone(idx[endpointKey{service: name.ServiceName(), port: name.Port, protocol: proto, v6: v6}])
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.IP == b.IP && a.Port == b.Port })
}

// endpointsByService merges all EndpointSlices of each Service. An endpoint
// that cannot be used is reported and skipped; the rest of its slice is kept.
// What a slice contributes is taken from cache when the same object was seen
// before, and recorded in next.
func endpointsByService(slicesIn []*discoveryv1.EndpointSlice, node Node, origin func(kind, key string) string,
	cache, next map[*discoveryv1.EndpointSlice]*sliceEndpoints) (endpointIndex, []error) {
	idx := endpointIndex{}
	var errs []error
	for _, s := range slicesIn {
		se := cache[s]
		if se == nil {
			se = endpointsOfSlice(s, node, origin)
		}
		if next != nil {
			next[s] = se
		}
		errs = append(errs, se.errs...)
		for i, k := range se.keys {
			// Appending to what idx holds (nil at first) never writes into
			// the cached slice.
			idx[k] = append(idx[k], se.eps[i]...)
		}
	}
	return idx, errs
}

// sliceEndpoints is what one EndpointSlice contributes: its usable
// endpoints per Service port, and its errors.
type sliceEndpoints struct {
	keys []endpointKey
	eps  [][]Endpoint
	errs []error
}

func endpointsOfSlice(s *discoveryv1.EndpointSlice, node Node, origin func(kind, key string) string) *sliceEndpoints {
	se := &sliceEndpoints{}
	key := s.Namespace + "/" + s.Name
	fail := func(field string, err error) {
		se.errs = append(se.errs, &ObjectError{Source: origin("EndpointSlice", key), Kind: "EndpointSlice", Object: key, Field: field, Err: err})
	}
	svcName := s.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		fail("metadata.labels", fmt.Errorf("label %s is required to tie the slice to its Service", discoveryv1.LabelServiceName))
		return se
	}
	v6 := false
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
	case discoveryv1.AddressTypeIPv6:
		v6 = true
	case discoveryv1.AddressTypeFQDN:
		// Not something a proxy can send traffic to; nothing is wrong.
		return se
	default:
		fail("addressType", fmt.Errorf("%q: must be IPv4, IPv6 or FQDN", s.AddressType))
		return se
	}
	usable := make([]Endpoint, 0, len(s.Endpoints))
	for i, ep := range s.Endpoints {
		// Upstream's defaults for missing conditions: ready and serving
		// unless said otherwise, not terminating.
		ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
		serving := ready
		if ep.Conditions.Serving != nil {
			serving = *ep.Conditions.Serving
		}
		terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
		if !ready && !(serving && terminating) {
			continue
		}
		if len(ep.Addresses) == 0 {
			fail(fmt.Sprintf("endpoints[%d].addresses", i), fmt.Errorf("at least one address is required"))
			continue
		}
		// Like upstream, only the first address of an endpoint is used.
		ip, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || ip.Unmap().Is6() != v6 {
			fail(fmt.Sprintf("endpoints[%d].addresses[0]", i), fmt.Errorf("%q is not an %s address", ep.Addresses[0], s.AddressType))
			continue
		}
		ip = ip.Unmap()
		e := Endpoint{IP: ip, Ready: ready, Serving: serving, Terminating: terminating}
		if h := ep.Hints; h != nil {
			for _, z := range h.ForZones {
				e.ZoneHints = append(e.ZoneHints, z.Name)
			}
			for _, n := range h.ForNodes {
				e.NodeHints = append(e.NodeHints, n.Name)
			}
		}
		if ep.NodeName != nil {
			e.NodeName = *ep.NodeName
			e.IsLocal = node.Name != "" && e.NodeName == node.Name
		}
		usable = append(usable, e)
	}
	for i, p := range s.Ports {
		field := func() string { return fmt.Sprintf("ports[%d]", i) }
		if p.Port == nil {
			continue
		}
		if *p.Port < 1 || *p.Port > 65535 {
			fail(field()+".port", fmt.Errorf("%d: must be between 1 and 65535", *p.Port))
			continue
		}
		proto := TCP
		if p.Protocol != nil {
			var ok bool
			if proto, ok = protocolOf(*p.Protocol); !ok {
				fail(field()+".protocol", fmt.Errorf("%q: must be TCP, UDP or SCTP", *p.Protocol))
				continue
			}
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		list := make([]Endpoint, len(usable))
		for j, e := range usable {
			e.Port = *p.Port
			list[j] = e
		}
		se.keys = append(se.keys, endpointKey{service: s.Namespace + "/" + svcName, port: name, protocol: proto, v6: v6})
		se.eps = append(se.eps, list)
	}
	return se
}

// applyTopology follows topology hints as upstream kube-proxy does: when a
// ready endpoint is hinted for this node, Cluster traffic goes to the
// endpoints hinted for this node (PreferSameNode); otherwise, when every
// ready endpoint has zone hints and one is for this node's zone, to those
// (PreferSameZone). In every other case all endpoints are used, so a
// half-hinted slice never blackholes traffic.
func applyTopology(eps []Endpoint, node Node) {
	var ready []int
	for i, e := range eps {
		if e.Ready {
			ready = append(ready, i)
		}
	}
	has := func(list []string, v string) bool { return v != "" && slices.Contains(list, v) }
	keep := func(e Endpoint) bool { return true }
	switch {
	case slices.ContainsFunc(ready, func(i int) bool { return has(eps[i].NodeHints, node.Name) }):
		keep = func(e Endpoint) bool { return has(e.NodeHints, node.Name) }
	case node.Zone != "" && len(ready) > 0 &&
		!slices.ContainsFunc(ready, func(i int) bool { return len(eps[i].ZoneHints) == 0 }) &&
		slices.ContainsFunc(ready, func(i int) bool { return has(eps[i].ZoneHints, node.Zone) }):
		keep = func(e Endpoint) bool { return has(e.ZoneHints, node.Zone) }
	}
	for i := range eps {
		eps[i].OutOfTopology = eps[i].Ready && !keep(eps[i])
	}
}

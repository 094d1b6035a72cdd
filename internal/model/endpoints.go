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

// endpointIndex holds, per Service port, the slices' endpoints for it.
type endpointIndex map[endpointKey]*portSources

// portSources are the endpoint lists the slices of a Service give one of
// its ports, and the slices they came from (one list per slice).
type portSources struct {
	from  []*sliceEndpoints
	parts [][]Endpoint
	// merged is the result of merge.
	merged []Endpoint
}

// merge returns the port's endpoints, sorted and de-duplicated (several
// slices of one Service may list the same address), with topology applied.
// When prev came from the same slice results, its endpoints are reused.
func (ps *portSources) merge(prev *portSources, node Node) []Endpoint {
	if ps == nil {
		return nil
	}
	if prev != nil && slices.Equal(prev.from, ps.from) {
		ps.merged = prev.merged
		return ps.merged
	}
	byAddr := func(a, b Endpoint) int { return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port)) }
	// Mostly one slice, sorted, without duplicates or topology to apply:
	// its endpoints are then used as they are (capped: no one appends to
	// them), not copied.
	if len(ps.parts) == 1 {
		eps := ps.parts[0]
		if slices.IsSortedFunc(eps, byAddr) && !hasDuplicates(eps) && !topologyChanges(eps, node) {
			ps.merged = eps[:len(eps):len(eps)]
			return ps.merged
		}
	}
	var eps []Endpoint
	for _, p := range ps.parts {
		eps = append(eps, p...)
	}
	if !slices.IsSortedFunc(eps, byAddr) {
		slices.SortFunc(eps, byAddr)
	}
	eps = slices.CompactFunc(eps, sameAddrPort)
	applyTopology(eps, node)
	ps.merged = eps
	return eps
}

func sameAddrPort(a, b Endpoint) bool { return a.IP == b.IP && a.Port == b.Port }

// hasDuplicates reports whether sorted eps list an address and port twice.
func hasDuplicates(eps []Endpoint) bool {
	for i := 1; i < len(eps); i++ {
		if sameAddrPort(eps[i-1], eps[i]) {
			return true
		}
	}
	return false
}

// endpointsByService groups all EndpointSlices' endpoints by Service port.
// An endpoint that cannot be used is reported and skipped; the rest of its
// slice is kept. What a slice contributes is taken from cache when the same
// object was seen before, and recorded in next.
func endpointsByService(slicesIn []*discoveryv1.EndpointSlice, node Node, origin func(kind, key string) string,
	cache, next map[*discoveryv1.EndpointSlice]*sliceEndpoints) (endpointIndex, []error) {
	idx := make(endpointIndex, len(slicesIn))
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
			ps := idx[k]
			if ps == nil {
				ps = &portSources{}
				idx[k] = ps
			}
			ps.from = append(ps.from, se)
			ps.parts = append(ps.parts, se.eps[i])
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
	keep := topologyKeep(eps, node)
	for i := range eps {
		eps[i].OutOfTopology = eps[i].Ready && !keep(eps[i])
	}
}

// topologyChanges reports whether applyTopology would change eps.
func topologyChanges(eps []Endpoint, node Node) bool {
	keep := topologyKeep(eps, node)
	for _, e := range eps {
		if e.OutOfTopology != (e.Ready && !keep(e)) {
			return true
		}
	}
	return false
}

// topologyKeep says which endpoints Cluster traffic keeps (see applyTopology).
func topologyKeep(eps []Endpoint, node Node) func(Endpoint) bool {
	has := func(list []string, v string) bool { return v != "" && slices.Contains(list, v) }
	var anyReady, nodeHinted, allZoned, zoneHinted bool
	allZoned = true
	for _, e := range eps {
		if e.Ready {
			anyReady = true
			nodeHinted = nodeHinted || has(e.NodeHints, node.Name)
			allZoned = allZoned && len(e.ZoneHints) > 0
			zoneHinted = zoneHinted || has(e.ZoneHints, node.Zone)
		}
	}
	switch {
	case nodeHinted:
		return func(e Endpoint) bool { return has(e.NodeHints, node.Name) }
	case node.Zone != "" && anyReady && allZoned && zoneHinted:
		return func(e Endpoint) bool { return has(e.ZoneHints, node.Zone) }
	}
	return func(Endpoint) bool { return true }
}

package model

import (
	"bytes"
	"cmp"
	"fmt"
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
// its ports, and the slices they came from (one list per slice, in slice
// name order).
type portSources struct {
	from  []*EndpointSlice
	parts [][]Endpoint
	// merged is what endpoints returns, once done.
	merged []Endpoint
	done   bool
}

// endpoints returns the port's endpoints, sorted and de-duplicated (several
// slices of one Service may list the same address; the first slice by name
// wins), with topology applied. It works them out once: the index keeps a
// portSources while no slice feeding it changes.
func (ps *portSources) endpoints(node Node) []Endpoint {
	if ps == nil {
		return nil
	}
	if !ps.done {
		ps.merged, ps.done = ps.merge(node), true
	}
	return ps.merged
}

// byAddr orders endpoints by their "ip:port" text, as upstream does
// ("10.0.0.12:80" before "10.0.0.4:80"), so that a node moved from
// kube-proxy keeps the same rule text, endpoint for endpoint.
func byAddr(a, b Endpoint) int {
	var ta, tb [48]byte
	return bytes.Compare(a.AddrPort().AppendTo(ta[:0]), b.AddrPort().AppendTo(tb[:0]))
}

func (ps *portSources) merge(node Node) []Endpoint {
	// Mostly one slice, sorted, without duplicates or topology to apply:
	// its endpoints are then used as they are (capped: no one appends to
	// them), not copied.
	if len(ps.parts) == 1 {
		eps := ps.parts[0]
		if slices.IsSortedFunc(eps, byAddr) && !hasDuplicates(eps) && !topologyChanges(eps, node) {
			return eps[:len(eps):len(eps)]
		}
	}
	var eps []Endpoint
	for _, p := range ps.parts {
		eps = append(eps, p...)
	}
	if !slices.IsSortedFunc(eps, byAddr) {
		slices.SortStableFunc(eps, byAddr)
	}
	eps = slices.CompactFunc(eps, sameAddrPort)
	applyTopology(eps, node)
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

// patchEndpoints brings b.endpoints to the EndpointSlices in: a port that a
// slice which came or went feeds gets new portSources, every other port keeps
// its own (and the endpoints worked out for it). It returns the keys of the
// ports it gave new portSources. An endpoint that cannot be used is reported
// and skipped; the rest of its slice is kept.
func (b *Builder) patchEndpoints(in []*EndpointSlice, node Node) ([]error, []endpointKey) {
	came, went := b.slicesIn.update(in)
	if b.slices == nil {
		b.slices = make(map[*EndpointSlice]*EndpointSlice, len(in))
	}
	var errs []error
	for _, s := range in {
		// A copy for this node has the errors of the object read.
		if len(s.errs) > 0 {
			errs = append(errs, withSource(s.errs, "EndpointSlice", s.key, s.Source)...)
		}
	}
	gone := make(map[*EndpointSlice]bool, len(went))
	for _, s := range went {
		gone[b.slices[s]] = true
		delete(b.slices, s)
	}
	added := make([]*EndpointSlice, 0, len(came))
	for _, s := range came {
		se := s.forNode(node.Name)
		b.slices[s] = se
		added = append(added, se)
	}
	if b.endpoints == nil {
		b.endpoints = make(endpointIndex, len(in))
	}
	idx := b.endpoints
	touched := map[endpointKey]*portSources{}
	var keys []endpointKey
	touch := func(k endpointKey) *portSources {
		if ps := touched[k]; ps != nil {
			return ps
		}
		ps := &portSources{}
		if old := idx[k]; old != nil {
			for i, se := range old.from {
				if !gone[se] {
					ps.from, ps.parts = append(ps.from, se), append(ps.parts, old.parts[i])
				}
			}
		}
		touched[k], idx[k] = ps, ps
		keys = append(keys, k)
		return ps
	}
	for se := range gone {
		for _, k := range se.keys {
			touch(k)
		}
	}
	for _, se := range added {
		for i, k := range se.keys {
			ps := touch(k)
			ps.from, ps.parts = append(ps.from, se), append(ps.parts, se.eps[i])
		}
	}
	for k, ps := range touched {
		if len(ps.from) == 0 {
			delete(idx, k)
			continue
		}
		if len(ps.from) > 1 {
			sortByName(ps)
		}
	}
	return errs, keys
}

// sortByName orders ps's slices by name, so that which slice's copy of a
// duplicate endpoint wins does not depend on the order slices came in.
func sortByName(ps *portSources) {
	order := make([]int, len(ps.from))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ps.from[a].key, ps.from[b].key) })
	from, parts := make([]*EndpointSlice, len(order)), make([][]Endpoint, len(order))
	for i, j := range order {
		from[i], parts[i] = ps.from[j], ps.parts[j]
	}
	ps.from, ps.parts = from, parts
}

// forNode is s as read for the node named node: s itself when it was read
// for that node, else a copy with IsLocal worked out again.
func (s *EndpointSlice) forNode(node string) *EndpointSlice {
	if s.node == node {
		return s
	}
	c := *s
	c.node = node
	c.eps = make([][]Endpoint, len(s.eps))
	for i, list := range s.eps {
		c.eps[i] = slices.Clone(list)
		for j := range c.eps[i] {
			c.eps[i][j].IsLocal = isLocal(c.eps[i][j].NodeName, node)
		}
	}
	return &c
}

func isLocal(endpointNode, node string) bool { return node != "" && endpointNode == node }

// readEndpoints fills in es's endpoint lists, one per slice port, each
// sorted by "ip:port" text (so that the usual Service, served by one
// slice, uses its list as it is), and its errors.
func readEndpoints(es *EndpointSlice, s *discoveryv1.EndpointSlice, names *Interner) {
	fail := func(field string, err error) {
		es.errs = append(es.errs, &ObjectError{Field: field, Err: err})
	}
	svcName := s.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		fail("metadata.labels", fmt.Errorf("label %s is required to tie the slice to its Service", discoveryv1.LabelServiceName))
		return
	}
	es.service = es.Namespace + "/" + svcName
	v6 := false
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
	case discoveryv1.AddressTypeIPv6:
		v6 = true
	case discoveryv1.AddressTypeFQDN:
		// Not something a proxy can send traffic to; nothing is wrong.
		return
	default:
		fail("addressType", fmt.Errorf("%q: must be IPv4, IPv6 or FQDN", s.AddressType))
		return
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
		// The field's name only for an error: at 10k Services a Sprintf per
		// endpoint was 100k allocations.
		field := func() string { return fmt.Sprintf("endpoints[%d].addresses[0]", i) }
		ip, legacy, err := parseAddr(ep.Addresses[0])
		if err != nil || ip.Is6() != v6 {
			fail(field(), fmt.Errorf("%q is not an %s address", ep.Addresses[0], s.AddressType))
			continue
		}
		if legacy {
			es.errs = append(es.errs, legacyWarning(field(), ep.Addresses[0], ip))
		}
		e := Endpoint{IP: ip, Ready: ready, Serving: serving, Terminating: terminating}
		if h := ep.Hints; h != nil && len(h.ForZones)+len(h.ForNodes) > 0 {
			hints := &Hints{}
			for _, z := range h.ForZones {
				hints.Zones = append(hints.Zones, names.intern(z.Name))
			}
			for _, n := range h.ForNodes {
				hints.Nodes = append(hints.Nodes, names.intern(n.Name))
			}
			e.Hints = hints
		}
		if ep.NodeName != nil {
			e.NodeName = names.intern(*ep.NodeName)
			e.IsLocal = isLocal(e.NodeName, es.node)
		}
		usable = append(usable, e)
	}
	slices.SortStableFunc(usable, byAddr)
	service := ""
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
		list := usable
		if len(es.eps) > 0 {
			list = slices.Clone(usable)
		}
		for j := range list {
			list[j].Port = *p.Port
		}
		if service == "" {
			service = s.Namespace + "/" + svcName
		}
		es.keys = append(es.keys, endpointKey{service: service, port: name, protocol: proto, v6: v6})
		es.eps = append(es.eps, list[:len(list):len(list)])
	}
}

// applyTopology follows topology hints as upstream kube-proxy does: when
// every ready endpoint has node hints and one is hinted for this node,
// Cluster traffic goes to the endpoints hinted for this node
// (PreferSameNode); otherwise, when every ready endpoint has zone hints and
// one is for this node's zone, to those (PreferSameZone). In every other
// case all endpoints are used, so a half-hinted slice never blackholes
// traffic.
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
	var anyReady, nodeHinted, zoneHinted bool
	allNoded, allZoned := true, true
	for _, e := range eps {
		if e.Ready {
			anyReady = true
			allNoded = allNoded && len(e.nodeHints()) > 0
			nodeHinted = nodeHinted || has(e.nodeHints(), node.Name)
			allZoned = allZoned && len(e.zoneHints()) > 0
			zoneHinted = zoneHinted || has(e.zoneHints(), node.Zone)
		}
	}
	switch {
	case anyReady && allNoded && nodeHinted:
		return func(e Endpoint) bool { return has(e.nodeHints(), node.Name) }
	case node.Zone != "" && anyReady && allZoned && zoneHinted:
		return func(e Endpoint) bool { return has(e.zoneHints(), node.Zone) }
	}
	return func(Endpoint) bool { return true }
}

package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ServiceProxyNameLabel marks Services that another proxy implementation
// handles; upstream kube-proxy skips them and so do we.
const ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"

// Node describes the node this proxy runs on.
type Node struct {
	Name string
	// Zone is the node's topology.kubernetes.io/zone label, when known.
	Zone string
	// IPs are the node's addresses from its Node object, primary first.
	IPs []netip.Addr
	// PodCIDRs are the pod ranges assigned to the node (spec.podCIDRs).
	PodCIDRs []netip.Prefix
	// Known is set when the node's Node object was read; Leaving when it
	// is being deleted or the cluster autoscaler marked it for deletion
	// (taint ToBeDeletedByClusterAutoscaler): load balancers should stop
	// sending it traffic.
	Known, Leaving bool
}

// toBeDeletedTaint is the cluster autoscaler's taint on a node it will
// delete.
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// Input is one consistent snapshot of the objects a source has seen, as
// the model keeps them (NewService, NewEndpointSlice).
type Input struct {
	Services       []*Service
	EndpointSlices []*EndpointSlice
	// Nodes are Node objects the source knows; the one named like this
	// node gives its zone and addresses.
	Nodes []*corev1.Node
	// ServiceCIDRs are the cluster's ServiceCIDR objects.
	ServiceCIDRs []*ServiceCIDR
}

// Build turns a snapshot into the desired State. Objects that cannot be used
// are reported in the returned errors and left out; every other Service is
// still in the State.
func Build(in Input, node Node) (State, []error) { return new(Builder).Build(in, node) }

// Builder builds States one snapshot after another, reusing what it worked
// out for the Services and EndpointSlices of the previous snapshot (the same
// pointer: sources never change an object they handed out, they replace
// it). At 10k Services a change then costs a pass over the objects and the
// work for the objects that changed, not a rebuild.
type Builder struct {
	node     Node
	services presence[*Service]
	// slices are the last snapshot's, each as read for this node.
	slices   map[*EndpointSlice]*EndpointSlice
	slicesIn presence[*EndpointSlice]
	// base is what the last snapshot's Services make, reused while the
	// same Service objects come.
	base *serviceBase
	// endpoints indexes the last snapshot's slices; each snapshot patches
	// it with the slices that came and went.
	endpoints endpointIndex
	// last is the last State built: the next one copies its ports while
	// the Services stay, and patches the endpoints that changed.
	last     State
	lastBase *serviceBase
}

// sameAs reports whether s and o are the same outcome for one Service.
func (s *Service) sameAs(o *Service) bool {
	errText := func(e *ObjectError) string {
		if e == nil {
			return ""
		}
		return e.Field + ": " + e.Err.Error()
	}
	if len(s.notes) != len(o.notes) {
		return false
	}
	for i := range s.notes {
		if errText(s.notes[i]) != errText(o.notes[i]) {
			return false
		}
	}
	return s.key == o.key && s.skip == o.skip && reflect.DeepEqual(s.ports, o.ports) && errText(s.err) == errText(o.err)
}

// serviceBase is the Service ports of a set of Service objects, sorted, with
// their endpoints still to be filled in from keys, and the Services' errors.
// The ports are the objects' own (they are read-only), not copies.
type serviceBase struct {
	ports  []*ServicePort
	keys   []endpointKey
	errs   []error
	inputs int // how many objects (duplicates included) it was made from
	// at finds the ports of an endpoint key (filled in when first needed).
	at map[endpointKey][]int
}

// Build is the package's Build, with the reuse.
func (b *Builder) Build(in Input, node Node) (State, []error) {
	for _, n := range in.Nodes {
		if n.Name == node.Name {
			node = nodeInfo(node, n)
		}
	}
	if node.Name != b.node.Name || node.Zone != b.node.Zone {
		// Which endpoints are local depends on the node's name, topology
		// on its zone too.
		b.node, b.slices, b.slicesIn, b.endpoints = node, nil, presence[*EndpointSlice]{}, nil
	}
	base := b.serviceBase(in.Services)
	epErrs, touched := b.patchEndpoints(in.EndpointSlices, node)
	cidrs, cidrErrs := serviceCIDRs(in.ServiceCIDRs)
	errs := append(append(slices.Clip(base.errs), epErrs...), cidrErrs...)
	st := State{Gen: b.last.Gen + 1, Node: node, ServiceCIDRs: cidrs}
	if b.last.Gen != 0 && base == b.lastBase && sameNode(node, b.last.Node) && slices.Equal(cidrs, b.last.ServiceCIDRs) {
		st.Services = slices.Clone(b.last.Services)
		st.Since = &Delta{Gen: b.last.Gen, Changed: b.refill(st.Services, base, touched, node)}
	} else {
		ports := make([]ServicePort, len(base.ports))
		st.Services = make([]*ServicePort, len(base.ports))
		for i := range ports {
			ports[i] = *base.ports[i]
			ports[i].Endpoints = b.endpoints[base.keys[i]].endpoints(node)
			st.Services[i] = &ports[i]
		}
	}
	b.last, b.lastBase = st, base
	return st, errs
}

// refill gives the ports of base that feed on the touched endpoint keys
// their endpoints anew, and returns the indices of those that changed,
// sorted.
func (b *Builder) refill(ports []*ServicePort, base *serviceBase, touched []endpointKey, node Node) []int {
	if len(touched) == 0 {
		return nil
	}
	if base.at == nil {
		base.at = make(map[endpointKey][]int, len(base.keys))
		for i, k := range base.keys {
			base.at[k] = append(base.at[k], i)
		}
	}
	var changed []int
	for _, k := range touched {
		eps := b.endpoints[k].endpoints(node)
		for _, i := range base.at[k] {
			if !SameEndpoints(eps, ports[i].Endpoints) {
				// The port is shared with earlier States: this State gets
				// its own copy.
				sp := *ports[i]
				sp.Endpoints = eps
				ports[i] = &sp
				changed = append(changed, i)
			}
		}
	}
	slices.Sort(changed)
	return slices.Compact(changed)
}

// SameEndpoints reports whether a and b are one list (not only equal
// ones): States built one after another share unchanged lists.
func SameEndpoints(a, b []Endpoint) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// sameNode reports whether two States' nodes are the same.
func sameNode(a, b Node) bool {
	return a.Name == b.Name && a.Zone == b.Zone && a.Known == b.Known && a.Leaving == b.Leaving &&
		slices.Equal(a.IPs, b.IPs) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// serviceCIDRs are the ranges of every ServiceCIDR object, sorted, each once.
func serviceCIDRs(objs []*ServiceCIDR) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for _, o := range objs {
		out = append(out, o.CIDRs...)
		errs = append(errs, withSource(o.errs, "ServiceCIDR", o.Name, o.Source)...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out), errs
}

// serviceBase returns what svcs make: the last result when they are the
// same objects as last time (or equal ones), else the ports of every usable
// Service sorted by name, the first Service in namespace/name order keeping
// a contested port.
func (b *Builder) serviceBase(svcs []*Service) *serviceBase {
	added, removed := b.services.update(svcs)
	same := b.base != nil && b.base.inputs == len(svcs) && b.services.distinct() == len(svcs) && len(added) == len(removed)
	if same && len(added) > 0 {
		// A new object that makes what the one it replaced made (a
		// manifest written again, a Service's status updated) is as good
		// as the old one.
		gone := make(map[string]*Service, len(removed))
		for _, svc := range removed {
			gone[svc.key] = svc
		}
		for _, svc := range added {
			old := gone[svc.key]
			// A Service in error (or with notes) is worked out again: its
			// errors name where the new object came from.
			if old == nil || old.err != nil || len(old.notes) > 0 || !old.sameAs(svc) {
				same = false
				break
			}
			delete(gone, svc.key)
		}
	}
	if same {
		return b.base
	}

	// Sorted on keys copied out of the objects: at 10k Services comparing
	// through the pointers costs a cache miss per comparison.
	type named struct {
		ns, name string
		r        *Service
	}
	sorted := make([]named, len(svcs))
	for i, svc := range svcs {
		sorted[i] = named{svc.Namespace, svc.Name, svc}
	}
	slices.SortFunc(sorted, func(a, b named) int { return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name)) })

	base := &serviceBase{inputs: len(svcs)}
	var ports []*ServicePort
	var names []string
	usedNodePorts := make(map[nodePortKey]string, len(svcs))
	usedFrontends := make(map[frontendKey]string, len(svcs))
	for _, n := range sorted {
		r := n.r
		if r.err != nil {
			base.errs = append(base.errs, withSource([]*ObjectError{r.err}, "Service", r.key, r.Source)...)
			continue
		}
		if r.skip {
			continue
		}
		if ferr := claimPorts(r.ports, r.key, usedNodePorts, usedFrontends); ferr != nil {
			base.errs = append(base.errs, withSource([]*ObjectError{ferr}, "Service", r.key, r.Source)...)
			continue
		}
		base.errs = append(base.errs, withSource(r.notes, "Service", r.key, r.Source)...)
		for i := range r.ports {
			sp := &r.ports[i]
			ports = append(ports, sp)
			names = append(names, r.names[i])
			base.keys = append(base.keys, endpointKey{service: r.key, port: sp.Name.Port, protocol: sp.Protocol, v6: sp.ClusterIP.Is6()})
		}
	}
	order := make([]int, len(ports))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(names[a], names[b]), cmp.Compare(ports[a].Protocol, ports[b].Protocol), ports[a].ClusterIP.Compare(ports[b].ClusterIP))
	})
	base.ports = make([]*ServicePort, len(ports))
	keys := make([]endpointKey, len(ports))
	for i, j := range order {
		base.ports[i], keys[i] = ports[j], base.keys[j]
	}
	base.keys = keys
	b.base = base
	return base
}

// nodeInfo adds what the Node object says about this node.
func nodeInfo(n Node, obj *corev1.Node) Node {
	n.Zone = obj.Labels[corev1.LabelTopologyZone]
	n.IPs, n.PodCIDRs = nil, nil
	n.Known = true
	n.Leaving = obj.DeletionTimestamp != nil || slices.ContainsFunc(obj.Spec.Taints, func(t corev1.Taint) bool { return t.Key == toBeDeletedTaint })
	cidrs := obj.Spec.PodCIDRs
	if len(cidrs) == 0 && obj.Spec.PodCIDR != "" {
		cidrs = []string{obj.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, _, err := parsePrefix(c); err == nil {
			n.PodCIDRs = append(n.PodCIDRs, p)
		}
	}
	// InternalIP first: upstream's "primary" node IP.
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range obj.Status.Addresses {
			if a.Type != want {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				n.IPs = append(n.IPs, ip)
			}
		}
	}
	return n
}

// servicePorts validates one Service and returns its ports. skip is true for
// Services the proxy deliberately does not handle (headless, ExternalName,
// owned by another proxy). err refuses the whole Service; notes are
// problems that leave it programmed (see ObjectError.Kept).
func servicePorts(svc *corev1.Service) (ports []ServicePort, skip bool, err *ObjectError, notes []*ObjectError) {
	r := &serviceReader{}
	ports, skip, err = r.read(svc)
	if err != nil {
		return nil, false, err, nil
	}
	return ports, skip, nil, r.notes
}

// serviceReader reads one Service, keeping the notes it makes.
type serviceReader struct {
	notes []*ObjectError
}

func (r *serviceReader) read(svc *corev1.Service) (ports []ServicePort, skip bool, err *ObjectError) {
	if svc.Name == "" {
		return nil, false, &ObjectError{Field: "metadata.name", Err: fmt.Errorf("required")}
	}
	// Names end up in rule comments and chain hashes: hold them to the API
	// server's rules so that a hand-written manifest cannot break a rule.
	if msgs := validation.IsDNS1035Label(svc.Name); len(msgs) > 0 {
		return nil, false, &ObjectError{Field: "metadata.name", Err: fmt.Errorf("%q: %s", svc.Name, strings.Join(msgs, "; "))}
	}
	if msgs := validation.IsDNS1123Label(svc.Namespace); len(msgs) > 0 {
		return nil, false, &ObjectError{Field: "metadata.namespace", Err: fmt.Errorf("%q: %s", svc.Namespace, strings.Join(msgs, "; "))}
	}
	if _, ok := svc.Labels[ServiceProxyNameLabel]; ok {
		return nil, true, nil
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, true, nil
	}
	if svc.Spec.ClusterIP == "" {
		return nil, false, &ObjectError{Field: "spec.clusterIP", Err: fmt.Errorf("required: without an API server nothing allocates one; set an address from the service CIDR, or \"None\" for a headless Service")}
	}
	clusterIPs, ferr := r.clusterIPs(svc)
	if ferr != nil {
		return nil, false, ferr
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, false, &ObjectError{Field: "spec.ports", Err: fmt.Errorf("a Service with a cluster IP needs at least one port")}
	}
	common, ferr := r.serviceWide(svc)
	if ferr != nil {
		return nil, false, ferr
	}
	seen := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		if len(svc.Spec.Ports) > 1 && p.Name == "" {
			return nil, false, &ObjectError{Field: field + ".name", Err: fmt.Errorf("required when a Service has more than one port")}
		}
		if p.Name != "" {
			if msgs := validation.IsDNS1123Label(p.Name); len(msgs) > 0 {
				return nil, false, &ObjectError{Field: field + ".name", Err: fmt.Errorf("%q: %s", p.Name, strings.Join(msgs, "; "))}
			}
		}
		proto, ok := protocolOf(p.Protocol)
		if !ok {
			return nil, false, &ObjectError{Field: field + ".protocol", Err: fmt.Errorf("%q: must be TCP, UDP or SCTP", p.Protocol)}
		}
		if seen[p.Name+"/"+string(proto)] {
			return nil, false, &ObjectError{Field: field + ".name", Err: fmt.Errorf("duplicate port name %q", p.Name)}
		}
		seen[p.Name+"/"+string(proto)] = true
		if p.Port < 1 || p.Port > 65535 {
			return nil, false, &ObjectError{Field: field + ".port", Err: fmt.Errorf("%d: must be between 1 and 65535", p.Port)}
		}
		if p.NodePort < 0 || p.NodePort > 65535 {
			return nil, false, &ObjectError{Field: field + ".nodePort", Err: fmt.Errorf("%d: must be between 1 and 65535", p.NodePort)}
		}
		nodePort := p.NodePort
		switch svc.Spec.Type {
		case corev1.ServiceTypeNodePort:
			if nodePort == 0 {
				// The port's cluster IP and external IPs are still
				// programmed: only its NodePort is missing.
				r.notes = append(r.notes, &ObjectError{Field: field + ".nodePort", Kept: true,
					Err: fmt.Errorf("required for type NodePort: without an API server nothing allocates one; the port is programmed without a NodePort")})
			}
		case corev1.ServiceTypeLoadBalancer:
		default:
			// A ClusterIP Service keeps no node port even if one is written down,
			// as the API server would clear it.
			nodePort = 0
		}
		// A dual-stack Service is one ServicePort per family, each with
		// that family's addresses.
		for _, clusterIP := range clusterIPs {
			sp := common.forFamily(clusterIP.Is6())
			sp.Name = ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.Name}
			sp.Protocol, sp.ClusterIP, sp.Port, sp.NodePort = proto, clusterIP, p.Port, nodePort
			sp.ExternalPolicyLocal = sp.ExternalPolicyLocal && sp.ExternallyAccessible()
			ports = append(ports, sp)
		}
	}
	return ports, false, nil
}

// addr reads an address field, noting a legacy form.
func (r *serviceReader) addr(field, s string) (netip.Addr, *ObjectError) {
	a, legacy, err := parseAddr(s)
	if err != nil {
		return a, &ObjectError{Field: field, Err: err}
	}
	if legacy {
		r.notes = append(r.notes, legacyWarning(field, s, a))
	}
	return a, nil
}

// clusterIPs returns spec.clusterIPs (or spec.clusterIP), at most one
// per family.
func (r *serviceReader) clusterIPs(svc *corev1.Service) ([]netip.Addr, *ObjectError) {
	list := svc.Spec.ClusterIPs
	field := "spec.clusterIPs"
	if len(list) == 0 {
		list, field = []string{svc.Spec.ClusterIP}, "spec.clusterIP"
	}
	if len(list) > 2 {
		return nil, &ObjectError{Field: field, Err: fmt.Errorf("at most one address per family (IPv4, IPv6)")}
	}
	var out []netip.Addr
	for i, s := range list {
		f := field
		if field == "spec.clusterIPs" {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		a, ferr := r.addr(f, s)
		if ferr != nil {
			return nil, ferr
		}
		if len(out) == 1 && out[0].Is6() == a.Is6() {
			return nil, &ObjectError{Field: f, Err: fmt.Errorf("%s: a dual-stack Service needs one address of each family", a)}
		}
		out = append(out, a)
	}
	if svc.Spec.ClusterIP != "" && len(svc.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIP != svc.Spec.ClusterIPs[0] {
		return nil, &ObjectError{Field: "spec.clusterIP", Err: fmt.Errorf("%q must equal spec.clusterIPs[0] %q", svc.Spec.ClusterIP, svc.Spec.ClusterIPs[0])}
	}
	return out, nil
}

// forFamily keeps the addresses and ranges of one family.
func (sp ServicePort) forFamily(v6 bool) ServicePort {
	keep := func(a netip.Addr) bool { return a.Is6() == v6 }
	sp.ExternalIPs = slices.DeleteFunc(slices.Clone(sp.ExternalIPs), func(a netip.Addr) bool { return !keep(a) })
	sp.LoadBalancerIPs = slices.DeleteFunc(slices.Clone(sp.LoadBalancerIPs), func(a netip.Addr) bool { return !keep(a) })
	sp.SourceRanges = slices.DeleteFunc(slices.Clone(sp.SourceRanges), func(p netip.Prefix) bool { return !keep(p.Addr()) })
	// A range of length 0 lets everyone in, as no ranges do.
	if slices.ContainsFunc(sp.SourceRanges, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
		sp.SourceRanges = nil
	}
	return sp
}

// serviceWide reads the settings every port of a Service shares, for both
// families (forFamily splits them).
func (r *serviceReader) serviceWide(svc *corev1.Service) (ServicePort, *ObjectError) {
	var sp ServicePort
	for i, s := range svc.Spec.ExternalIPs {
		a, ferr := r.addr(fmt.Sprintf("spec.externalIPs[%d]", i), s)
		if ferr != nil {
			return sp, ferr
		}
		sp.ExternalIPs = append(sp.ExternalIPs, a)
	}
	// Load balancer IPs and source ranges are read whatever the type, as
	// upstream reads them (a Service turned from LoadBalancer to ClusterIP
	// keeps its status until the cloud controller clears it).
	for i, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue // a hostname-only ingress (some clouds) is not an address to program
		}
		a, ferr := r.addr(fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), ing.IP)
		if ferr != nil {
			return sp, ferr
		}
		// A Proxy-mode load balancer sends traffic from its own
		// address to the node: packets to its IP must go to the load
		// balancer, not be short-cut here (upstream writes no rule).
		if ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy {
			continue
		}
		sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, a)
	}
	for i, s := range svc.Spec.LoadBalancerSourceRanges {
		field := fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i)
		// The API server lets spaces around a range through.
		s = strings.TrimSpace(s)
		p, legacy, err := parsePrefix(s)
		if err != nil {
			return sp, &ObjectError{Field: field, Err: err}
		}
		if legacy {
			r.notes = append(r.notes, legacyWarning(field, s, p))
		}
		sp.SourceRanges = append(sp.SourceRanges, p)
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		sp.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	}
	switch svc.Spec.ExternalTrafficPolicy {
	case "", corev1.ServiceExternalTrafficPolicyCluster:
	case corev1.ServiceExternalTrafficPolicyLocal:
		sp.ExternalPolicyLocal = true
	default:
		return sp, &ObjectError{Field: "spec.externalTrafficPolicy", Err: fmt.Errorf("%q: must be Cluster or Local", svc.Spec.ExternalTrafficPolicy)}
	}
	if itp := svc.Spec.InternalTrafficPolicy; itp != nil {
		switch *itp {
		case corev1.ServiceInternalTrafficPolicyCluster:
		case corev1.ServiceInternalTrafficPolicyLocal:
			sp.InternalPolicyLocal = true
		default:
			return sp, &ObjectError{Field: "spec.internalTrafficPolicy", Err: fmt.Errorf("%q: must be Cluster or Local", *itp)}
		}
	}
	switch svc.Spec.SessionAffinity {
	case "", corev1.ServiceAffinityNone:
	case corev1.ServiceAffinityClientIP:
		sp.AffinitySeconds = corev1.DefaultClientIPServiceAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			sp.AffinitySeconds = *c.ClientIP.TimeoutSeconds
		}
		if sp.AffinitySeconds < 1 || sp.AffinitySeconds > 86400 {
			return sp, &ObjectError{Field: "spec.sessionAffinityConfig.clientIP.timeoutSeconds", Err: fmt.Errorf("%d: must be between 1 and 86400", sp.AffinitySeconds)}
		}
	default:
		return sp, &ObjectError{Field: "spec.sessionAffinity", Err: fmt.Errorf("%q: must be None or ClientIP", svc.Spec.SessionAffinity)}
	}
	return sp, nil
}

// claimPorts refuses a Service whose node ports or cluster IP frontends are
// already taken by another Service: two Services cannot share one port, and
// the first one (in namespace/name order) keeps it.
func claimPorts(sps []ServicePort, owner string, nodePorts map[nodePortKey]string, frontends map[frontendKey]string) *ObjectError {
	for i, sp := range sps {
		if sp.NodePort != 0 {
			if other, ok := nodePorts[nodePortKey{sp.Protocol, sp.NodePort}]; ok {
				return &ObjectError{Field: fmt.Sprintf("spec.ports[%d].nodePort", i), Err: fmt.Errorf("%d/%s is already used by Service %s", sp.NodePort, sp.Protocol, other)}
			}
		}
		if other, ok := frontends[frontendKey{sp.Protocol, netip.AddrPortFrom(sp.ClusterIP, uint16(sp.Port))}]; ok {
			return &ObjectError{Field: fmt.Sprintf("spec.ports[%d].port", i), Err: fmt.Errorf("%s:%d/%s is already used by Service %s", sp.ClusterIP, sp.Port, sp.Protocol, other)}
		}
	}
	for _, sp := range sps {
		if sp.NodePort != 0 {
			nodePorts[nodePortKey{sp.Protocol, sp.NodePort}] = owner
		}
		frontends[frontendKey{sp.Protocol, netip.AddrPortFrom(sp.ClusterIP, uint16(sp.Port))}] = owner
	}
	return nil
}

// nodePortKey and frontendKey are what two Services cannot share: a node
// port, a cluster IP and port, each per protocol.
type nodePortKey struct {
	proto Protocol
	port  int32
}

type frontendKey struct {
	proto Protocol
	addr  netip.AddrPort
}

func protocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case "", corev1.ProtocolTCP:
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return "", false
}

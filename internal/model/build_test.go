package model

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(name string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeNodePort,
			ClusterIP: "10.96.0.10",
			Ports:     []corev1.ServicePort{{Port: 80, NodePort: 30450, Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func slice(name, service string, port int32, portName string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	p := discoveryv1.EndpointPort{Port: &port}
	if portName != "" {
		p.Name = &portName
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{p},
		Endpoints:   eps,
	}
}

func endpoint(ip, node string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func ptr[T any](v T) *T { return &v }

// objects are API objects; in reads them as a source does, for node-1
// (Build works IsLocal out again for another node). Like a source, it
// gives one object the same *Service or *EndpointSlice every time.
type objects struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Source is where they came from.
	Source string
}

var (
	readServices = map[*corev1.Service]*Service{}
	readSlices   = map[*discoveryv1.EndpointSlice]*EndpointSlice{}
	readNames    Interner
)

func (o objects) in() Input {
	var in Input
	for _, s := range o.Services {
		if readServices[s] == nil {
			readServices[s] = NewService(s)
			readServices[s].Source = o.Source
		}
		in.Services = append(in.Services, readServices[s])
	}
	for _, s := range o.EndpointSlices {
		if readSlices[s] == nil {
			readSlices[s] = NewEndpointSlice(s, "node-1", &readNames)
		}
		in.EndpointSlices = append(in.EndpointSlices, readSlices[s])
	}
	return in
}

func TestBuildRejectsBadServicesAndKeepsTheRest(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*corev1.Service)
		wantErr string // "" means the Service is programmed
		skipped bool   // deliberately not handled, without error
		kept    bool   // programmed, with wantErr reported (ObjectError.Kept)
	}{
		{name: "good"},
		{name: "headless", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Type = "" }, skipped: true},
		{name: "external-name", mutate: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, skipped: true},
		{name: "other-proxy", mutate: func(s *corev1.Service) { s.Labels = map[string]string{ServiceProxyNameLabel: "x"} }, skipped: true},
		{name: "no-cluster-ip", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "" }, wantErr: "Service default/no-cluster-ip: spec.clusterIP: required"},
		{name: "bad-ip", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.300" }, wantErr: `spec.clusterIP: "10.96.0.300" is not an IP address`},
		{name: "ipv6", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::1" }},
		{name: "two-ipv4", mutate: func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.10", "10.96.0.11"} },
			wantErr: "spec.clusterIPs[1]: 10.96.0.11: a dual-stack Service needs one address of each family"},
		{name: "port-range", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Port = 70000 }, wantErr: "spec.ports[0].port: 70000: must be between 1 and 65535"},
		{name: "nodeport-missing", mutate: func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 0 }, wantErr: "spec.ports[0].nodePort: required for type NodePort", kept: true},
		{name: "leading-zeros", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.010" },
			wantErr: `spec.clusterIP: "10.96.0.010" has leading zeros, a legacy form: read as 10.96.0.10`, kept: true},
		{name: "bad-protocol", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }, wantErr: `spec.ports[0].protocol: "ICMP"`},
		{name: "quote-in-port-name", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Name = "a\" -j ACCEPT" }, wantErr: "spec.ports[0].name"},
		{name: "newline-in-port-name", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Name = "a\n-A INPUT -j DROP" }, wantErr: "spec.ports[0].name"},
		{name: "bad-source-range", mutate: func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/33"}
		}, wantErr: `spec.loadBalancerSourceRanges[0]: "10.0.0.0/33" is not a CIDR`},
		{name: "bad-external-ip", mutate: func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"1.2.3"} }, wantErr: `spec.externalIPs[0]: "1.2.3"`},
		{name: "Bad_Name", wantErr: "metadata.name"},
		{name: "unnamed-ports", mutate: func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 81, NodePort: 30451})
		}, wantErr: "spec.ports[0].name: required when a Service has more than one port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := svc(tt.name, tt.mutate)
			// Every case also carries an unrelated good Service, which must
			// be programmed whatever happens to the first.
			other := svc("zz-other", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.99"; s.Spec.Ports[0].NodePort = 30999 })
			st, errs := Build(objects{Services: []*corev1.Service{s, other}, Source: "svc.yaml"}.in(), Node{Name: "node-1"})
			if _, ok := lookup(&st, ServicePortName{Namespace: "default", Name: "zz-other"}); !ok {
				t.Fatal("an unrelated Service was not programmed")
			}
			_, programmed := lookup(&st, ServicePortName{Namespace: "default", Name: tt.name})
			if tt.wantErr == "" {
				if len(errs) != 0 || programmed == tt.skipped {
					t.Fatalf("errs=%v programmed=%v", errs, programmed)
				}
				return
			}
			if programmed != tt.kept || len(errs) != 1 {
				t.Fatalf("programmed=%v errs=%v, want one error", programmed, errs)
			}
			var oe *ObjectError
			if !errors.As(errs[0], &oe) || oe.Kept != tt.kept {
				t.Errorf("error %#v: want Kept=%v", errs[0], tt.kept)
			}
			if !strings.Contains(errs[0].Error(), tt.wantErr) || !strings.HasPrefix(errs[0].Error(), "svc.yaml: Service default/"+tt.name) {
				t.Errorf("error %q: want it to start with the file and object and contain %q", errs[0], tt.wantErr)
			}
		})
	}
}

func TestBuildDuplicateNodePortKeepsFirst(t *testing.T) {
	a := svc("a", nil)
	b := svc("b", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.11" })
	st, errs := Build(objects{Services: []*corev1.Service{b, a}}.in(), Node{})
	if _, ok := lookup(&st, ServicePortName{Namespace: "default", Name: "a"}); !ok {
		t.Error("default/a should keep node port 30450")
	}
	if len(st.Services) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "30450/tcp is already used by Service default/a") {
		t.Errorf("services=%v errs=%v", st.Services, errs)
	}
}

func TestBuildEndpoints(t *testing.T) {
	s := svc("web", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30450}, {Name: "metrics", Port: 9090, NodePort: 30451}}
	})
	slices := []*discoveryv1.EndpointSlice{
		slice("web-1", "web", 8080, "http", endpoint("10.244.0.5", "node-1", nil), endpoint("10.244.1.7", "node-2", ptr(true)), endpoint("10.244.0.6", "node-1", ptr(false))),
		// A second slice repeating one address and adding another.
		slice("web-2", "web", 8080, "http", endpoint("10.244.0.5", "node-1", nil), endpoint("10.244.2.2", "node-3", nil), endpoint("not-an-ip", "node-1", nil)),
		slice("web-3", "web", 9100, "metrics", endpoint("10.244.0.5", "node-1", nil)),
		slice("other", "not-web", 8080, "http", endpoint("10.244.9.9", "node-1", nil)),
	}
	st, errs := Build(objects{Services: []*corev1.Service{s}, EndpointSlices: slices}.in(), Node{Name: "node-1"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `EndpointSlice default/web-2: endpoints[2].addresses[0]: "not-an-ip" is not an IPv4 address`) {
		t.Errorf("errs = %v", errs)
	}
	http, _ := lookup(&st, ServicePortName{Namespace: "default", Name: "web", Port: "http"})
	var got []string
	for _, e := range http.Endpoints {
		s := e.String()
		if e.IsLocal {
			s += " local"
		}
		got = append(got, s)
	}
	want := "10.244.0.5:8080 local,10.244.1.7:8080,10.244.2.2:8080"
	if strings.Join(got, ",") != want {
		t.Errorf("http endpoints = %s, want %s (not-ready excluded, duplicates merged, sorted)", strings.Join(got, ","), want)
	}
	metrics, _ := lookup(&st, ServicePortName{Namespace: "default", Name: "web", Port: "metrics"})
	if len(metrics.Endpoints) != 1 || metrics.Endpoints[0].Port != 9100 {
		t.Errorf("metrics endpoints = %v: the target port comes from the slice port of the same name", metrics.Endpoints)
	}
}

func TestTopologyHints(t *testing.T) {
	zoned := func(ip, node, zone string, forNodes ...string) discoveryv1.Endpoint {
		e := endpoint(ip, node, nil)
		e.Hints = &discoveryv1.EndpointHints{}
		if zone != "" {
			e.Hints.ForZones = []discoveryv1.ForZone{{Name: zone}}
		}
		for _, n := range forNodes {
			e.Hints.ForNodes = append(e.Hints.ForNodes, discoveryv1.ForNode{Name: n})
		}
		return e
	}
	s := svc("web", nil)
	tests := []struct {
		name string
		eps  []discoveryv1.Endpoint
		node Node
		want string
	}{
		{"same zone preferred", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a"), zoned("10.244.1.5", "node-2", "zone-b")},
			Node{Name: "node-1", Zone: "zone-a"}, "10.244.0.5:80"},
		{"an endpoint without hints: every endpoint", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a"), endpoint("10.244.1.5", "node-2", nil)},
			Node{Name: "node-1", Zone: "zone-a"}, "10.244.0.5:80,10.244.1.5:80"},
		{"no endpoint for this zone: every endpoint", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a"), zoned("10.244.1.5", "node-2", "zone-b")},
			Node{Name: "node-3", Zone: "zone-c"}, "10.244.0.5:80,10.244.1.5:80"},
		{"unknown node zone: every endpoint", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a"), zoned("10.244.1.5", "node-2", "zone-b")},
			Node{Name: "node-1"}, "10.244.0.5:80,10.244.1.5:80"},
		{"same node preferred over zone", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a", "node-1"), zoned("10.244.0.6", "node-9", "zone-a", "node-9")},
			Node{Name: "node-1", Zone: "zone-a"}, "10.244.0.5:80"},
		{"an endpoint without node hints: zone hints decide", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "zone-a", "node-1"), zoned("10.244.0.6", "node-9", "zone-a")},
			Node{Name: "node-1", Zone: "zone-a"}, "10.244.0.5:80,10.244.0.6:80"},
		{"partly node-hinted, no zone hints: every endpoint", []discoveryv1.Endpoint{zoned("10.244.0.5", "node-1", "", "node-1"), endpoint("10.244.1.5", "node-2", nil)},
			Node{Name: "node-1", Zone: "zone-a"}, "10.244.0.5:80,10.244.1.5:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, errs := Build(objects{Services: []*corev1.Service{s}, EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-1", "web", 80, "", tt.eps...)}}.in(), tt.node)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			var got []string
			for _, e := range st.Services[0].ClusterEndpoints() {
				got = append(got, e.String())
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("cluster endpoints = %v, want %s", got, tt.want)
			}
		})
	}
}

// lookup returns the ServicePort with the given name.
func lookup(s *State, name ServicePortName) (*ServicePort, bool) {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return s.Services[i], true
		}
	}
	return nil, false
}

func TestBuildDualStack(t *testing.T) {
	s := svc("web", func(s *corev1.Service) {
		s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00:96::10"}
		s.Spec.ExternalIPs = []string{"192.0.2.50", "2001:db8::50"}
	})
	v6 := slice("web-v6", "web", 80, "", endpoint("fd00:10:244::5", "node-1", nil))
	v6.AddressType = discoveryv1.AddressTypeIPv6
	st, errs := Build(objects{Services: []*corev1.Service{s}, EndpointSlices: []*discoveryv1.EndpointSlice{
		slice("web-v4", "web", 80, "", endpoint("10.244.0.5", "node-1", nil)), v6,
	}}.in(), Node{Name: "node-1"})
	if len(errs) > 0 || len(st.Services) != 2 {
		t.Fatalf("errs=%v services=%d, want one port per family", errs, len(st.Services))
	}
	v4p, v6p := st.Services[0], st.Services[1]
	if v4p.ClusterIP.String() != "10.96.0.10" || v6p.ClusterIP.String() != "fd00:96::10" || v4p.NodePort != v6p.NodePort {
		t.Errorf("ports: %v %v", v4p.ClusterIP, v6p.ClusterIP)
	}
	if len(v4p.Endpoints) != 1 || !v4p.Endpoints[0].IP.Is4() || len(v6p.Endpoints) != 1 || !v6p.Endpoints[0].IP.Is6() {
		t.Errorf("endpoints not split by family: %v / %v", v4p.Endpoints, v6p.Endpoints)
	}
	if len(v4p.ExternalIPs) != 1 || !v4p.ExternalIPs[0].Is4() || len(v6p.ExternalIPs) != 1 || !v6p.ExternalIPs[0].Is6() {
		t.Errorf("external IPs not split by family: %v / %v", v4p.ExternalIPs, v6p.ExternalIPs)
	}
}

// A Builder fed one snapshot after another gives what a fresh Build of each
// gives: reused work never leaks an old object's endpoints or errors.
func TestBuilderReusesOnlyUnchangedObjects(t *testing.T) {
	web := svc("web", nil)
	bad := svc("Bad_Name", nil)
	s1 := slice("web-a", "web", 8080, "", endpoint("10.244.0.10", "node-1", nil))
	s2 := slice("web-b", "web", 8080, "", endpoint("10.244.1.10", "node-2", nil))
	noLabel := slice("orphan", "", 8080, "", endpoint("10.244.0.99", "node-1", nil))
	noLabel.Labels = nil
	// The same address in two slices, on another node in one: which copy wins
	// must not depend on the order the slices come in.
	dup := slice("web-c", "web", 8080, "", endpoint("10.244.0.10", "node-2", nil), endpoint("10.244.2.10", "node-2", nil))
	// Two Services wanting one node port: the first by name keeps it.
	api := svc("api", nil)
	web2 := svc("web", func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 })
	steps := []objects{
		{Services: []*corev1.Service{web, bad}, EndpointSlices: []*discoveryv1.EndpointSlice{s1, noLabel}},
		{Services: []*corev1.Service{web, bad}, EndpointSlices: []*discoveryv1.EndpointSlice{s1, s2, noLabel}},
		{Services: []*corev1.Service{web, bad}, EndpointSlices: []*discoveryv1.EndpointSlice{dup, s2, s1}},
		{Services: []*corev1.Service{web, bad}, EndpointSlices: []*discoveryv1.EndpointSlice{s1, dup}},
		{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{s2, s2, dup}},
		{Services: []*corev1.Service{web, api}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{svc("web", nil), api}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{web2, api}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{web2, svc("api", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30451 })}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{web2, web2}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{web2}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}},
		{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{slice("web-b", "web", 8080, "", endpoint("10.244.1.11", "node-2", nil))}},
	}
	var prev State
	check := func(b *Builder, i int, in Input, node Node) {
		t.Helper()
		got, gotErrs := b.Build(in, node)
		want, wantErrs := Build(in, node)
		checkSince(t, i, prev, got)
		prev = got
		got.Gen, got.Since, want.Gen = 0, nil, 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("step %d on %s: reused build differs:\n got %+v\nwant %+v", i, node.Name, got, want)
		}
		if fmt.Sprint(gotErrs) != fmt.Sprint(wantErrs) {
			t.Errorf("step %d on %s: errors %v, want %v", i, node.Name, gotErrs, wantErrs)
		}
		reversed := in
		reversed.EndpointSlices = slices.Clone(in.EndpointSlices)
		slices.Reverse(reversed.EndpointSlices)
		if other, _ := Build(reversed, node); !reflect.DeepEqual(other, State{Services: want.Services, Node: want.Node, ServiceCIDRs: want.ServiceCIDRs, Gen: 1}) {
			t.Errorf("step %d on %s: the slices' order changes the build:\n got %+v\nwant %+v", i, node.Name, other, want)
		}
	}
	for _, node := range []Node{{Name: "node-1"}, {Name: "node-2"}} {
		var b Builder
		prev = State{}
		for i, in := range steps {
			check(&b, i, in.in(), node)
		}
	}
	// One Builder while the slices swap places and the node's zone (which
	// topology hints follow) changes under unchanged objects.
	zoned := func(ip, zone string) discoveryv1.Endpoint {
		e := endpoint(ip, "node-2", nil)
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
		return e
	}
	h1, h2 := slice("web-a", "web", 8080, "", zoned("10.244.0.10", "a")), slice("web-b", "web", 8080, "", zoned("10.244.1.10", "b"))
	var b Builder
	prev = State{}
	for i, step := range []struct {
		in   Input
		node Node
	}{
		{objects{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{h1, h2}}.in(), Node{Name: "node-1", Zone: "a"}},
		{objects{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{h2, h1}}.in(), Node{Name: "node-1", Zone: "a"}},
		{objects{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{h2, h1}}.in(), Node{Name: "node-1", Zone: "b"}},
		{objects{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{h2}}.in(), Node{Name: "node-1", Zone: "b"}},
	} {
		check(&b, i, step.in, step.node)
	}
}

// checkSince holds a State's Since to what it claims: the State before it
// differs only in the endpoints of the ports it names.
func checkSince(t *testing.T, step int, prev, st State) {
	t.Helper()
	if st.Gen != prev.Gen+1 {
		t.Errorf("step %d: State %d after %d", step, st.Gen, prev.Gen)
	}
	if st.Since == nil {
		return
	}
	if st.Since.Gen != prev.Gen || len(st.Services) != len(prev.Services) || !reflect.DeepEqual(st.Node, prev.Node) || !reflect.DeepEqual(st.ServiceCIDRs, prev.ServiceCIDRs) {
		t.Fatalf("step %d: Since %+v, but the State differs from %d beyond endpoints", step, st.Since, prev.Gen)
	}
	for i := range st.Services {
		a, b := *st.Services[i], *prev.Services[i] // copies: the States share their ports
		changed := slices.Contains(st.Since.Changed, i)
		// Unchanged, a port keeps its very list.
		if changed == SameEndpoints(a.Endpoints, b.Endpoints) {
			t.Errorf("step %d: port %s: endpoints %v after %v, Since.Changed %v", step, a.Name, a.Endpoints, b.Endpoints, st.Since.Changed)
		}
		a.Endpoints, b.Endpoints = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Errorf("step %d: port %d is %+v, was %+v, and Since says only endpoints changed", step, i, a, b)
		}
	}
}

// The usual Service port, served by one slice, gets the list the source
// read, not a copy: at 10k Services × 10 endpoints the endpoints are held
// once. A slice read for another node is read again for this one.
func TestBuildSharesTheSlicesEndpoints(t *testing.T) {
	web := svc("web", nil)
	s := slice("web-a", "web", 8080, "", endpoint("10.244.1.10", "node-1", nil), endpoint("10.244.0.10", "node-2", nil))
	in := objects{Services: []*corev1.Service{web}, EndpointSlices: []*discoveryv1.EndpointSlice{s}}.in()
	read := in.EndpointSlices[0].eps[0]
	st, _ := Build(in, Node{Name: "node-1"})
	if got := st.Services[0].Endpoints; len(got) != 2 || &got[0] != &read[0] {
		t.Errorf("endpoints %v are a copy of the slice's", got)
	}
	st, _ = Build(in, Node{Name: "node-2"})
	got := st.Services[0].Endpoints
	if len(got) != 2 || &got[0] == &read[0] || !got[0].IsLocal || got[1].IsLocal || !read[1].IsLocal {
		t.Errorf("for node-2: endpoints %+v (the source's list %+v must stay as read)", got, read)
	}
}

// The Node object gives this node's pod ranges (detect-local-mode NodeCIDR).
func TestNodePodCIDRs(t *testing.T) {
	in := Input{Nodes: []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24", "fd00:10:244::/64"}}}}}
	st, _ := Build(in, Node{Name: "node-1"})
	v4, ok4 := st.Node.PodCIDR(false)
	v6, ok6 := st.Node.PodCIDR(true)
	if !ok4 || !ok6 || v4.String() != "10.244.0.0/24" || v6.String() != "fd00:10:244::/64" {
		t.Errorf("pod CIDRs %v", st.Node.PodCIDRs)
	}
}

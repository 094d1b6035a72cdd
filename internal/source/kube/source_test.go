package kube

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/svcproxy/svcproxy/internal/model"
)

// The informer caches hold the model's objects, keyed and versioned as the
// API objects they were read from, and snapshots hand them to the model as
// they are.
func TestCachesHoldTheModelsObjects(t *testing.T) {
	port := int32(8080)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", ResourceVersion: "7", UID: "uid-1"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 80}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default", ResourceVersion: "8",
		Labels:      map[string]string{discoveryv1.LabelServiceName: "web"},
		Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-11-26T06:00:00Z"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Port: &port}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.10"}, NodeName: new(string)}}}
	*slice.Endpoints[0].NodeName = "node-1"

	src := &Source{NodeName: "node-1"}
	svcs := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
	var services ordered[*model.Service]
	var endpointSlices ordered[*model.EndpointSlice]
	pokes := 0
	poke := func() { pokes++ }
	for _, tc := range []struct {
		obj     any
		handler cache.ResourceEventHandler
	}{
		{svc, services.handler(serviceOf, poke)},
		{slice, endpointSlices.handler(sliceOf, poke)},
	} {
		read, err := src.read(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := src.read(read); again != read {
			t.Errorf("reading %T twice changed it", read)
		}
		if _, ok := read.(cachedService); ok {
			if err := svcs.Add(read); err != nil {
				t.Fatalf("the cache cannot key %T: %v", read, err)
			}
		}
		tc.handler.OnAdd(read, false)
	}
	if _, ok, _ := svcs.GetByKey("default/web"); !ok {
		t.Error("Service not found by namespace/name")
	}
	src.services = svcs
	if uid := src.ServiceUID("default", "web"); uid != "uid-1" {
		t.Errorf("ServiceUID = %q", uid)
	}
	in := model.Input{Services: services.list(), EndpointSlices: endpointSlices.list()}
	if pokes != 2 || len(in.Services) != 1 || in.Services[0].ResourceVersion != "7" || len(in.EndpointSlices) != 1 || in.EndpointSlices[0].Name != "web-abc" {
		t.Fatalf("snapshot %+v after %d events", in, pokes)
	}
	st, errs := model.Build(in, model.Node{Name: "node-1"})
	if len(errs) > 0 || len(st.Services) != 1 || len(st.Services[0].Endpoints) != 1 || !st.Services[0].Endpoints[0].IsLocal {
		t.Errorf("built %+v, errors %v", st, errs)
	}
	cs := model.Changes(model.Input{}, in)
	if len(cs.Triggers) != 1 || !cs.Triggers[0].At.Equal(time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("trigger times %v", cs.Triggers)
	}
}

// Objects an old API server stored with leading zeros in their addresses
// are read as upstream reads them, with a warning naming the field, and
// ServiceCIDRs reach the model.
func TestReadLegacyAddressesAndServiceCIDRs(t *testing.T) {
	src := &Source{NodeName: "node-1"}
	svc, _ := src.read(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "172.30.0.041", Ports: []corev1.ServicePort{{Port: 80}}}})
	cidr, _ := src.read(&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"172.30.0.0/16"}}})
	in := model.Input{Services: []*model.Service{svc.(cachedService).Service}, ServiceCIDRs: []*model.ServiceCIDR{cidr.(cachedServiceCIDR).ServiceCIDR}}
	st, errs := model.Build(in, model.Node{Name: "node-1"})
	if len(st.Services) != 1 || st.Services[0].ClusterIP.String() != "172.30.0.41" {
		t.Fatalf("services %+v", st.Services)
	}
	if len(errs) != 1 || model.Outcome(errs[0]) != "warning" || !strings.Contains(errs[0].Error(), `spec.clusterIP: "172.30.0.041" has leading zeros`) {
		t.Errorf("errors %v, want one warning naming spec.clusterIP", errs)
	}
	if len(st.ServiceCIDRs) != 1 || st.ServiceCIDRs[0].String() != "172.30.0.0/16" {
		t.Errorf("service CIDRs %v", st.ServiceCIDRs)
	}
}

// Snapshots keep an object in its place while it stays (the model compares
// them place by place): an update takes the old object's place, a new
// object goes at the end, a deleted one's place goes to the last object.
func TestOrderedKeepsPlaces(t *testing.T) {
	obj := func(name, version string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: version}}
	}
	var o ordered[string]
	h := o.handler(func(x any) (string, bool) {
		s, ok := x.(*corev1.Service)
		return s.Name + "@" + s.ResourceVersion, ok
	}, func() {})
	steps := []struct {
		event func()
		want  string
	}{
		{func() { h.OnAdd(obj("a", "1"), true) }, "a@1"},
		{func() { h.OnAdd(obj("b", "1"), true) }, "a@1 b@1"},
		{func() { h.OnAdd(obj("c", "1"), false) }, "a@1 b@1 c@1"},
		{func() { h.OnUpdate(obj("b", "1"), obj("b", "2")) }, "a@1 b@2 c@1"},
		{func() { h.OnDelete(obj("a", "1")) }, "c@1 b@2"},
		{func() { h.OnAdd(obj("d", "1"), false) }, "c@1 b@2 d@1"},
		{func() {
			h.OnDelete(cache.DeletedFinalStateUnknown{Key: "default/d", Obj: obj("d", "1")})
		}, "c@1 b@2"},
		{func() { h.OnDelete(obj("x", "1")) }, "c@1 b@2"},
		{func() { h.OnUpdate(obj("c", "1"), obj("c", "2")) }, "c@2 b@2"},
	}
	for i, step := range steps {
		before := o.list()
		was := strings.Join(before, " ")
		step.event()
		if got := strings.Join(o.list(), " "); got != step.want {
			t.Errorf("step %d: %q, want %q", i, got, step.want)
		}
		if strings.Join(before, " ") != was {
			t.Errorf("step %d: the snapshot before it changed to %q", i, before)
		}
	}
}

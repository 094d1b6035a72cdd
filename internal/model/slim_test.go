package model

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Slim keeps everything Build and Changes read: a slimmed snapshot builds
// the same State, with the same errors and trigger times, as the original.
func TestSlimKeepsWhatBuildReads(t *testing.T) {
	ref := &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"}
	full := func(ip, node string, ready bool) discoveryv1.Endpoint {
		e := endpoint(ip, node, ptr(ready))
		e.Addresses = append(e.Addresses, "10.244.9.9")
		e.Conditions.Serving, e.Conditions.Terminating = ptr(true), ptr(!ready)
		e.TargetRef, e.Hostname, e.Zone = ref, ptr("web-1"), ptr("a")
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}}
		return e
	}
	objects := func() Input {
		s := slice("web-a", "web", 8080, "http", full("10.244.0.10", "node-1", true), full("10.244.1.10", "node-2", false), endpoint("bad", "node-2", nil))
		s.Annotations = map[string]string{lastChangeTriggerTime: "2026-11-26T06:00:00Z", LastApplied: "{}", "meta.helm.sh/release-name": "web"}
		s.Labels["app.kubernetes.io/name"] = "web"
		s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}
		s.OwnerReferences = []metav1.OwnerReference{{Kind: "Service", Name: "web"}}
		s.Endpoints = append(make([]discoveryv1.Endpoint, 0, 16), s.Endpoints...)
		web := svc("web", func(s *corev1.Service) {
			s.Spec.Ports[0].Name = "http"
			s.Annotations = map[string]string{LastApplied: "{}", "meta.helm.sh/release-name": "web"}
			s.Labels = map[string]string{"app.kubernetes.io/name": "web"}
			s.Spec.Selector = map[string]string{"app": "web"}
		})
		// Another proxy's Service: the label that says so must stay.
		other := svc("other", func(s *corev1.Service) {
			s.Labels = map[string]string{ServiceProxyNameLabel: "other-proxy", "app.kubernetes.io/name": "other"}
			s.Spec.Ports[0].NodePort = 30451
			s.Spec.ClusterIP = "10.96.0.11"
		})
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "a"}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}},
				Images: []corev1.ContainerImage{{Names: []string{"registry.example/web:1"}}}}}
		return Input{Services: []*corev1.Service{web, other}, EndpointSlices: []*discoveryv1.EndpointSlice{s}, Nodes: []*corev1.Node{node}}
	}
	orig, slim := objects(), objects()
	var names Interner
	for _, o := range []any{slim.Services[0], slim.Services[1], slim.EndpointSlices[0], slim.Nodes[0]} {
		Slim(o, &names)
	}
	node := Node{Name: "node-1"}
	want, wantErrs := Build(orig, node)
	got, gotErrs := Build(slim, node)
	if !reflect.DeepEqual(got, want) || len(want.Services) != 1 || len(want.Services[0].Endpoints) != 2 {
		t.Errorf("slimmed objects build\n%+v\nwant\n%+v", got, want)
	}
	if len(gotErrs) != 1 || gotErrs[0].Error() != wantErrs[0].Error() {
		t.Errorf("errors %v, want %v", gotErrs, wantErrs)
	}
	if g, w := Changes(Input{}, slim).Triggers, Changes(Input{}, orig).Triggers; !reflect.DeepEqual(g, w) || len(w) != 1 {
		t.Errorf("trigger times %v, want %v", g, w)
	}

	s := slim.EndpointSlices[0]
	e := s.Endpoints[0]
	if cap(s.Endpoints) != len(s.Endpoints) || len(e.Addresses) != 1 || e.TargetRef != nil || e.Hostname != nil || e.Zone != nil ||
		s.ManagedFields != nil || s.OwnerReferences != nil || len(s.Labels) != 1 || len(s.Annotations) != 1 ||
		slim.Services[0].Annotations != nil || slim.Services[0].Labels != nil || slim.Services[0].Spec.Selector != nil || len(slim.Services[1].Labels) != 1 ||
		slim.Nodes[0].Status.Images != nil {
		t.Errorf("kept what nothing reads: %+v", s)
	}
	if s.Endpoints[1].NodeName != s.Endpoints[2].NodeName || s.Endpoints[0].Conditions.Serving != s.Endpoints[1].Conditions.Serving {
		t.Error("repeated node names and conditions are not shared")
	}
}

package model

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestChanges(t *testing.T) {
	a, b := svc("a", nil), svc("b", nil)
	s1 := slice("a-1", "a", 80, "", endpoint("10.244.0.5", "node-1", nil))
	prev := objects{Services: []*corev1.Service{a, b}, EndpointSlices: []*discoveryv1.EndpointSlice{s1}}.in()

	a2 := a.DeepCopy()
	a2.Spec.Ports[0].Port = 81
	trigger := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	s2 := s1.DeepCopy()
	s2.Endpoints = append(s2.Endpoints, endpoint("10.244.0.6", "node-1", nil))
	s2.Annotations = map[string]string{lastChangeTriggerTime: trigger.Format(time.RFC3339Nano)}
	c := svc("c", nil)
	cur := objects{Services: []*corev1.Service{a2, c}, EndpointSlices: []*discoveryv1.EndpointSlice{s2}}.in()

	cs := Changes(prev, cur)
	// a changed, b removed, c added; the slice changed.
	if cs.Services != 3 || cs.EndpointSlices != 1 || len(cs.Triggers) != 1 || !cs.Triggers[0].At.Equal(trigger) {
		t.Errorf("changes = %+v", cs)
	}
	if cs := Changes(cur, cur); cs.Services != 0 || cs.EndpointSlices != 0 {
		t.Errorf("no change counted as %+v", cs)
	}
	// The same objects in another order are no change; one moved and
	// edited is one change.
	if cs := Changes(prev, objects{Services: []*corev1.Service{b, a}, EndpointSlices: []*discoveryv1.EndpointSlice{s1}}.in()); cs.Services != 0 {
		t.Errorf("reordered Services counted as %+v", cs)
	}
	if cs := Changes(prev, objects{Services: []*corev1.Service{b, a2}}.in()); cs.Services != 1 || cs.EndpointSlices != 1 {
		t.Errorf("moved and edited Service, removed slice: %+v, want 1 and 1", cs)
	}
	// With resourceVersions (the API server), an unchanged version is no change.
	a3, a4 := a.DeepCopy(), a.DeepCopy()
	a3.ResourceVersion, a4.ResourceVersion = "7", "7"
	a4.Labels = map[string]string{"x": "y"} // cannot happen without a new version; the version decides
	if cs := Changes(objects{Services: []*corev1.Service{a3}}.in(), objects{Services: []*corev1.Service{a4}}.in()); cs.Services != 0 {
		t.Errorf("same resourceVersion counted as a change: %+v", cs)
	}
}

package kube

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcproxy/svcproxy/internal/model"
)

// The informer caches keep what the proxy reads (the trigger time it
// measures network programming latency from) and drop what it does not.
func TestSlimKeepsWhatTheProxyReads(t *testing.T) {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default",
		Labels:        map[string]string{discoveryv1.LabelServiceName: "web"},
		Annotations:   map[string]string{model.LastApplied: `{"big": "copy"}`, "endpoints.kubernetes.io/last-change-trigger-time": "2026-11-26T06:00:00Z"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}}}}
	out, err := (&Source{}).slim(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*discoveryv1.EndpointSlice)
	if got.ManagedFields != nil || got.Annotations[model.LastApplied] != "" {
		t.Errorf("managed fields or kubectl's copy kept: %+v", got.ObjectMeta)
	}
	if got.Annotations["endpoints.kubernetes.io/last-change-trigger-time"] == "" || got.Labels[discoveryv1.LabelServiceName] != "web" || got.Name != "web-abc" {
		t.Errorf("lost what the proxy reads: %+v", got.ObjectMeta)
	}
}

// Package sourcetest is the conformance test of source.Source: every source
// (files, kube) runs it against the real thing it reads (a folder, an API
// server), so that what the rest of svcproxy relies on holds for each.
package sourcetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source"
)

// Harness drives one source.
type Harness struct {
	// New makes the source under test, not yet running.
	New func(t *testing.T) source.Source
	// Apply creates or replaces objects where the source reads them.
	Apply func(t *testing.T, objs ...any)
	// Namespace is where the test's objects go.
	Namespace string
	// Broken, when set, writes an object the model must refuse; its error
	// must name Origin as where it came from. (An API server refuses such
	// objects itself: for the kube source it is nil.)
	Broken func(t *testing.T)
	Origin string
}

// Service is a ClusterIP Service in ns.
func Service(ns, name, clusterIP string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

// Slice is an EndpointSlice of Service service in ns with one endpoint.
func Slice(ns, service, ip string) *discoveryv1.EndpointSlice {
	port, proto, name := int32(80), corev1.ProtocolTCP, ""
	return &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}}},
	}
}

type snapshot struct {
	in   model.Input
	errs []error
}

// Run checks the source's promises: no snapshot before it has seen
// everything there is; an unchanged object is the same pointer in every
// snapshot; errors name where their object came from; Run returns nil when
// its context ends.
func Run(t *testing.T, h Harness, clusterIPs [3]string) {
	ns := h.Namespace
	// Objects that exist before the source starts.
	h.Apply(t, Service(ns, "conf-a", clusterIPs[0]), Slice(ns, "conf-a", "10.244.9.1"),
		Service(ns, "conf-b", clusterIPs[1]), Slice(ns, "conf-b", "10.244.9.2"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := make(chan snapshot, 100)
	done := make(chan error, 1)
	src := h.New(t)
	go func() {
		done <- src.Run(ctx, func(in model.Input, errs []error) { snaps <- snapshot{in, errs} })
	}()
	next := func(what string, ok func(snapshot) bool) snapshot {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case s := <-snaps:
				if ok(s) {
					return s
				}
			case err := <-done:
				t.Fatalf("%s: the source stopped: %v", what, err)
			case <-timeout:
				t.Fatalf("%s: no such snapshot within 30s", what)
			}
		}
	}

	first := next("the first snapshot", func(snapshot) bool { return true })
	svcA, svcB := service(first, ns, "conf-a"), service(first, ns, "conf-b")
	sliceA := slice(first, ns, "conf-a-1")
	if svcA == nil || svcB == nil || sliceA == nil || slice(first, ns, "conf-b-1") == nil {
		t.Fatalf("the first snapshot lacks objects that existed before the source started (a partial snapshot): %d Services, %d EndpointSlices",
			len(first.in.Services), len(first.in.EndpointSlices))
	}

	h.Apply(t, Service(ns, "conf-c", clusterIPs[2]))
	later := next("a snapshot with the new Service", func(s snapshot) bool { return service(s, ns, "conf-c") != nil })
	if service(later, ns, "conf-a") != svcA || service(later, ns, "conf-b") != svcB || slice(later, ns, "conf-a-1") != sliceA {
		t.Error("objects that did not change are not the same pointers in the next snapshot")
	}

	if h.Broken != nil {
		h.Broken(t)
		next("a snapshot whose error names where its object came from", func(s snapshot) bool {
			_, errs := model.Build(s.in, model.Node{Name: "node-1"})
			for _, e := range append(s.errs, errs...) {
				var oe *model.ObjectError
				if errors.As(e, &oe) && oe.Source != "" && strings.HasPrefix(oe.Source, h.Origin) {
					return true
				}
			}
			return false
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v when its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after its context ended")
	}
}

func service(s snapshot, ns, name string) *model.Service {
	for _, svc := range s.in.Services {
		if svc.Namespace == ns && svc.Name == name {
			return svc
		}
	}
	return nil
}

func slice(s snapshot, ns, name string) *model.EndpointSlice {
	for _, es := range s.in.EndpointSlices {
		if es.Namespace == ns && es.Name == name {
			return es
		}
	}
	return nil
}

package model

import (
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LastApplied is the annotation kubectl apply keeps a whole copy of the
// object in.
const LastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Slim drops from a Service, EndpointSlice or Node what neither Build nor
// Changes reads, before a source keeps the object: managed fields and
// owner references; from Services and EndpointSlices the labels and
// annotations that are not read (Helm's and kubectl's, the Service labels
// the EndpointSlice controller copies to each slice), and the Service's
// selector; from EndpointSlices the endpoints' target references, host
// names, zones and addresses after the first, and spare capacity; from Nodes
// their image lists. The node names and conditions endpoints repeat become
// shared pointers (names through in). At 10k Services × 10 endpoints this
// is a third of what a source holds.
//
// Slim changes obj in place: a source calls it before it hands obj out.
func Slim(obj any, in *Interner) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetOwnerReferences(nil)
		if a := m.GetAnnotations(); a[LastApplied] != "" {
			delete(a, LastApplied)
		}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		o.Labels = only(o.Labels, ServiceProxyNameLabel)
		o.Annotations = nil
		o.Spec.Selector = nil
	case *discoveryv1.EndpointSlice:
		o.Labels = only(o.Labels, discoveryv1.LabelServiceName)
		o.Annotations = only(o.Annotations, lastChangeTriggerTime)
		if cap(o.Endpoints) > len(o.Endpoints) {
			// Decoders grow the list as they go: a copy frees the spare room.
			o.Endpoints = slices.Clone(o.Endpoints)
		}
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			if len(e.Addresses) > 1 {
				e.Addresses = e.Addresses[:1:1] // only the first is used, as upstream does
			}
			e.TargetRef, e.Hostname, e.Zone, e.DeprecatedTopology = nil, nil, nil, nil
			e.NodeName = in.string(e.NodeName)
			c := &e.Conditions
			c.Ready, c.Serving, c.Terminating = sharedBool(c.Ready), sharedBool(c.Serving), sharedBool(c.Terminating)
		}
	case *corev1.Node:
		o.Status.Images = nil
	}
}

// only is m with just the key k (nil without it), the map itself when that
// is all it has.
func only(m map[string]string, k string) map[string]string {
	v, ok := m[k]
	switch {
	case !ok:
		return nil
	case len(m) == 1:
		return m
	}
	return map[string]string{k: v}
}

// Interner hands out one pointer per distinct string. It is safe for
// concurrent use.
type Interner struct {
	mu   sync.Mutex
	strs map[string]*string
}

func (in *Interner) string(p *string) *string {
	if p == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if q, ok := in.strs[*p]; ok {
		return q
	}
	if in.strs == nil || len(in.strs) >= maxInterned {
		// Started afresh now and then, so that the names of nodes long gone
		// (autoscaling) are not kept forever; pointers handed out stay valid.
		in.strs = map[string]*string{}
	}
	in.strs[*p] = p
	return p
}

// maxInterned bounds an Interner: more node names than a cluster has nodes.
const maxInterned = 10000

var yes, no = true, false

// sharedBool is p as one of two pointers that no one writes through.
func sharedBool(p *bool) *bool {
	switch {
	case p == nil:
		return nil
	case *p:
		return &yes
	}
	return &no
}

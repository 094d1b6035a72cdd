package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Events posts Kubernetes Events about Services, such as a NodePort held by
// another process on this node.
type Events struct {
	rec  record.EventRecorder
	uid  func(namespace, name string) types.UID
	stop func()
}

// Stop ends the event broadcaster.
func (e *Events) Stop() { e.stop() }

// NewEvents posts events as "svcproxy" from this node. uid looks a Service's
// UID up, so that `kubectl describe service` lists the events.
func NewEvents(client *Client, node string, uid func(namespace, name string) types.UID) *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(eventSink{client.core})
	return &Events{
		rec:  b.NewRecorder(scheme, corev1.EventSource{Component: "svcproxy", Host: node}),
		uid:  uid,
		stop: b.Shutdown,
	}
}

// NodePortConflict reports a NodePort held by another process.
func (e *Events) NodePortConflict(svc model.ServicePortName, message string) {
	ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name}
	if e.uid != nil {
		ref.UID = e.uid(svc.Namespace, svc.Name)
	}
	e.rec.Event(ref, corev1.EventTypeWarning, "NodePortConflict", message)
}

// Package source states what every source of Services and EndpointSlices
// promises the rest of svcproxy. files (a folder of manifests) and kube
// (the API server) implement it; sourcetest holds the conformance test each
// passes.
package source

import (
	"context"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Source feeds snapshots of the objects it watches to onChange: once when it
// has them all, then after every change, until ctx ends. Its promises:
//
//   - No snapshot before it has seen everything there is (the API server's
//     caches synced, the folder read whole): a partial snapshot would take
//     the rules of the Services not yet seen out of the kernel.
//   - An object that did not change is the same pointer in every snapshot
//     (the model reuses what it worked out for it, and counts changes by it).
//   - Every error names where its object came from (model.ObjectError's
//     Source: a file, or the API server).
//   - Run returns nil when ctx ends, and an error only when the source
//     cannot go on at all.
type Source interface {
	Run(ctx context.Context, onChange func(model.Input, []error)) error
}

// Events records Kubernetes Events about Services.
type Events interface {
	NodePortConflict(svc model.ServicePortName, message string)
	// Stop flushes and ends the recording.
	Stop()
}

// EventSource is a Source that can record Events (the API server can, a
// folder of manifests cannot).
type EventSource interface {
	Events(node string) Events
}

// Package examples bundles the manifests `svcproxy lab` runs on.
package examples

import "embed"

// Lab holds lab/*.yaml: the Services and EndpointSlices of the lab world.
//
//go:embed lab/*.yaml
var Lab embed.FS

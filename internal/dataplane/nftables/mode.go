package nftables

import (
	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// Mode is nftables mode. It programs over netlink: no tool is needed.
var Mode = dataplane.Mode{
	Name:    "nftables",
	Check:   func() error { return nil },
	HasIPv6: dataplane.KernelHasIPv6,
	NewSyncer: func(opts Options, c dataplane.SyncerConfig) dataplane.Syncer {
		return &Syncer{Options: opts, Metrics: c.Metrics, FullSyncPeriod: c.FullSyncPeriod}
	},
	Present: Present,
	Canary:  "nftables table ip " + TableName,
	Render:  func(st *model.State, opts Options) string { return Render(st, opts).List() },
	// One table per family.
	ListsBothFamilies:  true,
	LocalhostListeners: true,
	LocalhostRejected:  func(v6 bool) (map[model.Protocol]uint64, error) { return LocalhostRejected(v6, 0) },
}

package iptables

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// Mode is iptables mode.
var Mode = dataplane.Mode{
	Name: "iptables",
	Check: func() error {
		for _, bin := range []string{"iptables-save", "iptables-restore"} {
			if _, err := exec.LookPath(bin); err != nil {
				return fmt.Errorf("%s not found in PATH: install the iptables package (or use --proxy-mode nftables)", bin)
			}
		}
		return nil
	},
	HasIPv6: HaveIPv6,
	NewSyncer: func(opts Options, c dataplane.SyncerConfig) dataplane.Syncer {
		return &Syncer{Runner: ForBackend(detectedBackend(), opts.IPv6), Options: opts, Metrics: c.Metrics, FullSyncPeriod: c.FullSyncPeriod}
	},
	Present: func(ctx context.Context) bool { return ForBackend(detectedBackend(), false).CanaryPresent(ctx) },
	Detail: func() string {
		if b := detectedBackend(); b != "" {
			return "iptables backend " + b
		}
		return ""
	},
	Canary: "iptables canary chain " + ChainCanary,
	Render: func(st *model.State, opts Options) string {
		return string(Compose(Render(st, opts), nil))
	},
	EnsureNFAcct:  EnsureNFAcct,
	NFAcctPackets: NFAcctPackets,
	Sysctls: func(opts Options) []dataplane.Sysctl {
		if !opts.LocalhostNodePorts {
			return nil
		}
		// The kernel routes 127.0.0.0/8 only locally without it, so a
		// DNAT away from it would go nowhere.
		return []dataplane.Sysctl{{Name: "net.ipv4.conf.all.route_localnet", Value: "1", Why: "NodePorts answer on 127.0.0.1"}}
	},
}

package dataplane

import (
	"context"
	"log/slog"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Mode is one proxy mode (iptables, nftables): everything the agent and the
// commands need to know of it, so that none of them branches on its name.
type Mode struct {
	Name string
	// Check says what this node lacks to run the mode (a tool not
	// installed), and what to do about it.
	Check func() error
	// HasIPv6 reports whether the node can carry IPv6 Service rules in
	// this mode.
	HasIPv6 func() bool
	// NewSyncer makes the syncer of one family (opts.IPv6).
	NewSyncer func(opts Options, c SyncerConfig) Syncer
	// Present reports whether the mode's rules are in the kernel; Canary
	// names what it looks for. A flush by someone else makes it false.
	Present func(context.Context) bool
	Canary  string
	// Render prints the rules for st as the mode's own tools print them
	// (iptables-restore input, nft list output).
	Render func(st *model.State, opts Options) string
	// Detail says what the mode found on this node, for the start-up log
	// (nil or "": nothing to say).
	Detail func() string
	// ListsBothFamilies is true when the two families' Render texts make
	// one listing (nft lists a table per family; iptables-restore input is
	// one family's).
	ListsBothFamilies bool
	// Sysctls are the kernel settings the mode needs with these (IPv4)
	// options; nil when none.
	Sysctls func(opts Options) []Sysctl
	// LocalhostListeners is true when the mode leaves TCP NodePorts on
	// loopback (Options.LocalhostNodePorts) to svcproxy's userspace
	// listeners; LocalhostRejected then reads how many localhost NodePort
	// packets of each protocol a family's rules rejected.
	LocalhostListeners bool
	LocalhostRejected  func(v6 bool) (map[model.Protocol]uint64, error)
	// EnsureNFAcct makes the mode's nfacct counters (iptables), and
	// NFAcctPackets reads one by name; nil when the mode has none.
	EnsureNFAcct  func() error
	NFAcctPackets func(name string) (uint64, error)
}

// Sysctl is a kernel setting and why it is needed.
type Sysctl struct{ Name, Value, Why string }

// SyncerConfig is what a syncer takes besides its Options.
type SyncerConfig struct {
	// Metrics, when set, counts rules and failed partial syncs.
	Metrics SyncerMetrics
	// FullSyncPeriod is how often a sync reads the kernel and rewrites
	// everything (0: every sync).
	FullSyncPeriod time.Duration
}

// SyncerMetrics are the metrics a syncer keeps.
type SyncerMetrics interface {
	// SyncDone records one sync of a family: full or partial, how long it
	// took, and whether the kernel took it.
	SyncDone(ipFamily string, full bool, took time.Duration, err error)
	// SetRules records how many rules a table holds, and how many of them
	// the last sync wrote.
	SetRules(ipFamily, table string, total, written int)
	// CleanupFailed counts a failed removal of chains no longer used.
	CleanupFailed(ipFamily string)
}

// Families makes one syncer per IP family the node has, with the options
// optionsFor gives each.
func (m Mode) Families(optionsFor func(v6 bool) (Options, error), c SyncerConfig, log *slog.Logger) (Families, error) {
	var fs Families
	for _, v6 := range []bool{false, true} {
		if v6 && !m.HasIPv6() {
			log.Info("no IPv6 on this node (or no tools for it): programming IPv4 only", "mode", m.Name)
			break
		}
		opts, err := optionsFor(v6)
		if err != nil {
			return nil, err
		}
		fs = append(fs, m.NewSyncer(opts, c))
	}
	return fs, nil
}

// Installed are the syncers that can remove this mode's rules from the
// node: none when its tools are missing (then it cannot have any).
func (m Mode) Installed() Families {
	if m.Check() != nil {
		return nil
	}
	fs := Families{m.NewSyncer(Options{}, SyncerConfig{})}
	if m.HasIPv6() {
		fs = append(fs, m.NewSyncer(Options{IPv6: true}, SyncerConfig{}))
	}
	return fs
}

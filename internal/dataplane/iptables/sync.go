package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync/atomic"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// Syncer applies desired states to the kernel.
type Syncer struct {
	Runner  Runner
	Options Options
	// Metrics, when set, gets every sync and the number of rules per table
	// after each successful one.
	Metrics dataplane.SyncerMetrics
	// ChunkServices is how many Service ports one transaction carries in a
	// large sync (0: DefaultChunkServices).
	ChunkServices int
	// FullSyncPeriod is how often a sync rewrites everything after reading
	// the kernel's rules; in between, syncs rewrite only the Services that
	// changed (0: every sync is full).
	FullSyncPeriod time.Duration

	renderer Renderer
	applied  *Applied
	lastFull time.Time
	// forceFull is set from other goroutines (the canary monitor).
	forceFull atomic.Bool
}

// ForceFull makes the next sync a full one, as after the tables were
// flushed by someone else.
func (s *Syncer) ForceFull() { s.forceFull.Store(true) }

// Sync makes the kernel's rules match st: in one iptables-restore, or for
// large states in chunks that each carry whole Services, dispatch last (see
// ComposeChunks). On error the failed transaction leaves nothing behind;
// earlier ones stay, each consistent, and the next sync completes the rest.
func (s *Syncer) Sync(ctx context.Context, st *model.State) (err error) {
	start := time.Now()
	full := s.forceFull.Swap(false) || s.applied == nil || s.FullSyncPeriod == 0 || time.Since(s.lastFull) >= s.FullSyncPeriod
	if s.Metrics != nil {
		defer func() { s.Metrics.SyncDone(s.Family(), full, time.Since(start), err) }()
	}
	s.renderer.Lazy = true // the nat rules are rendered again per transaction
	rs := s.renderer.Render(st, s.Options)
	per := s.ChunkServices
	if per == 0 {
		per = DefaultChunkServices
	}
	var txs iter.Seq[[]byte]
	var n int
	var next *Applied
	if full {
		cur, err := s.current(ctx)
		if err != nil {
			return err
		}
		txs, n = Chunks(rs, cur, per), ChunkCount(rs, per)
	} else {
		var list [][]byte
		list, next = ComposePartial(rs, s.applied, per)
		txs, n = slices.Values(list), len(list)
	}
	i := 0
	written := map[string]int{}
	for tx := range txs {
		i++
		if s.Metrics != nil {
			countRuleLines(tx, written)
		}
		if err := s.Runner.Restore(ctx, tx); err != nil {
			// What the kernel has is no longer known exactly: read it again.
			s.applied = nil
			if n == 1 {
				return fmt.Errorf("apply rules: %w", err)
			}
			return fmt.Errorf("apply rules (transaction %d of %d): %w", i, n, err)
		}
	}
	if full {
		s.applied, s.lastFull = Record(rs), time.Now()
	} else {
		s.applied = next
	}
	if s.Metrics != nil {
		for _, t := range rs.Tables {
			s.Metrics.SetRules(s.Family(), t.Name, rs.RuleLines(t.Name), written[t.Name])
		}
	}
	return nil
}

// Cleanup removes every rule and chain svcproxy installed, and nothing else.
// It reports whether anything was removed.
func (s *Syncer) Cleanup(ctx context.Context) (bool, error) {
	cur, err := s.current(ctx)
	if err != nil {
		return false, err
	}
	txs := CleanupInput(cur)
	if txs == nil {
		return false, nil
	}
	for i, tx := range txs {
		if err := s.Runner.Restore(ctx, tx); err != nil {
			return false, fmt.Errorf("remove rules (transaction %d of %d): %w", i+1, len(txs), err)
		}
	}
	return true, nil
}

// current returns the kernel's rules as parsed iptables-save output: every
// chain, and the rules of the chains svcproxy does not own (the built-in
// chains it jumps from, and other programs'). A full sync needs no more (it
// rewrites its own chains whole), and at 10k Services its own are 440k
// rules.
func (s *Syncer) current(ctx context.Context) (*netfilter.Ruleset, error) {
	p := netfilter.NewIPTablesParser(func(chain string) bool { return !isOwnedChain(chain) })
	if err := s.Runner.SaveLines(ctx, p.Line); err != nil {
		var perr *netfilter.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("parse iptables-save output: %w", err)
		}
		return nil, fmt.Errorf("read current rules: %w", err)
	}
	cur, err := p.Ruleset()
	if errors.Is(err, netfilter.ErrNoTables) {
		return &netfilter.Ruleset{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("parse iptables-save output: %w", err)
	}
	return cur, nil
}

// countRuleLines adds the rules an iptables-restore input writes (or an
// iptables-save dump holds) to written, by table.
func countRuleLines(tx []byte, written map[string]int) {
	table := ""
	for len(tx) > 0 {
		line := tx
		if i := bytes.IndexByte(tx, '\n'); i >= 0 {
			line, tx = tx[:i], tx[i+1:]
		} else {
			tx = nil
		}
		switch {
		case len(line) > 1 && line[0] == '*':
			table = string(line[1:])
		case bytes.HasPrefix(line, []byte("-A ")) || bytes.HasPrefix(line, []byte("-I ")):
			written[table]++
		}
	}
}

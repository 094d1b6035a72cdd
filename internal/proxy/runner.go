// Package proxy owns the sync loop: it takes desired states from a source,
// coalesces them, and hands them to a dataplane at a bounded rate, retrying
// failed syncs with backoff.
package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Dataplane programs the kernel.
type Dataplane interface {
	Sync(ctx context.Context, st *model.State) error
}

// FollowUp is implemented by a Dataplane that can have work left after a
// sync, such as nftables chains it emptied and may delete only a second
// later.
type FollowUp interface {
	// FollowUp is how soon the dataplane wants another sync, though
	// nothing changed; 0 when it does not.
	FollowUp() time.Duration
}

// Runner is the sync loop.
type Runner struct {
	Dataplane Dataplane
	Log       *slog.Logger
	// MinSyncPeriod is the least time between two syncs (0 allowed).
	MinSyncPeriod time.Duration
	// SyncPeriod is the most time between two syncs: rules are re-asserted
	// at least this often even when nothing changed.
	SyncPeriod time.Duration
	// OnSynced runs after every successful sync, once the rules for st are
	// committed to the kernel.
	OnSynced func(st *model.State)
	// Pull is asked for the newest state right before each sync (nil:
	// nothing new since the last). The source only says something changed
	// (Resync) and builds the state when asked, so it builds one per sync
	// however many changes came: under a stream of endpoint changes,
	// building a state per change took a quarter of the CPU at 10k
	// Services.
	Pull func() *model.State

	mu       sync.Mutex
	lastOK   time.Time
	kick     chan struct{}
	initOnce sync.Once
}

func (r *Runner) init() {
	r.initOnce.Do(func() { r.kick = make(chan struct{}, 1) })
}

// Resync asks for a sync now (after minSyncPeriod): Pull has something
// new, or someone else flushed the tables.
func (r *Runner) Resync() {
	r.init()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// LastSuccess returns the time of the last successful sync (zero if none).
func (r *Runner) LastSuccess() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastOK
}

// Run syncs until ctx ends. Nothing is synced before Pull first returns a
// state, so a source that is not ready yet never causes rules to be
// removed.
func (r *Runner) Run(ctx context.Context) {
	r.init()
	const firstBackoff = time.Second
	backoff := firstBackoff
	var lastStart time.Time
	var periodic, retry, followUp <-chan time.Time
	var st *model.State // the newest state pulled
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-periodic:
		case <-retry:
		case <-followUp:
		}
		followUp = nil
		// Coalesce: wait out the rest of minSyncPeriod; updates that arrive
		// meanwhile are picked up by this sync.
		if wait := r.MinSyncPeriod - time.Since(lastStart); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select {
		case <-r.kick:
		default:
		}
		if newest := r.Pull(); newest != nil {
			st = newest
		}
		if st == nil {
			continue
		}
		lastStart = time.Now()
		err := r.Dataplane.Sync(ctx, st)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.Log.Error("sync failed; the previous rules stay in place", "err", err, "retryIn", backoff)
			retry = time.After(backoff)
			backoff = min(backoff*2, max(r.SyncPeriod, firstBackoff))
			periodic = nil
			continue
		}
		r.mu.Lock()
		first := r.lastOK.IsZero()
		r.lastOK = time.Now()
		r.mu.Unlock()
		level := slog.LevelDebug
		if first || backoff != firstBackoff {
			// The first sync, and the first after failures, are news.
			level = slog.LevelInfo
		}
		r.Log.Log(ctx, level, "synced rules", "servicePorts", len(st.Services), "took", time.Since(lastStart).Round(time.Millisecond))
		backoff, retry = firstBackoff, nil
		if r.SyncPeriod > 0 {
			periodic = time.After(r.SyncPeriod)
		}
		if f, ok := r.Dataplane.(FollowUp); ok {
			if d := f.FollowUp(); d > 0 {
				followUp = time.After(d)
			}
		}
		if r.OnSynced != nil {
			r.OnSynced(st)
		}
	}
}

package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

type fakeDataplane struct {
	mu     sync.Mutex
	synced []int // len(st.Services) of each sync attempt
	fail   int   // fail this many attempts first
	done   chan struct{}
}

func (f *fakeDataplane) Sync(_ context.Context, st *model.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced = append(f.synced, len(st.Services))
	if f.fail > 0 {
		f.fail--
		return errors.New("restore failed")
	}
	select {
	case f.done <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeDataplane) attempts() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.synced...)
}

func state(n int) *model.State { return &model.State{Services: make([]*model.ServicePort, n)} }

// source stands for the agent: it keeps the newest state until the runner
// pulls it.
type source struct {
	mu     sync.Mutex
	newest *model.State
}

func (s *source) pull() *model.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.newest
	s.newest = nil
	return st
}

// updater is a runner's source's way to hand it a new state.
func updater(r *Runner) func(*model.State) {
	src := &source{}
	r.Pull = src.pull
	return func(st *model.State) {
		src.mu.Lock()
		src.newest = st
		src.mu.Unlock()
		r.Resync()
	}
}

func newRunner(dp *fakeDataplane, minSync time.Duration) (*Runner, chan *model.State, func(*model.State)) {
	okCh := make(chan *model.State, 10)
	r := &Runner{
		Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinSyncPeriod: minSync, SyncPeriod: time.Hour,
		OnSynced: func(st *model.State) { okCh <- st },
	}
	return r, okCh, updater(r)
}

func TestRunnerCoalescesABurst(t *testing.T) {
	dp := &fakeDataplane{done: make(chan struct{}, 10)}
	r, ok, update := newRunner(dp, 300*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	update(state(1))
	<-ok
	// A burst inside minSyncPeriod after a sync: one more sync, with the
	// last state.
	for i := 2; i <= 20; i++ {
		update(state(i))
	}
	if st := <-ok; len(st.Services) != 20 {
		t.Errorf("synced state with %d services, want the latest (20)", len(st.Services))
	}
	time.Sleep(100 * time.Millisecond)
	if got := dp.attempts(); len(got) != 2 {
		t.Errorf("sync attempts = %v, want 2 (one per burst)", got)
	}
}

func TestRunnerRetriesAfterFailure(t *testing.T) {
	dp := &fakeDataplane{fail: 1, done: make(chan struct{}, 10)}
	r, ok, update := newRunner(dp, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	update(state(3))
	select {
	case st := <-ok:
		if len(st.Services) != 3 {
			t.Errorf("OnSynced got %d services", len(st.Services))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no successful sync after a failure: the runner must retry by itself")
	}
	if got := dp.attempts(); len(got) != 2 {
		t.Errorf("attempts = %v, want a failure then a success", got)
	}
	if r.LastSuccess().IsZero() {
		t.Error("LastSuccess not recorded")
	}
}

func TestRunnerDoesNothingBeforeTheFirstState(t *testing.T) {
	dp := &fakeDataplane{done: make(chan struct{}, 10)}
	r, _, _ := newRunner(dp, 0)
	r.SyncPeriod = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.Run(ctx)
	if got := dp.attempts(); len(got) != 0 {
		t.Errorf("synced %v before any source update: that would wipe a node's rules at start", got)
	}
}

// followUpDataplane asks for one follow-up sync after its first sync.
type followUpDataplane struct {
	fakeDataplane
	asked bool
}

func (f *followUpDataplane) FollowUp() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.asked || len(f.synced) == 0 {
		return 0
	}
	f.asked = true
	return 20 * time.Millisecond
}

// A dataplane with work left after a sync (nftables chains it may delete
// only a second later) gets another sync when it asks, though nothing
// changed and the periodic sync is an hour away; then no more.
func TestRunnerSyncsAgainWhenTheDataplaneAsks(t *testing.T) {
	dp := &followUpDataplane{fakeDataplane: fakeDataplane{done: make(chan struct{}, 10)}}
	r := &Runner{Dataplane: dp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), SyncPeriod: time.Hour}
	update := updater(r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	update(state(1))
	for i := 0; i < 2; i++ {
		select {
		case <-dp.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("sync %d never came", i+1)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if got := dp.attempts(); len(got) != 2 {
		t.Errorf("syncs = %v, want the first and one follow-up", got)
	}
}

// lockedBuffer is a log sink the runner's goroutine writes while the test
// reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(string(b.buf)), "\n")
}

// At default verbosity the log says when rules first reach the kernel, each
// failure, and the recovery after failures; routine syncs are debug lines.
func TestRunnerLogsWhatAnOperatorNeeds(t *testing.T) {
	dp := &fakeDataplane{done: make(chan struct{}, 10)}
	r, ok, update := newRunner(dp, 0)
	var out lockedBuffer
	r.Log = slog.New(slog.NewTextHandler(&out, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	update(state(3))
	<-ok
	update(state(4))
	<-ok
	dp.mu.Lock()
	dp.fail = 1
	dp.mu.Unlock()
	update(state(5))
	<-ok
	lines := out.lines()
	want := []string{"level=INFO msg=\"synced rules\" servicePorts=3", "level=ERROR msg=\"sync failed; the previous rules stay in place\"",
		"level=INFO msg=\"synced rules\" servicePorts=5"}
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines (the second sync is debug)", strings.Join(lines, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s, want %s", i, lines[i], w)
		}
	}
}

// A source that pulls builds a state once per sync, however many changes
// it was told of: a burst of 50 is one pull, and the sync has the newest.
func TestRunnerPullsOncePerSync(t *testing.T) {
	dp := &fakeDataplane{done: make(chan struct{}, 10)}
	r, ok, update := newRunner(dp, 200*time.Millisecond)
	var mu sync.Mutex
	pulls := 0
	pull := r.Pull
	r.Pull = func() *model.State {
		st := pull()
		if st != nil {
			mu.Lock()
			pulls++
			mu.Unlock()
		}
		return st
	}
	// The burst comes while the loop is not yet running (as during a
	// sync): it is one pull when it runs.
	for i := 1; i <= 50; i++ {
		update(state(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	if st := <-ok; len(st.Services) != 50 {
		t.Fatalf("synced %d Services, want the newest state's 50", len(st.Services))
	}
	mu.Lock()
	defer mu.Unlock()
	if pulls != 1 {
		t.Errorf("%d pulls for one sync", pulls)
	}
}

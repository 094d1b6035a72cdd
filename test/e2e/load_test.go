package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// loadGen sends a steady stream of requests until stopped, each on a fresh
// connection, bounded in time.
type loadGen struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	firstErrs    []string
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(ctx context.Context, targets map[*lab.NS]string, workersEach int) *loadGen {
	g := &loadGen{stop: make(chan struct{})}
	for from, addr := range targets {
		for i := 0; i < workersEach; i++ {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				for {
					select {
					case <-g.stop:
						return
					case <-ctx.Done():
						return
					default:
					}
					g.sent.Add(1)
					if _, err := from.HTTPGet(ctx, addr); err != nil {
						g.failed.Add(1)
						g.mu.Lock()
						if len(g.firstErrs) < 5 {
							g.firstErrs = append(g.firstErrs, fmt.Sprintf("%s -> %s: %v", from.Name, addr, err))
						}
						g.mu.Unlock()
					}
				}
			}()
		}
	}
	return g
}

// finish waits until at least min requests were sent, then stops.
func (g *loadGen) finish(min int64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for g.sent.Load() < min && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(g.stop)
	g.wg.Wait()
}

// writeAtomic replaces a file the way tools should: write aside, rename.
func writeAtomic(t *testing.T, path, body string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNoRequestLostUnderFaults(t *testing.T) {
	w := newWorld(t,
		lab.PodSpec{Name: "web-1", TCP: []int{80}},
		lab.PodSpec{Name: "web-2", TCP: []int{80}},
		lab.PodSpec{Name: "web-3", TCP: []int{80}},
		lab.PodSpec{Name: "client-pod", TCP: []int{8080}},
	)
	ctx := ctxFor(t, 3*time.Minute)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11"))
	proxy := w.start()
	nodePort := w.node.IP.String() + ":30450"
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), nodePort); err != nil {
		t.Fatal(err)
	}
	targets := map[*lab.NS]string{w.lab.Client: nodePort, &w.lab.Pods[3].NS: "10.96.0.10:80"}

	phases := []struct {
		name  string
		fault func(t *testing.T)
	}{
		{"svcproxy killed with SIGKILL and restarted", func(t *testing.T) {
			proxy.Kill()
			time.Sleep(300 * time.Millisecond)
			proxy = w.start()
		}},
		{"svcproxy restarted gracefully", func(t *testing.T) {
			if err := proxy.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := proxy.Wait(ctx); err != nil {
				t.Fatalf("graceful stop: %v", err)
			}
			proxy = w.start()
		}},
		{"endpoints churn at 50 changes per second", func(t *testing.T) {
			sets := [][]string{{"10.244.0.10", "10.244.0.11"}, {"10.244.0.11", "10.244.0.12"}, {"10.244.0.10", "10.244.0.11", "10.244.0.12"}, {"10.244.0.12"}}
			path := filepath.Join(w.dir, "web.yaml")
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 150; i++ {
				<-tick.C
				writeAtomic(t, path, webService("web", "10.96.0.10", 30450, sets[i%len(sets)]...))
			}
		}},
		{"the manifests folder replaced", func(t *testing.T) {
			next := w.dir + ".next"
			if err := os.MkdirAll(next, 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(w.dir, "web.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(next, "web.yaml"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(w.dir, w.dir+".old"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // the folder is gone for a while
			if err := os.Rename(next, w.dir); err != nil {
				t.Fatal(err)
			}
			// A change in the new folder must still be followed.
			writeAtomic(t, filepath.Join(w.dir, "web.yaml"), webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11", "10.244.0.12"))
			eventually(t, 5*time.Second, "change in the replaced folder followed", answeredBy(ctx, w.lab.Client, nodePort, false, "web-1", "web-2", "web-3"))
		}},
	}
	var totalSent, totalFailed int64
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			g := startLoad(ctx, targets, 3)
			time.Sleep(300 * time.Millisecond)
			ph.fault(t)
			g.finish(2000, 60*time.Second)
			sent, failed := g.sent.Load(), g.failed.Load()
			totalSent += sent
			totalFailed += failed
			t.Logf("%s: %d requests, %d failed", ph.name, sent, failed)
			if sent < 2000 {
				t.Errorf("only %d requests sent", sent)
			}
			if failed > 0 {
				t.Errorf("%d of %d requests failed; first: %v", failed, sent, g.firstErrs)
			}
		})
	}
	t.Logf("all phases: %d requests, %d failed", totalSent, totalFailed)
}

// answeredBy checks that repeated requests from "from" to addr are answered
// by every pod in pods, and (exact) by no other.
func answeredBy(ctx context.Context, from *lab.NS, addr string, exact bool, pods ...string) func() error {
	return func() error {
		seen := map[string]bool{}
		for i := 0; i < 15*len(pods); i++ {
			a, err := from.HTTPGet(ctx, addr)
			if err != nil {
				return err
			}
			seen[a.Pod] = true
		}
		for _, p := range pods {
			if !seen[p] {
				return fmt.Errorf("%s never answered (seen %v)", p, seen)
			}
		}
		if exact && len(seen) != len(pods) {
			return fmt.Errorf("answers from %v, want only %v", seen, pods)
		}
		return nil
	}
}

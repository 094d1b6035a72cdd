package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/dataplane/nftables"
	"github.com/svcproxy/svcproxy/internal/model"
)

// benchNS makes an empty network namespace for one benchmark run.
func benchNS(b testing.TB, name string) func() {
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	return func() { _ = exec.Command("ip", "netns", "del", name).Run() }
}

// syncerIn is a syncer of the mode that programs the namespace ns.
func syncerIn(b testing.TB, mode, ns string, fullPeriod time.Duration) dataplane.Syncer {
	if mode == "nftables" {
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Close(fd) })
		return &nftables.Syncer{NetNS: fd, FullSyncPeriod: fullPeriod}
	}
	return &iptables.Syncer{Runner: iptables.Exec{Prefix: []string{"ip", "netns", "exec", ns}}, Options: iptables.Options{LocalhostNodePorts: true}, FullSyncPeriod: fullPeriod}
}

// benchModes are the modes the benchmarks run: SVCPROXY_BENCH_MODES
// (comma-separated), or both.
var benchModes = func() []string {
	if v := os.Getenv("SVCPROXY_BENCH_MODES"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"iptables", "nftables"}
}()

// benchServices is SVCPROXY_BENCH_SERVICES, or def; at most limit.
func benchServices(b *testing.B, def, limit int) int {
	v := os.Getenv("SVCPROXY_BENCH_SERVICES")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > limit {
		b.Fatalf("SVCPROXY_BENCH_SERVICES=%q: want 1 to %d", v, limit)
	}
	return n
}

// BenchmarkApply applies N Services × 10 endpoints to an empty network
// namespace with the real kernel: the first full sync of a node.
//
//	go test -run XXX -bench Apply -benchtime 1x ./test/e2e
func BenchmarkApply(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, mode := range benchModes {
		sizes := []int{1000, 2000, 4000, 10000, 30000}
		if mode == "nftables" {
			sizes = append(sizes, 100000) // iptables mode takes minutes
		}
		for _, n := range sizes {
			st := model.Synthetic(n, 10)
			b.Run(fmt.Sprintf("mode=%s/services=%d", mode, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					done := benchNS(b, fmt.Sprintf("svbench-%d", n))
					s := syncerIn(b, mode, fmt.Sprintf("svbench-%d", n), 0)
					b.StartTimer()
					start := time.Now()
					if err := s.Sync(context.Background(), st); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(time.Since(start).Seconds(), "s/apply")
					b.StopTimer()
					done()
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkApplyOneChange changes the endpoints of the Service sorted last
// on a node that already has N Services × 10 endpoints (1k and 10k, or
// SVCPROXY_BENCH_SERVICES up to 100k): a partial sync.
func BenchmarkApplyOneChange(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	sizes := []int{1000, 10000}
	if n := benchServices(b, 0, 100000); n > 0 {
		sizes = []int{n}
	}
	for _, mode := range benchModes {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("mode=%s/services=%d", mode, n), func(b *testing.B) {
				ns := fmt.Sprintf("svbench1-%d", n)
				defer benchNS(b, ns)()
				s := syncerIn(b, mode, ns, time.Hour)
				st := model.Synthetic(n, 10)
				st.Gen = 1
				if err := s.Sync(context.Background(), st); err != nil {
					b.Fatal(err)
				}
				i := 0
				for b.Loop() {
					i++
					// As the agent's model hands States on: a new one that
					// says which port changed (model.Delta).
					next := *st
					next.Services = slices.Clone(st.Services)
					changed := *next.Services[n-1]                                       // States share their ports: a changed one is a copy
					changed.Endpoints = model.Synthetic(1, 10+i%3).Services[0].Endpoints // 10, 11 or 12 endpoints
					next.Services[n-1] = &changed
					next.Gen, next.Since = st.Gen+1, &model.Delta{Gen: st.Gen, Changed: []int{n - 1}}
					st = &next
					if err := s.Sync(context.Background(), st); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRelease hands over an nftables table of N Services × 10
// endpoints, as svcproxy does when it stops (one transaction), and reports
// how long the next svcproxy takes to replace the handed-over table.
func BenchmarkRelease(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, n := range []int{1000, 10000} {
		st := model.Synthetic(n, 10)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				ns := fmt.Sprintf("svbenchr-%d", n)
				done := benchNS(b, ns)
				s := syncerIn(b, "nftables", ns, 0).(*nftables.Syncer)
				if err := s.Sync(context.Background(), st); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := s.Release(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/release")
				b.StopTimer()
				start = time.Now()
				if err := syncerIn(b, "nftables", ns, 0).Sync(context.Background(), st); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/take-back")
				done()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCleanup removes N Services × 10 endpoints: `svcproxy cleanup`,
// and what a start in the other mode does on a switched node.
func BenchmarkCleanup(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, mode := range benchModes {
		for _, n := range []int{1000, 10000} {
			st := model.Synthetic(n, 10)
			b.Run(fmt.Sprintf("mode=%s/services=%d", mode, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					ns := fmt.Sprintf("svbenchc-%d", n)
					done := benchNS(b, ns)
					if err := syncerIn(b, mode, ns, 0).Sync(context.Background(), st); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if removed, err := syncerIn(b, mode, ns, 0).Cleanup(context.Background()); err != nil || !removed {
						b.Fatalf("cleanup: %v %v", removed, err)
					}
					b.StopTimer()
					done()
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkRuleAddFloor is what the kernel charges any iptables partial
// sync, before svcproxy does anything: one restore that adds a single rule
// to a new, unreferenced chain, on a node with 10k Services × 10 endpoints.
// iptables-nft commits each restore as one nf_tables transaction, and the
// kernel then validates every chain reachable from each base chain
// (PREROUTING and OUTPUT both jump to KUBE-SERVICES). The second figure is
// the same restore with those two jumps removed, which shows where the time
// goes.
func BenchmarkRuleAddFloor(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	const n = 10000
	ns := "svbenchfloor"
	defer benchNS(b, ns)()
	if err := syncerIn(b, "iptables", ns, time.Hour).Sync(context.Background(), model.Synthetic(n, 10)); err != nil {
		b.Fatal(err)
	}
	restore := func(input string) time.Duration {
		cmd := exec.Command("ip", "netns", "exec", ns, "iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(input)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v: %s", err, out)
		}
		return time.Since(start)
	}
	i := 0
	addOne := func() time.Duration {
		i++
		return restore(fmt.Sprintf("*nat\n:KUBE-FLOOR-%d - [0:0]\n-A KUBE-FLOOR-%d -j RETURN\nCOMMIT\n", i, i))
	}
	for b.Loop() {
		b.ReportMetric(addOne().Seconds(), "s-one-rule")
		b.StopTimer()
		restore("*nat\n-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n")
		b.ReportMetric(addOne().Seconds(), "s-one-rule-unreachable")
		restore("*nat\n-I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n")
		b.StartTimer()
	}
}

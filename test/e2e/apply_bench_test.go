package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/model"
)

// BenchmarkApply applies N Services × 10 endpoints to an empty network
// namespace with the real iptables-restore: the first full sync of a node.
//
//	go test -run XXX -bench Apply -benchtime 1x ./test/e2e
func BenchmarkApply(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, n := range []int{1000, 2000, 4000, 10000} {
		st := model.Synthetic(n, 10)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				ns := fmt.Sprintf("svbench-%d", n)
				_ = exec.Command("ip", "netns", "del", ns).Run()
				if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
					b.Fatalf("%v %s", err, out)
				}
				s := &iptables.Syncer{Runner: iptables.Exec{Prefix: []string{"ip", "netns", "exec", ns}}, Options: iptables.Options{LocalhostNodePorts: true}}
				b.StartTimer()
				start := time.Now()
				if err := s.Sync(context.Background(), st); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/apply")
				b.StopTimer()
				_ = exec.Command("ip", "netns", "del", ns).Run()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkApplyOneChange changes one Service's endpoints on a node that
// already has N Services × 10 endpoints: a partial sync.
func BenchmarkApplyOneChange(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ns := fmt.Sprintf("svbench1-%d", n)
			_ = exec.Command("ip", "netns", "del", ns).Run()
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				b.Fatalf("%v %s", err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			s := &iptables.Syncer{Runner: iptables.Exec{Prefix: []string{"ip", "netns", "exec", ns}}, Options: iptables.Options{LocalhostNodePorts: true}, FullSyncPeriod: time.Hour}
			st := model.Synthetic(n, 10)
			if err := s.Sync(context.Background(), st); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				st.Services[n/2].Endpoints = model.Synthetic(1, 10+i%3).Services[0].Endpoints // 10, 11 or 12 endpoints
				if err := s.Sync(context.Background(), st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

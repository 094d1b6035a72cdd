package iptables

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

func syntheticState(n int) *model.State { return model.Synthetic(n, 10) }

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		st := syntheticState(n)
		opts := Options{ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"), LocalhostNodePorts: true}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				size = len(Compose(Render(st, opts), nil))
			}
			b.ReportMetric(float64(size)/(1<<20), "MiB-out")
		})
	}
}

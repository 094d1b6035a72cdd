package nftables

import (
	"fmt"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// BenchmarkRender renders N Services × 10 endpoints: what a full sync
// renders (a partial one renders only the Service ports that changed).
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		st := model.Synthetic(n, 10)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Render(st, Options{ClusterCIDR: podCIDR})
			}
		})
	}
}

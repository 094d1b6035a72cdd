package iptables

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// BenchmarkRender renders N Services × 10 endpoints to the restore input of
// a full sync: cold is a fresh Renderer (the first sync, `svcproxy rules`),
// warm one that rendered the same Services before. lazy is what every sync
// does first: a warm, lazy render that keeps only fingerprints of the
// per-Service-port rules (the transactions render the ports they carry).
func BenchmarkRender(b *testing.B) {
	opts := Options{ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"), LocalhostNodePorts: true}
	for _, n := range []int{1000, 10000, 30000} {
		st := model.Synthetic(n, 10)
		for _, warm := range []bool{false, true} {
			name := fmt.Sprintf("services=%d/cold", n)
			if warm {
				name = fmt.Sprintf("services=%d/warm", n)
			}
			b.Run(name, func(b *testing.B) {
				var r Renderer
				if warm {
					r.Render(st, opts)
				}
				b.ReportAllocs()
				var size int
				for b.Loop() {
					if !warm {
						r = Renderer{}
					}
					size = len(Compose(r.Render(st, opts), nil))
				}
				b.ReportMetric(float64(size)/(1<<20), "MiB-out")
			})
		}
		b.Run(fmt.Sprintf("services=%d/lazy", n), func(b *testing.B) {
			r := Renderer{Lazy: true}
			r.Render(st, opts)
			b.ReportAllocs()
			for b.Loop() {
				r.Render(st, opts)
			}
		})
	}
}

// BenchmarkRenderOneChange is the CPU side of a partial sync at N Services:
// one Service's endpoints changed, the state rendered again and the
// transaction that rewrites only that Service composed.
func BenchmarkRenderOneChange(b *testing.B) {
	opts := Options{ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"), LocalhostNodePorts: true}
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := model.Synthetic(n, 10) // changed below: one per run (-count)
			r := Renderer{Lazy: true}    // as a sync renders
			applied := Record(r.Render(st, opts))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				st.Services[n/2].Endpoints = model.Synthetic(1, 10+i%3).Services[0].Endpoints
				txs, next := ComposePartial(r.Render(st, opts), applied, DefaultChunkServices)
				if len(txs) != 1 {
					b.Fatalf("%d transactions, want 1", len(txs))
				}
				applied = next
			}
		})
	}
}

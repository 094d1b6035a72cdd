package iptables

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// syntheticState is n NodePort Services with 10 endpoints each, shaped like
// the cluster in DESIGN.md §6.
func syntheticState(n int) *model.State {
	st := &model.State{}
	for i := 0; i < n; i++ {
		sp := model.ServicePort{
			Name:      model.ServicePortName{Namespace: fmt.Sprintf("ns%d", i%100), Name: fmt.Sprintf("svc%d", i), Port: "http"},
			Protocol:  model.TCP,
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Port:      80,
			NodePort:  int32(30000 + i%2768),
		}
		for e := 0; e < 10; e++ {
			k := i*10 + e
			sp.Endpoints = append(sp.Endpoints, model.Endpoint{IP: netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)}), Port: 8080, Ready: true, Serving: true})
		}
		st.Services = append(st.Services, sp)
	}
	return st
}

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

package model

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// BenchmarkBuildOneChange is the model's share of an endpoint change at 10k
// Services × 10 endpoints (SVCPROXY_BENCH_SERVICES, up to 1M, for other
// sizes): the snapshot differs from the last one by one EndpointSlice (a
// new object, as sources hand out), and the Builder reuses what it worked
// out for the rest.
func BenchmarkBuildOneChange(b *testing.B) {
	n := 10000
	if v := os.Getenv("SVCPROXY_BENCH_SERVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1<<20 {
			b.Fatalf("SVCPROXY_BENCH_SERVICES=%q: want 1 to %d", v, 1<<20)
		}
	}
	in := Input{}
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		s := svc(name, func(s *corev1.Service) {
			s.Namespace = fmt.Sprintf("ns%d", i%100)
			s.Spec.ClusterIP = fmt.Sprintf("10.%d.%d.%d", 96+i>>16, (i>>8)&255, i&255)
			s.Spec.Ports[0].NodePort = 0
			s.Spec.Type = corev1.ServiceTypeClusterIP
		})
		in.Services = append(in.Services, NewService(s))
		in.EndpointSlices = append(in.EndpointSlices, scaleSlice(i, s.Namespace, name, 0))
	}
	var builder Builder
	node := Node{Name: "node-1"}
	builder.Build(in, node)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		next := in
		next.EndpointSlices = append([]*EndpointSlice(nil), in.EndpointSlices...)
		next.EndpointSlices[n-1] = scaleSlice(n-1, in.Services[n-1].Namespace, in.Services[n-1].Name, i%2)
		in = next
		st, errs := builder.Build(in, node)
		if len(errs) > 0 || len(st.Services) != n {
			b.Fatalf("%d Service ports, errors %v", len(st.Services), errs)
		}
		if st.Since == nil || !slices.Equal(st.Since.Changed, []int{n - 1}) {
			b.Fatalf("Since %+v: want the one port changed", st.Since)
		}
	}
}

// scaleSlice is Service i's slice of 10 endpoints, the first moved by shift,
// as a source reads it.
func scaleSlice(i int, ns, service string, shift int) *EndpointSlice {
	return NewEndpointSlice(scaleSliceAPI(i, ns, service, shift), "node-1", nil)
}

func scaleSliceAPI(i int, ns, service string, shift int) *discoveryv1.EndpointSlice {
	var eps []discoveryv1.Endpoint
	for e := range 10 {
		k := i*10 + e + shift
		eps = append(eps, endpoint(fmt.Sprintf("10.%d.%d.%d", 128+k>>16, (k>>8)&255, k&255), "node-2", nil))
	}
	s := slice(service+"-a", service, 8080, "", eps...)
	s.Namespace = ns
	return s
}

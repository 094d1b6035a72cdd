package model

import (
	"fmt"
	"net/netip"
)

// Synthetic is a cluster of n Services with eps ready endpoints each,
// shaped like DESIGN.md §6's (for benchmarks of render and apply). The
// first SyntheticNodePorts of them are NodePort Services (30000 upwards);
// a cluster has no more NodePorts than its range holds.
func Synthetic(n, eps int) *State {
	st := &State{Services: make([]*ServicePort, 0, n)}
	for i := 0; i < n; i++ {
		sp := &ServicePort{
			Name:      ServicePortName{Namespace: fmt.Sprintf("ns%d", i%100), Name: fmt.Sprintf("svc%d", i), Port: "http"},
			Protocol:  TCP,
			ClusterIP: netip.AddrFrom4([4]byte{10, byte(96 + i>>16), byte(i >> 8), byte(i)}),
			Port:      80,
		}
		if i < SyntheticNodePorts {
			sp.NodePort = int32(30000 + i)
		}
		for e := 0; e < eps; e++ {
			k := i*eps + e
			sp.Endpoints = append(sp.Endpoints, Endpoint{IP: netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)}), Port: 8080, Ready: true, Serving: true})
		}
		st.Services = append(st.Services, sp)
	}
	return st
}

// SyntheticNodePorts is how many Synthetic Services have a NodePort: the
// default range 30000-32767 less one port (32767) left for a test Service.
const SyntheticNodePorts = 2767

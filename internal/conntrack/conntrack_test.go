package conntrack

import (
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

func dns(nodePort int32, ips ...string) model.ServicePort {
	sp := model.ServicePort{
		Name:     model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"},
		Protocol: model.UDP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, NodePort: nodePort,
	}
	for _, ip := range ips {
		sp.Endpoints = append(sp.Endpoints, model.Endpoint{IP: netip.MustParseAddr(ip), Port: 53, Ready: true})
	}
	return sp
}

func state(sps ...model.ServicePort) *model.State { return &model.State{Services: sps} }

func TestStale(t *testing.T) {
	a, b := netip.MustParseAddr("10.244.0.12"), netip.MustParseAddr("10.244.1.12")
	cip := netip.MustParseAddr("10.96.0.10")
	tests := []struct {
		name      string
		prev, cur *model.State
		want      []Flow
	}{
		{"first sync with endpoints clears rejected flows", nil, state(dns(0, "10.244.0.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53}}},
		{"an endpoint replaced", state(dns(0, "10.244.0.12")), state(dns(0, "10.244.1.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: a}}},
		{"an endpoint added removes nothing", state(dns(0, "10.244.0.12")), state(dns(0, "10.244.0.12", "10.244.1.12")), nil},
		{"no endpoints to some", state(dns(0)), state(dns(0, "10.244.1.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53}}},
		{"NodePort flows too", state(dns(30053, "10.244.0.12", "10.244.1.12")), state(dns(30053, "10.244.0.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: b}, {OrigDstPort: 30053, ReplySrc: b}}},
		{"Service deleted", state(dns(0, "10.244.0.12")), state(),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: a}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Stale(tt.prev, tt.cur)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("flow %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
	tcp := dns(0, "10.244.0.12")
	tcp.Protocol = model.TCP
	if got := Stale(state(tcp), state()); len(got) != 0 {
		t.Errorf("TCP flows are never touched: %v", got)
	}
}

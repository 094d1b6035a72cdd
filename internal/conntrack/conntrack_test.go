package conntrack

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/model"
)

func dns(nodePort int32, ips ...string) *model.ServicePort { return dnsAt(nodePort, 53, ips...) }

// dnsAt is kube-dns with its endpoints on targetPort.
func dnsAt(nodePort, targetPort int32, ips ...string) *model.ServicePort {
	sp := &model.ServicePort{
		Name:     model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"},
		Protocol: model.UDP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, NodePort: nodePort,
	}
	for _, ip := range ips {
		sp.Endpoints = append(sp.Endpoints, model.Endpoint{IP: netip.MustParseAddr(ip), Port: targetPort, Ready: true})
	}
	return sp
}

func state(sps ...*model.ServicePort) *model.State { return &model.State{Services: sps} }

func TestStale(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.244.0.12:53"), netip.MustParseAddrPort("10.244.1.12:53")
	cip := netip.MustParseAddr("10.96.0.10")
	tests := []struct {
		name      string
		prev, cur *model.State
		want      []Flow
	}{
		{"first sync with endpoints clears rejected flows, not live ones", nil, state(dns(0, "10.244.0.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, Except: []netip.AddrPort{a}}}},
		{"an endpoint replaced", state(dns(0, "10.244.0.12")), state(dns(0, "10.244.1.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: a}}},
		{"an endpoint added removes nothing", state(dns(0, "10.244.0.12")), state(dns(0, "10.244.0.12", "10.244.1.12")), nil},
		{"no endpoints to some", state(dns(0)), state(dns(0, "10.244.1.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, Except: []netip.AddrPort{b}}}},
		{"NodePort flows too", state(dns(30053, "10.244.0.12", "10.244.1.12")), state(dns(30053, "10.244.0.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: b}, {OrigDstPort: 30053, ReplySrc: b}}},
		{"targetPort changed: same pod, new port", state(dnsAt(30053, 53, "10.244.0.12")), state(dnsAt(30053, 5353, "10.244.0.12")),
			[]Flow{{OrigDst: cip, OrigDstPort: 53, ReplySrc: a}, {OrigDstPort: 30053, ReplySrc: a}}},
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
				if !reflect.DeepEqual(got[i], tt.want[i]) {
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

func TestFlowMatchesConntrackEntry(t *testing.T) {
	// A client's datagram to kube-dns's NodePort, DNATed to a pod's 53.
	entry := &netlink.ConntrackFlow{
		Forward: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: net.ParseIP("10.244.1.5"), SrcPort: 40000,
			DstIP: net.ParseIP("192.168.0.2"), DstPort: 30053},
		Reverse: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: net.ParseIP("10.244.0.12"), SrcPort: 53,
			DstIP: net.ParseIP("10.244.1.5"), DstPort: 40000},
	}
	tcp := *entry
	tcp.Forward.Protocol = unix.IPPROTO_TCP
	pod := netip.MustParseAddrPort("10.244.0.12:53")
	tests := []struct {
		name  string
		flow  Flow
		entry *netlink.ConntrackFlow
		want  bool
	}{
		{"NodePort flow from the endpoint", Flow{OrigDstPort: 30053, ReplySrc: pod}, entry, true},
		{"any reply source", Flow{OrigDstPort: 30053}, entry, true},
		{"any reply source but the endpoint's", Flow{OrigDstPort: 30053, Except: []netip.AddrPort{pod}}, entry, false},
		{"DNATed to an endpoint not among the current ones", Flow{OrigDstPort: 30053, Except: []netip.AddrPort{netip.MustParseAddrPort("10.244.9.9:53")}}, entry, true},
		{"the node's address given", Flow{OrigDst: netip.MustParseAddr("192.168.0.2"), OrigDstPort: 30053}, entry, true},
		{"another destination", Flow{OrigDst: netip.MustParseAddr("10.96.0.10"), OrigDstPort: 30053}, entry, false},
		{"another port", Flow{OrigDstPort: 53, ReplySrc: pod}, entry, false},
		{"the same pod on another port", Flow{OrigDstPort: 30053, ReplySrc: netip.MustParseAddrPort("10.244.0.12:5353")}, entry, false},
		{"another pod", Flow{OrigDstPort: 30053, ReplySrc: netip.MustParseAddrPort("10.244.0.13:53")}, entry, false},
		{"TCP is never touched", Flow{OrigDstPort: 30053}, &tcp, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.flow.MatchConntrackFlow(tt.entry); got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

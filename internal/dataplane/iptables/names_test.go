package iptables

import (
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// The check values are the ones upstream kube-proxy's own tests use, so a
// node moved from kube-proxy to svcproxy keeps its chain names.
func TestChainNamesMatchUpstream(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{ServiceChain(model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"}, model.UDP), "KUBE-SVC-TCOU7JCQXEZGVUNU"},
		{ServiceChain(model.ServicePortName{Namespace: "ns4", Name: "svc4", Port: "p80"}, model.TCP), "KUBE-SVC-4SW47YFZTEDKD3PK"},
		{EndpointChain(model.ServicePortName{Namespace: "ns4", Name: "svc4", Port: "p80"}, model.TCP, netip.MustParseAddrPort("10.180.0.4:80")), "KUBE-SEP-UKSFD7AGPMPPLUHC"},
		{ServiceChain(model.ServicePortName{Namespace: "ns1", Name: "svc1", Port: "p80"}, model.TCP), "KUBE-SVC-XPGD46QRK7WJZT7O"},
		{ExternalChain(model.ServicePortName{Namespace: "ns1", Name: "svc1", Port: "p80"}, model.TCP), "KUBE-EXT-XPGD46QRK7WJZT7O"},
		{EndpointChain(model.ServicePortName{Namespace: "ns1", Name: "svc1", Port: "p80"}, model.TCP, netip.MustParseAddrPort("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

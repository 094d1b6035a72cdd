package nftables

import (
	"net/netip"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Names as upstream's nftables proxier writes them (the examples in its
// source: "ULMVA6XW-ns1/svc1/tcp/p80", "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80").
func TestNames(t *testing.T) {
	sp := &model.ServicePort{Name: model.ServicePortName{Namespace: "ns1", Name: "svc1", Port: "p80"}, Protocol: model.TCP}
	if got, want := portBase(sp), "ULMVA6XW-ns1/svc1/tcp/p80"; got != want {
		t.Errorf("portBase = %s, want %s", got, want)
	}
	e := model.Endpoint{IP: netip.MustParseAddr("10.180.0.1"), Port: 80}
	if got, want := endpointBase(sp, e), "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"; got != want {
		t.Errorf("endpointBase = %s, want %s", got, want)
	}
	e6 := model.Endpoint{IP: netip.MustParseAddr("fd00::5"), Port: 80}
	if got := endpointBase(sp, e6); got[9:] != "ns1/svc1/tcp/p80__fd00..5/80" {
		t.Errorf("IPv6 endpoint chain base = %s: colons must become dots", got)
	}
}

func TestIsServiceChain(t *testing.T) {
	for name, want := range map[string]bool{
		"service-ULMVA6XW-ns1/svc1/tcp/p80":                 true,
		"endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80": true,
		"firewall-check":          false,
		"services":                false,
		"service-endpoints-check": false,
		"external-lowercase-x/y":  false,
	} {
		if got := isServiceChain(name); got != want {
			t.Errorf("isServiceChain(%q) = %v", name, got)
		}
	}
	for name, want := range map[string]string{
		"service-ULMVA6XW-ns1/svc1/tcp/p80":                 "ns1/svc1",
		"endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80": "ns1/svc1",
		"service-endpoints-check":                           "",
		"external-ULMVA6XW-no-slash":                        "",
	} {
		if got, _ := ServiceOfChain(name); got != want {
			t.Errorf("ServiceOfChain(%q) = %q, want %q", name, got, want)
		}
	}
}

package iptables

import (
	"maps"
	"testing"
)

// kubeproxy_sync_proxy_rules_iptables_last counts the rules a sync wrote,
// by table: appended and inserted rules, not chain declarations or
// deletions.
func TestCountRuleLines(t *testing.T) {
	written := map[string]int{}
	countRuleLines([]byte("*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n*nat\n:KUBE-SVC-X - [0:0]\n-X KUBE-SVC-Y\n-A KUBE-SVC-X -j KUBE-SEP-A\n-I PREROUTING -j KUBE-SERVICES\nCOMMIT\n"), written)
	countRuleLines([]byte("*nat\n-A KUBE-SVC-X -j KUBE-SEP-B\nCOMMIT"), written)
	if want := map[string]int{"filter": 1, "nat": 3}; !maps.Equal(written, want) {
		t.Errorf("written = %v, want %v", written, want)
	}
}

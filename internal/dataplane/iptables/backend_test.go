package iptables

import "testing"

// The backend is picked as upstream's image picks it.
func TestPickBackend(t *testing.T) {
	hint := []byte("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")
	rules := []byte("*filter\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n")
	one := []byte("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n")
	for _, tc := range []struct {
		name                string
		nft, legacy         []byte
		haveNft, haveLegacy bool
		want                string
	}{
		{"kubelet's hint in legacy", one, hint, true, true, "legacy"},
		{"kubelet's hint in nft wins", hint, hint, true, true, "nft"},
		{"more rules in legacy", one, rules, true, true, "legacy"},
		{"a tie is nft", one, one, true, true, "nft"},
		{"only legacy installed", nil, nil, false, true, "legacy"},
		{"only nft installed", nil, nil, true, false, "nft"},
		{"neither: the default tools", nil, nil, false, false, ""},
	} {
		if got := pickBackend(tc.nft, tc.haveNft, tc.legacy, tc.haveLegacy); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if e := ForBackend("legacy", true); e.SaveCmd != "ip6tables-legacy-save" || e.RestoreCmd != "ip6tables-legacy-restore" || e.iptablesCmd() != "ip6tables-legacy" {
		t.Errorf("ForBackend(legacy, v6) = %+v", e)
	}
}

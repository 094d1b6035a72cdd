package netfilter

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func loadNft(t testing.TB) *NftRuleset {
	t.Helper()
	data, err := os.ReadFile("testdata/kube-proxy-nftables-ruleset.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseNft(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestParseNft(t *testing.T) {
	rs := loadNft(t)
	tbl := rs.Tables[0]
	if tbl.Family != "ip" || tbl.Name != "kube-proxy" || len(tbl.Sets) != 9 {
		t.Fatalf("table %s %s with %d sets", tbl.Family, tbl.Name, len(tbl.Sets))
	}
	if n := len(tbl.Sets["service-ips"].Elements); n != 5 {
		t.Errorf("service-ips has %d elements, want 5 (the list wraps over lines)", n)
	}
	e := tbl.Sets["no-endpoint-services"].Elements[0]
	if strings.Join(e.Key, " . ") != "10.96.60.1 . tcp . 80" || strings.Join(e.Verdict, " ") != "goto reject-chain" {
		t.Errorf("element with a comment parsed as %+v", e)
	}
	for name, want := range map[string]int{"filter-prerouting-pre-dnat": -110, "filter-output-pre-dnat": -110, "nat-prerouting": -100, "nat-postrouting": 100, "filter-forward": 0} {
		if c := tbl.Chain(name); c == nil || c.Priority != want {
			t.Errorf("chain %s priority = %v, want %d", name, c, want)
		}
	}
}

// The nftables ruleset upstream kube-proxy v1.37.2 writes, as `nft list
// table` prints it: upstream's own proxier run on testdata/upstream in a
// network namespace (TestUpstreamNftablesFixture in test/e2e keeps it so).
// It DNATs straight from an anonymous numgen map, masquerades hairpin
// connections through a set, and keeps endpoint chains only for session
// affinity.
func TestTraceNftUpstream(t *testing.T) {
	rs := loadNft(t)
	node := netip.MustParseAddr("192.168.77.1")
	tests := []struct {
		name, src, dst, proto string
		dir                   Direction
		want                  string
	}{
		{"NodePort from outside", "192.0.2.7", "192.168.77.1:31080", "tcp", Arriving,
			"DNAT to 10.244.1.5:8080 (33.3%), 10.244.2.6:8080 (33.3%), 10.244.3.7:8080 (33.3%); masqueraded"},
		{"LB IP from an allowed source, Local policy", "198.51.100.7", "203.0.113.50:443", "tcp", Arriving,
			"DNAT to 10.244.1.9:8443 (100%); source kept"},
		{"LB IP from a disallowed source", "192.0.2.99", "203.0.113.50:443", "tcp", Arriving,
			"DROP by ip kube-proxy firewall-BPKTVXJ3-default/lb/tcp/https"},
		{"sticky Service from a pod", "10.244.1.5", "10.96.50.1:80", "tcp", Arriving,
			"DNAT to 10.244.1.20:80 (50%), 10.244.2.21:80 (50%); source kept"},
		{"hairpin: a pod reaching itself through its Service", "10.244.1.5", "10.96.12.34:80", "tcp", Arriving,
			"DNAT to 10.244.1.5:8080 (33.3%, masqueraded), 10.244.2.6:8080 (33.3%), 10.244.3.7:8080 (33.3%)"},
		{"Local-policy NodePort from outside: local endpoint only", "192.0.2.7", "192.168.77.1:31443", "tcp", Arriving,
			"DNAT to 10.244.1.9:8443 (100%); source kept"},
		{"Local-policy NodePort from a pod: every endpoint", "10.244.2.6", "192.168.77.1:31443", "tcp", Arriving,
			"DNAT to 10.244.1.9:8443 (50%), 10.244.2.10:8443 (50%); source kept"},
		{"DNS from a pod", "10.244.1.5", "10.96.0.10:53", "udp", Arriving,
			"DNAT to 10.244.1.2:53 (50%), 10.244.2.3:53 (50%); source kept"},
		{"DNS from the node", "192.168.77.1", "10.96.0.10:53", "udp", Local,
			"DNAT to 10.244.1.2:53 (50%), 10.244.2.3:53 (50%); masqueraded"},
		{"Service without endpoints", "10.244.1.5", "10.96.60.1:80", "tcp", Arriving,
			"REJECT by ip kube-proxy reject-chain"},
		{"wrong port of a ClusterIP", "10.244.1.5", "10.96.12.34:81", "tcp", Arriving,
			"REJECT by ip kube-proxy cluster-ips-check"},
		{"unallocated ClusterIP", "10.244.1.5", "10.96.99.99:80", "tcp", Arriving,
			"DROP by ip kube-proxy cluster-ips-check"},
		{"unrelated traffic", "192.0.2.7", "192.168.77.1:22", "tcp", Arriving,
			"NONE (no rule changes the packet)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tt.dst)
			res, err := TraceNft(rs, Packet{Src: netip.MustParseAddr(tt.src), Dst: dst.Addr(), Protocol: tt.proto, DstPort: dst.Port()},
				TraceOptions{Direction: tt.dir, LocalAddrs: []netip.Addr{node}})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Summary(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if len(res.Unknown) > 0 {
				t.Errorf("not understood: %v", res.Unknown)
			}
		})
	}
}

func TestParseNftErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "no table found"},
		{"hello\n", "line 1: not an nft ruleset"},
		{"table ip x {\n\tchain c {\n", "not closed"},
		{"table ip x {\n\tset s {\n\t\telements = { 1.2.3.4,\n", "unterminated elements"},
		{"table ip x {\n\tchain c {\n\t\ttype nat hook prerouting priority sideways; policy accept;\n\t}\n}\n", "bad priority"},
	} {
		_, err := ParseNft(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseNft(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// FuzzParseNft: any text either parses or is refused, and whatever parses
// can be traced without panicking or looping.
func FuzzParseNft(f *testing.F) {
	for _, p := range []string{"testdata/kube-proxy-nftables-ruleset.txt", "testdata/kube-proxy-nftables.nft"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("table inet t {\n\tchain c {\n\t\ttype filter hook prerouting priority 0; policy drop;\n\t\tjump c\n\t}\n}\n")
	f.Add("table ip t {\n\tchain a {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tnumgen random mod 2 vmap { 0 : jump a, 1 : goto a }\n\t}\n}\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := ParseNft(text)
		if err != nil {
			return
		}
		for _, dir := range []Direction{Arriving, Local} {
			res, err := TraceNft(rs, Packet{Src: netip.MustParseAddr("192.0.2.7"), Dst: netip.MustParseAddr("192.168.77.1"), Protocol: "tcp", DstPort: 31080},
				TraceOptions{Direction: dir, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.77.1")}})
			if err != nil {
				continue
			}
			checkShares(t, res)
		}
	})
}

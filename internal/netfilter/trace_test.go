package netfilter

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func loadDump(t testing.TB, name string) *Ruleset {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseIPTables(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// An iptables-save dump as upstream kube-proxy leaves it (arguments in
// iptables-save's order, /32 suffixes, session affinity, nfacct).
func TestTraceUpstreamDump(t *testing.T) {
	rs := loadDump(t, "upstream-iptables-save.txt")
	node := netip.MustParseAddr("192.168.77.1")
	tests := []struct {
		name       string
		dir        Direction
		src, dst   string
		proto      string
		want       string
		assumption string
	}{
		{"NodePort from outside", Arriving, "192.168.77.2", "192.168.77.1:30450", "tcp",
			"DNAT to 10.244.0.5:80 (33.3%), 10.244.1.7:80 (33.3%), 10.244.2.9:80 (33.3%); masqueraded", "session affinity"},
		{"DNS from a pod", Arriving, "10.244.0.5", "10.96.0.53:53", "udp",
			"DNAT to 10.244.0.12:53 (100%); source kept", ""},
		{"DNS from the node", Local, "192.168.77.1", "10.96.0.53:53", "udp",
			"DNAT to 10.244.0.12:53 (100%); masqueraded", ""},
		{"Service without endpoints", Arriving, "10.244.0.5", "10.96.0.30:80", "tcp",
			"REJECT by filter KUBE-SERVICES", ""},
		{"NodePort without endpoints", Arriving, "192.168.77.2", "192.168.77.1:30470", "tcp",
			"REJECT by filter KUBE-EXTERNAL-SERVICES", ""},
		{"unrelated traffic", Arriving, "192.168.77.2", "192.168.77.1:22", "tcp",
			"NONE (no rule changes the packet)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tt.dst)
			res, err := Trace(rs, Packet{Src: netip.MustParseAddr(tt.src), Dst: dst.Addr(), Protocol: tt.proto, DstPort: dst.Port()},
				TraceOptions{Direction: tt.dir, LocalAddrs: []netip.Addr{node}})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Summary(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if len(res.Unknown) > 0 {
				t.Errorf("unknown: %v", res.Unknown)
			}
			if tt.assumption != "" && !strings.Contains(strings.Join(res.Assumptions, "\n"), tt.assumption) {
				t.Errorf("assumptions %v should mention %q", res.Assumptions, tt.assumption)
			}
		})
	}
}

func TestTraceHopsNameTheRules(t *testing.T) {
	rs := loadDump(t, "upstream-iptables-save.txt")
	res, err := Trace(rs, Packet{Src: netip.MustParseAddr("10.244.0.5"), Dst: netip.MustParseAddr("10.96.0.53"), Protocol: "udp", DstPort: 53},
		TraceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Paths) != 1 {
		t.Fatalf("paths = %d", len(res.Paths))
	}
	var chains []string
	for _, h := range res.Paths[0].Hops {
		chains = append(chains, h.Table+"/"+h.Chain)
	}
	want := "nat/PREROUTING nat/KUBE-SERVICES nat/KUBE-SVC-TCOU7JCQXEZGVUNU nat/KUBE-SEP-DDDDDDDDDDDDDDDD filter/FORWARD filter/FORWARD filter/FORWARD filter/FORWARD nat/POSTROUTING nat/KUBE-POSTROUTING"
	if got := strings.Join(chains, " "); got != want {
		t.Errorf("hops:\n got %s\nwant %s", got, want)
	}
}

func TestTraceControlFlow(t *testing.T) {
	dump := `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A PREROUTING -p tcp -j A
-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.9:80
-A A -p tcp --dport 1 -j RETURN
-A A -p tcp -g B
-A A -j DNAT --to-destination 10.0.0.1
-A B -p tcp --dport 2 -j DNAT --to-destination 10.0.0.2:8080
COMMIT
`
	rs, err := ParseIPTables(dump)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		port uint16
		want string
	}{
		{1, "DNAT to 10.0.0.9:80 (100%); source kept"},   // RETURN resumes the caller
		{2, "DNAT to 10.0.0.2:8080 (100%); source kept"}, // goto target decides
		{3, "DNAT to 10.0.0.9:80 (100%); source kept"},   // falling off a goto chain returns past its caller
	} {
		res, err := Trace(rs, Packet{Src: netip.MustParseAddr("1.1.1.1"), Dst: netip.MustParseAddr("2.2.2.2"), Protocol: "tcp", DstPort: tt.port}, TraceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Summary(); got != tt.want {
			t.Errorf("port %d: got %s, want %s", tt.port, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "no \"*table\""},
		{"hello world\n", "line 1: not an iptables-save dump"},
		{"*nat\n-A X -m comment --comment \"open\n", "line 2: unterminated quote"},
		{"*nat\n:X - [0:0]\n", "table nat is not committed"},
		{"*nat\n-Z X\nCOMMIT\n", "line 2: unknown command -Z"},
	} {
		_, err := ParseIPTables(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseIPTables(%q) = %v, want error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestTraceLoopEndsWithAnError(t *testing.T) {
	// The kernel refuses loops, but a dump handed to trace may have one;
	// with a statistic match in it, following every branch would never end.
	dump := "*nat\n:PREROUTING ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A PREROUTING -j A\n" +
		"-A A -m statistic --mode random --probability 0.5 -j B\n-A A -j B\n-A B -j A\nCOMMIT\n"
	rs, err := ParseIPTables(dump)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Trace(rs, Packet{Src: netip.MustParseAddr("1.1.1.1"), Dst: netip.MustParseAddr("2.2.2.2"), Protocol: "tcp", DstPort: 80}, TraceOptions{})
	if err == nil || !strings.Contains(err.Error(), "too complex") {
		t.Errorf("err = %v, want a too-complex error", err)
	}
}

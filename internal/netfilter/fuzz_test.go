package netfilter

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseIPTables feeds arbitrary text to the parser and traces whatever
// parses: neither may panic or loop, whatever a dump contains.
func FuzzParseIPTables(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.txt")
	golden, _ := filepath.Glob("../dataplane/iptables/testdata/*.golden")
	for _, p := range append(seeds, golden...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("*nat\n:A - [0:0]\n-A A -j A\n-A PREROUTING -j A\nCOMMIT\n")
	f.Add("*filter\n-A INPUT -m statistic --mode random --probability 0.5 -j DROP\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := ParseIPTables(text)
		if err != nil {
			return
		}
		for _, dir := range []Direction{Arriving, Local} {
			res, err := Trace(rs, Packet{Src: netip.MustParseAddr("192.168.77.2"), Dst: netip.MustParseAddr("192.168.77.1"), Protocol: "tcp", DstPort: 30450},
				TraceOptions{Direction: dir, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.77.1")}})
			if err != nil {
				t.Fatal(err)
			}
			checkShares(t, res)
		}
	})
}

// checkShares fails when a trace's paths do not share out all the traffic.
func checkShares(t *testing.T, res *Result) {
	t.Helper()
	total := 0.0
	for _, p := range res.Paths {
		total += p.Probability
	}
	if len(res.Paths) > 0 && (total < 0.999 || total > 1.001) {
		t.Fatalf("path probabilities add up to %v, want 1", total)
	}
}

package nftables

import (
	"net/netip"
	"testing"
)

// The record keeps the endpoints maps' ranges per block, sorted, and
// forgets a block with its last range.
func TestRecordRanges(t *testing.T) {
	ks := newKernelState()
	target := netip.MustParseAddrPort("10.244.0.10:80")
	a, b := uint32(5<<rangeBits), uint32(5<<rangeBits|0x2000)
	ks.setRange(b, newKernelRange(b+0x1fff, target))
	ks.setRange(a, newKernelRange(a+0x1fff, target))
	if rs := ks.blocks[5]; len(rs) != 2 || rs[0].first != a || rs[1].first != b {
		t.Fatalf("block 5 = %+v, want two ranges sorted by first value", rs)
	}
	if r, ok := ks.rangeAt(a); !ok || r != newKernelRange(a+0x1fff, target) {
		t.Errorf("rangeAt(a) = %+v %v", r, ok)
	}
	other := netip.MustParseAddrPort("10.244.0.11:80")
	ks.setRange(a, newKernelRange(a+0x1fff, other))
	if r, _ := ks.rangeAt(a); r.target != targetKey(other) {
		t.Error("setRange on a known first value must replace the range")
	}
	ks.unsetRange(a)
	ks.unsetRange(b)
	if _, ok := ks.blocks[5]; ok {
		t.Error("an empty block must be forgotten")
	}
	if targetKey(netip.MustParseAddrPort("[fd00::1]:80")) == targetKey(netip.MustParseAddrPort("0.0.0.1:80")) {
		t.Error("an IPv6 target's key must never equal an IPv4 one's")
	}
}

// decodeKey reads back what elementKey writes, for every set's key kind.
func TestDecodeKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		keys []string
		e    Element
		v6   bool
	}{
		{[]string{"addr", "proto", "port"}, Element{Addr: netip.MustParseAddr("10.96.0.10"), Proto: "udp", Port: 53}, false},
		{[]string{"addr", "proto", "port"}, Element{Addr: netip.MustParseAddr("fd00:96::10"), Proto: "sctp", Port: 3868}, true},
		{[]string{"proto", "port"}, Element{Proto: "tcp", Port: 30450}, false},
		{[]string{"addr"}, Element{Addr: netip.MustParseAddr("192.168.77.1")}, false},
		{[]string{"addr", "addr"}, Element{Addr: netip.MustParseAddr("10.244.0.10")}, false},
	} {
		got := decodeKey(tc.keys, elementKey(tc.keys, tc.e), tc.v6)
		if got.Addr != tc.e.Addr || got.Proto != tc.e.Proto || got.Port != tc.e.Port {
			t.Errorf("%v: decoded %+v, want %+v", tc.keys, got, tc.e)
		}
	}
}

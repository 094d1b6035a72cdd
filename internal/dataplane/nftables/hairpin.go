package nftables

import (
	"net/netip"
	"slices"
)

// hairpinClaims counts the Services that want each address of the hairpin
// set (0: in the kernel, wanted by none). IPv4 addresses are kept in 4
// bytes: at 10k Services × 10 endpoints there are 100k of them.
type hairpinClaims struct {
	v4 map[uint32]int32
	v6 map[addr16]int32
}

func newHairpinClaims() hairpinClaims {
	return hairpinClaims{v4: map[uint32]int32{}, v6: map[addr16]int32{}}
}

// add counts n more claims on a, and reports whether the set lacked it.
func (h hairpinClaims) add(a netip.Addr, n int32) (added bool) {
	if a.Is4() {
		return addClaims(h.v4, addr4(a), n)
	}
	return addClaims(h.v6, addr16(a.As16()), n)
}

func addClaims[K comparable](m map[K]int32, k K, n int32) bool {
	c, ok := m[k]
	m[k] = c + n
	return !ok
}

// release drops one claim on a, and reports whether nobody wants it any
// more (it is then forgotten: the caller deletes it from the set).
func (h hairpinClaims) release(a netip.Addr) (gone bool) {
	if a.Is4() {
		return releaseClaim(h.v4, addr4(a))
	}
	return releaseClaim(h.v6, addr16(a.As16()))
}

func releaseClaim[K comparable](m map[K]int32, k K) bool {
	n, ok := m[k]
	switch {
	case !ok:
		return false
	case n > 1:
		m[k] = n - 1
		return false
	}
	delete(m, k)
	return true
}

// unclaimed are the addresses the set holds that no Service wants.
func (h hairpinClaims) unclaimed() []netip.Addr {
	var out []netip.Addr
	h.each(func(a netip.Addr, n int32) {
		if n == 0 {
			out = append(out, a)
		}
	})
	return out
}

func (h hairpinClaims) each(f func(netip.Addr, int32)) {
	for k, n := range h.v4 {
		f(netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}), n)
	}
	for k, n := range h.v6 {
		f(netip.AddrFrom16(k), n)
	}
}

// addr16 is an IPv6 address as a map key: two thirds of a netip.Addr.
type addr16 [16]byte

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// packedAddrs are a Service's hairpin addresses, 4 or 16 bytes each.
type packedAddrs []byte

func (p packedAddrs) each(v6 bool, f func(netip.Addr)) {
	n := addrLen(v6)
	for i := 0; i+n <= len(p); i += n {
		a, _ := netip.AddrFromSlice(p[i : i+n])
		f(a)
	}
}

// addrLen is how many bytes an address of the family takes.
func addrLen(v6 bool) int {
	if v6 {
		return 16
	}
	return 4
}

// all are the addresses the set holds, sorted, claimed or not (for tests
// and logs).
func (h hairpinClaims) all() []netip.Addr {
	var out []netip.Addr
	h.each(func(a netip.Addr, _ int32) { out = append(out, a) })
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

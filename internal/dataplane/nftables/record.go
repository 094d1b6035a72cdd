package nftables

import (
	"cmp"
	"hash/maphash"
	"net/netip"
	"slices"
)

// kernelState is what this process knows the table holds.
type kernelState struct {
	fixed    uint64
	chains   map[string]bool
	services map[string]serviceRecord
	// elements: set name -> key bytes -> value (see kernelValue), for the
	// sets and maps other than the endpoints maps and the hairpin set.
	elements map[string]map[string]string
	// wanted counts the Services that want each element ("set\x00key"),
	// so that one Service letting go of a key another still uses (two
	// Services on one external IP and port) does not delete it.
	wanted   map[string]int
	affinity map[string]bool
	// blocks are the endpoints maps' elements by block (range number),
	// each block's sorted by first value. Typed and in slices, not a map
	// per element: at 10k Services × 10 endpoints there are 100k of them.
	blocks map[uint32][]blockRange
	// hairpin are the hairpin set's addresses with their claims.
	hairpin hairpinClaims
	// endpointMaps are the endpoints maps the table has.
	endpointMaps map[string]bool
	// nodePortIPs is set while the table has the nodeport-ips set (only
	// --nodeport-addresses needs it).
	nodePortIPs bool
	// localhostReject is set while the table has the localhost NodePort
	// reject map; counters are its named counters.
	localhostReject bool
	counters        map[string]bool
	// read is set when the state was just read from the kernel.
	read bool
	// foreign is set for a table of another proxy's layout (upstream
	// kube-proxy's), which the next sync replaces whole.
	foreign bool
}

type serviceRecord struct {
	// sum covers everything the Service owns; chainSum its chains and
	// affinity sets alone.
	sum, chainSum uint64
	chains        []string
	sets          []string
	elements      []string // "set\x00key" (see kernelState.elements)
	// blocks are the Service's ranges in the endpoints maps: its elements
	// there are found through kernelState.blocks (no other Service shares
	// them, so they need no claims).
	blocks []uint32
	// hairpin are its endpoints' addresses in the hairpin set.
	hairpin packedAddrs
}

// newKernelState is the record of a table just read, empty.
func newKernelState() *kernelState {
	return &kernelState{read: true, chains: map[string]bool{}, services: map[string]serviceRecord{}, wanted: map[string]int{}, blocks: map[uint32][]blockRange{},
		hairpin: newHairpinClaims(), endpointMaps: map[string]bool{}, elements: map[string]map[string]string{}, affinity: map[string]bool{},
		counters: map[string]bool{}}
}

// kernelRange is an endpoints map element as the kernel holds it: its
// last value and its target (see targetKey). There are 100k of these at
// 10k Services.
type kernelRange struct {
	last   uint32
	target uint64
}

func newKernelRange(last uint32, target netip.AddrPort) kernelRange {
	return kernelRange{last, targetKey(target)}
}

// targetKey stands for an endpoint's address and port in 8 bytes: exactly
// for IPv4, as a hash for IPv6 (the ranges are only ever compared).
func targetKey(t netip.AddrPort) uint64 {
	if a := t.Addr(); a.Is4() {
		return uint64(addr4(a))<<16 | uint64(t.Port())
	}
	var h maphash.Hash
	h.SetSeed(targetSeed)
	b := t.Addr().As16()
	h.Write(b[:])
	h.Write([]byte{byte(t.Port() >> 8), byte(t.Port())})
	return h.Sum64() | 1<<63 // never an IPv4 key, which stays below 1<<48
}

var targetSeed = maphash.MakeSeed()

// blockRange is a kernelRange with its first value, in 16 bytes.
type blockRange struct {
	first, last uint32
	target      uint64
}

func (r blockRange) kernelRange() kernelRange { return kernelRange{r.last, r.target} }

func rangeOf(e Element) kernelRange { return newKernelRange(e.Slots[1], e.Target) }

// find is where the range starting at first is, or would be, in its block.
func (ks *kernelState) find(first uint32) ([]blockRange, int, bool) {
	rs := ks.blocks[first>>rangeBits]
	i, ok := slices.BinarySearchFunc(rs, first, func(r blockRange, first uint32) int { return cmp.Compare(r.first, first) })
	return rs, i, ok
}

// rangeAt is the range the kernel holds starting at first.
func (ks *kernelState) rangeAt(first uint32) (kernelRange, bool) {
	rs, i, ok := ks.find(first)
	if !ok {
		return kernelRange{}, false
	}
	return rs[i].kernelRange(), true
}

// setRange records a range the kernel holds.
func (ks *kernelState) setRange(first uint32, r kernelRange) {
	rs, i, ok := ks.find(first)
	if ok {
		rs[i].last, rs[i].target = r.last, r.target
		return
	}
	ks.blocks[first>>rangeBits] = slices.Insert(rs, i, blockRange{first, r.last, r.target})
}

// unsetRange records that a range is gone.
func (ks *kernelState) unsetRange(first uint32) {
	rs, i, ok := ks.find(first)
	if !ok {
		return
	}
	if len(rs) == 1 {
		delete(ks.blocks, first>>rangeBits)
		return
	}
	ks.blocks[first>>rangeBits] = slices.Delete(rs, i, i+1)
}

// kernelValue is what the kernel state records for an element of a set or
// verdict map: its verdict ("" in sets).
func kernelValue(s Set, e Element) string {
	if s.IsMap {
		return e.Verdict.String()
	}
	return ""
}

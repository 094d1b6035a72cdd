package model

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// Fingerprint hashes everything a dataplane renders from sp, so that a sync
// can tell an unchanged Service port without keeping a copy of it. Equal
// ports give equal fingerprints under one seed; every field counts (a test
// holds it to that).
func (sp *ServicePort) Fingerprint(seed maphash.Seed) uint64 {
	return sp.FingerprintWith(seed, EndpointsFingerprint(seed, sp.Endpoints))
}

// FingerprintWith is Fingerprint given EndpointsFingerprint(seed,
// sp.Endpoints), which a caller may have kept: States built one after
// another share unchanged endpoint lists, and hashing 10k of them is most
// of the cost.
func (sp *ServicePort) FingerprintWith(seed maphash.Seed, endpoints uint64) uint64 {
	var h hasher
	h.SetSeed(seed)
	h.str(sp.Name.Namespace)
	h.str(sp.Name.Name)
	h.str(sp.Name.Port)
	h.str(string(sp.Protocol))
	h.addr(sp.ClusterIP)
	h.num(int64(sp.Port))
	h.num(int64(sp.NodePort))
	for _, list := range [][]netip.Addr{sp.ExternalIPs, sp.LoadBalancerIPs} {
		h.num(int64(len(list)))
		for _, a := range list {
			h.addr(a)
		}
	}
	h.num(int64(len(sp.SourceRanges)))
	for _, p := range sp.SourceRanges {
		h.addr(p.Addr())
		h.num(int64(p.Bits()))
	}
	h.flag(sp.ExternalPolicyLocal)
	h.flag(sp.InternalPolicyLocal)
	h.num(int64(sp.HealthCheckNodePort))
	h.num(int64(sp.AffinitySeconds))
	h.num(int64(endpoints))
	return h.Sum64()
}

// EndpointsFingerprint hashes eps as Fingerprint does.
func EndpointsFingerprint(seed maphash.Seed, eps []Endpoint) uint64 {
	var h hasher
	h.SetSeed(seed)
	h.num(int64(len(eps)))
	for _, e := range eps {
		h.addr(e.IP)
		h.num(int64(e.Port))
		h.str(e.NodeName)
		for _, b := range []bool{e.IsLocal, e.Ready, e.Serving, e.Terminating, e.OutOfTopology} {
			h.flag(b)
		}
		h.strs(e.zoneHints())
		h.strs(e.nodeHints())
	}
	return h.Sum64()
}

// hasher writes values so that no two sequences of them hash the same
// bytes (strings carry their length).
type hasher struct{ maphash.Hash }

func (h *hasher) str(s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	h.WriteString(s)
}

func (h *hasher) num(v int64) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutVarint(n[:], v)])
}

func (h *hasher) flag(b bool) {
	if b {
		h.WriteByte(1)
	} else {
		h.WriteByte(0)
	}
}

func (h *hasher) addr(a netip.Addr) {
	var buf [32]byte
	b, _ := a.AppendBinary(buf[:0])
	h.num(int64(len(b)))
	h.Write(b)
}

func (h *hasher) strs(list []string) {
	h.num(int64(len(list)))
	for _, s := range list {
		h.str(s)
	}
}

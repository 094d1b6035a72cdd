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
	var h maphash.Hash
	h.SetSeed(seed)
	str := func(s string) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.WriteString(s)
	}
	num := func(v int64) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutVarint(n[:], v)])
	}
	flag := func(b bool) {
		if b {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
	}
	addr := func(a netip.Addr) {
		b, _ := a.MarshalBinary()
		str(string(b))
	}
	strs := func(list []string) {
		num(int64(len(list)))
		for _, s := range list {
			str(s)
		}
	}
	str(sp.Name.Namespace)
	str(sp.Name.Name)
	str(sp.Name.Port)
	str(string(sp.Protocol))
	addr(sp.ClusterIP)
	num(int64(sp.Port))
	num(int64(sp.NodePort))
	for _, list := range [][]netip.Addr{sp.ExternalIPs, sp.LoadBalancerIPs} {
		num(int64(len(list)))
		for _, a := range list {
			addr(a)
		}
	}
	num(int64(len(sp.SourceRanges)))
	for _, p := range sp.SourceRanges {
		addr(p.Addr())
		num(int64(p.Bits()))
	}
	flag(sp.ExternalPolicyLocal)
	flag(sp.InternalPolicyLocal)
	num(int64(sp.HealthCheckNodePort))
	num(int64(sp.AffinitySeconds))
	num(int64(len(sp.Endpoints)))
	for _, e := range sp.Endpoints {
		addr(e.IP)
		num(int64(e.Port))
		str(e.NodeName)
		for _, b := range []bool{e.IsLocal, e.Ready, e.Serving, e.Terminating, e.OutOfTopology} {
			flag(b)
		}
		strs(e.ZoneHints)
		strs(e.NodeHints)
	}
	return h.Sum64()
}

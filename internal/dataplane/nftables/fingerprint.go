package nftables

import (
	"hash"
	"hash/fnv"
	"strconv"
)

// fixedFingerprint and Service.fingerprint hash the rendered text, so that
// a partial sync rewrites only what changed.
func fixedFingerprint(rs *Ruleset) uint64 {
	h := fnv.New64a()
	hashChains(h, append(baseChains(rs.Base), rs.Fixed...), rs.IPv6)
	for _, c := range rs.Counters {
		h.Write([]byte("counter " + c + "\n"))
	}
	for _, st := range rs.Sets {
		h.Write([]byte(st.Name + keyType(st, rs.IPv6)))
		for _, e := range st.Elements {
			h.Write([]byte(e.text(st)))
		}
	}
	return h.Sum64()
}

// hashChains writes the chains' names and rules into h and returns how many
// rules there are.
func hashChains(h hash.Hash64, chains []Chain, v6 bool) int {
	n := 0
	for _, c := range chains {
		h.Write([]byte(c.Name + "{"))
		for _, r := range c.Rules {
			h.Write([]byte(r.Text(v6) + "\n"))
		}
		n += len(c.Rules)
	}
	return n
}

// fingerprint sets sum, chainSum and rules.
func (svc *Service) fingerprint(v6 bool) {
	h := fnv.New64a()
	svc.rules = hashChains(h, svc.Chains, v6)
	for _, a := range svc.AffinitySets {
		h.Write([]byte(a.Name))
	}
	svc.chainSum = h.Sum64()
	// Every field of an element: an endpoint that moves to another port is
	// a change of Target alone.
	var b []byte
	for _, e := range svc.Elements {
		b = append(append(b[:0], e.Set...), ' ')
		b = append(e.Addr.AppendTo(b), ' ')
		b = append(append(b, e.Proto...), ' ')
		b = append(strconv.AppendUint(b, uint64(e.Port), 10), ' ')
		b = append(append(b, e.Verdict.String()...), ' ')
		b = append(strconv.AppendQuote(b, e.Comment), ' ')
		b = append(strconv.AppendUint(b, uint64(e.Slots[0]), 10), '-')
		b = append(strconv.AppendUint(b, uint64(e.Slots[1]), 10), ' ')
		b = append(e.Target.AppendTo(b), '\n')
		h.Write(b)
	}
	svc.sum = h.Sum64()
}

package netfilter

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Summary says in one line what happens to the packet, e.g.
// "DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded".
func (r *Result) Summary() string {
	var parts []string
	if d := r.Destinations(); len(d) > 0 {
		masq := r.masqueradeByDestination()
		allSame := true
		for _, x := range d {
			allSame = allSame && masq[x.Addr] == masq[d[0].Addr]
		}
		dests := make([]string, len(d))
		for i, x := range d {
			dests[i] = fmt.Sprintf("%s (%s)", x.Addr, Percent(x.Probability))
			if !allSame && masq[x.Addr] {
				dests[i] = fmt.Sprintf("%s (%s, masqueraded)", x.Addr, Percent(x.Probability))
			}
		}
		s := "DNAT to " + strings.Join(dests, ", ")
		switch {
		case !allSame:
		case masq[d[0].Addr]:
			s += "; masqueraded"
		default:
			s += "; source kept"
		}
		parts = append(parts, s)
	}
	// Drops and rejects, each with the rule that did it.
	seen := map[string]bool{}
	for _, p := range r.Paths {
		if p.Verdict != VerdictDrop && p.Verdict != VerdictReject {
			continue
		}
		s := string(p.Verdict)
		if n := len(p.Hops); n > 0 {
			h := p.Hops[n-1]
			s += " by " + h.Table + " " + h.Chain
		}
		if p.Probability < 0.99999 {
			s += " (" + Percent(p.Probability) + ")"
		}
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		v := r.Verdict()
		if v == VerdictAccept {
			return "ACCEPT (not rewritten)"
		}
		return "NONE (no rule changes the packet)"
	}
	return strings.Join(parts, "; ")
}

// Percent is a share to a tenth of a percent: nftables mode splits a
// range of 16,384 values, so three endpoints get 33.331 % and 33.337 %.
func Percent(p float64) string {
	return strconv.FormatFloat(math.Round(p*1000)/10, 'f', -1, 64) + "%"
}

// masqueradeByDestination reports, per DNAT destination, whether every path
// to it is masqueraded.
func (r *Result) masqueradeByDestination() map[netip.AddrPort]bool {
	m := map[netip.AddrPort]bool{}
	for _, p := range r.Paths {
		if p.Verdict != VerdictDNAT {
			continue
		}
		prev, seen := m[p.DNAT]
		m[p.DNAT] = p.Masquerade && (!seen || prev)
	}
	return m
}

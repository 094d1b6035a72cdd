package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// target applies r's target to a state that matched r and returns the
// resulting states.
func (t *tracer) target(tbl *Table, r *Rule, s *state, depth int) []*state {
	switch r.Target {
	case "":
		return []*state{s}
	case "ACCEPT":
		s.done = true
		if tbl.Name == "filter" {
			s.accepted = true
		}
		return []*state{s}
	case "DROP":
		s.final = VerdictDrop
		return []*state{s}
	case "REJECT":
		s.final = VerdictReject
		return []*state{s}
	case "RETURN":
		s.returned = true
		return []*state{s}
	case "DNAT":
		to := r.TargetOpt("--to-destination")
		ap, err := parseDNAT(to, s.pkt.DstPort)
		if err != nil {
			t.res.Unknown = append(t.res.Unknown, fmt.Sprintf("line %d: DNAT %q: %v", r.Line, to, err))
			return []*state{s}
		}
		s.dnat = ap
		s.done = true
		return []*state{s}
	case "MASQUERADE", "SNAT":
		s.masq = true
		s.done = true
		return []*state{s}
	case "MARK":
		for _, o := range r.TargetOpts {
			if len(o.Values) == 0 {
				continue
			}
			v, mask, err := parseMark(o.Values[0])
			if err != nil {
				t.res.Unknown = append(t.res.Unknown, fmt.Sprintf("line %d: MARK %s %s", r.Line, o.Name, o.Values[0]))
				continue
			}
			switch o.Name {
			case "--or-mark":
				s.mark |= v
			case "--xor-mark":
				s.mark ^= v
			case "--and-mark":
				s.mark &= v
			case "--set-mark":
				s.mark = s.mark&^mask | v
			case "--set-xmark":
				s.mark = s.mark&^mask ^ v
			}
		}
		return []*state{s}
	case "LOG", "NFLOG", "TRACE", "CT", "CONNMARK", "NOTRACK", "AUDIT":
		return []*state{s}
	}
	c := tbl.Chain(r.Target)
	if c == nil {
		t.res.Unknown = append(t.res.Unknown, fmt.Sprintf("line %d: target %s", r.Line, r.Target))
		return []*state{s}
	}
	out := t.runChain(tbl, c, s, depth+1)
	if r.Goto {
		// A goto does not come back: falling off the end of the target
		// chain returns to the caller's caller.
		for _, o := range out {
			if !o.done && o.final == "" {
				o.returned = true
			}
		}
	}
	return out
}

// parseDNAT reads "ip", "ip:port" or "ip:lo-hi" (the first port of a range).
func parseDNAT(s string, origPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, origPort), nil
	}
	host, ports, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not an address")
	}
	a, err := netip.ParseAddr(strings.Split(host, "-")[0])
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.Atoi(strings.Split(ports, "-")[0])
	if err != nil || p < 0 || p > 65535 {
		return netip.AddrPort{}, fmt.Errorf("bad port")
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

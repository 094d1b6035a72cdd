package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// evalMatch evaluates one match for a state. The probability is below 1 only
// for statistic matches, which the caller turns into two branches.
func (t *tracer) evalMatch(table string, r *Rule, m *Match, s *state) (ok bool, prob float64) {
	dst := s.pkt.Dst
	if table != "nat" && s.dnat.IsValid() {
		dst = s.dnat.Addr()
	}
	dport := s.pkt.DstPort
	if table != "nat" && s.dnat.IsValid() {
		dport = s.dnat.Port()
	}
	if table == "nat" && s.dnat.IsValid() {
		// After DNAT in PREROUTING/OUTPUT, POSTROUTING sees the new destination.
		dst, dport = s.dnat.Addr(), s.dnat.Port()
	}
	all := true
	for _, o := range m.Opts {
		res, known := t.evalOpt(m.Module, o, s, dst, dport)
		if !known {
			t.res.Unknown = append(t.res.Unknown, fmt.Sprintf("line %d: %s%s", r.Line, moduleLabel(m.Module), o.Name))
			return false, 0
		}
		if o.Neg {
			res.ok = !res.ok
		}
		if res.prob > 0 && res.prob < 1 {
			return true, res.prob
		}
		all = all && res.ok
	}
	return all, 1
}

type optResult struct {
	ok   bool
	prob float64
}

func moduleLabel(m string) string {
	if m == "" {
		return ""
	}
	return "-m " + m + " "
}

func yes(b bool) optResult { return optResult{ok: b} }

// evalOpt evaluates one option; known is false for options the tracer does
// not understand.
func (t *tracer) evalOpt(module string, o Option, s *state, dst netip.Addr, dport uint16) (res optResult, known bool) {
	val := ""
	if len(o.Values) > 0 {
		val = o.Values[0]
	}
	switch module {
	case "":
		switch o.Name {
		case "-s":
			return yes(prefixContains(val, s.pkt.Src)), true
		case "-d":
			return yes(prefixContains(val, dst)), true
		case "-p":
			return yes(strings.EqualFold(val, s.pkt.Protocol) || val == "all"), true
		case "-i", "-o":
			if o.Name == "-i" && s.pkt.InInterface != "" {
				return yes(interfaceMatches(val, s.pkt.InInterface)), true
			}
			t.assume(fmt.Sprintf("interface match %s %s%s assumed to match", o.Name, negPrefix(o), val))
			return yes(!o.Neg), true
		}
	case "tcp", "udp", "sctp":
		if module != s.pkt.Protocol {
			return yes(false), true
		}
		switch o.Name {
		case "--dport", "--destination-port":
			return yes(portIn(val, dport)), true
		case "--sport", "--source-port":
			if s.pkt.SrcPort == 0 {
				t.assume("source port match " + val + " assumed not to match (no --sport given)")
				return yes(o.Neg), true
			}
			return yes(portIn(val, s.pkt.SrcPort)), true
		case "--tcp-flags", "--syn":
			t.assume("TCP flags assumed to be those of a first SYN")
			return yes(!o.Neg), true
		}
	case "multiport":
		switch o.Name {
		case "--dports", "--destination-ports":
			return yes(portList(val, dport)), true
		case "--ports":
			return yes(portList(val, dport) || (s.pkt.SrcPort != 0 && portList(val, s.pkt.SrcPort))), true
		case "--sports", "--source-ports":
			return yes(s.pkt.SrcPort != 0 && portList(val, s.pkt.SrcPort)), true
		}
	case "comment":
		return yes(true), true
	case "nfacct":
		return yes(true), true
	case "addrtype":
		switch o.Name {
		case "--dst-type":
			return yes(t.addrType(val, dst)), true
		case "--src-type":
			return yes(t.addrType(val, s.pkt.Src)), true
		case "--limit-iface-in", "--limit-iface-out":
			return yes(true), true
		}
	case "statistic":
		switch o.Name {
		case "--mode":
			return yes(val == "random" || val == "nth"), true
		case "--probability":
			p, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return optResult{}, false
			}
			if o.Neg {
				p = 1 - p
			}
			// Negation is already folded into p; undo the caller's flip.
			return optResult{ok: !o.Neg, prob: p}, true
		case "--every", "--packet":
			t.assume("statistic nth mode: every packet assumed to match")
			return yes(!o.Neg), true
		}
	case "mark":
		if o.Name == "--mark" {
			v, mask, err := parseMark(val)
			if err != nil {
				return optResult{}, false
			}
			return yes(s.mark&mask == v), true
		}
	case "conntrack", "state":
		switch o.Name {
		case "--ctstate", "--state":
			states := map[string]bool{"NEW": true}
			if s.dnat.IsValid() {
				states["DNAT"] = true
			}
			for _, st := range strings.Split(val, ",") {
				if states[st] {
					return yes(true), true
				}
			}
			t.assume("conntrack state assumed NEW (first packet of a connection)")
			return yes(false), true
		case "--ctorigdst", "--ctorigdstport", "--ctstatus", "--ctdir":
			t.assume(fmt.Sprintf("conntrack %s %s assumed not to match", o.Name, val))
			return yes(o.Neg), true
		}
	case "recent":
		switch o.Name {
		case "--set":
			return yes(true), true
		case "--rcheck", "--update":
			t.assume("session affinity (recent " + o.Name + "): client assumed to have no recent entry")
			return yes(o.Neg), true
		case "--name", "--seconds", "--reap", "--hitcount", "--rsource", "--rdest", "--mask", "--rttl":
			return yes(!o.Neg), true
		}
	case "physdev":
		t.assume("physdev: packet assumed not to come through a bridge port")
		return yes(o.Neg), true
	case "set":
		t.assume("ipset match " + strings.Join(o.Values, " ") + " assumed not to match")
		return yes(o.Neg), true
	}
	return optResult{}, false
}

func (t *tracer) assume(s string) { t.res.Assumptions = append(t.res.Assumptions, s) }

func negPrefix(o Option) string {
	if o.Neg {
		return "! "
	}
	return ""
}

func (t *tracer) addrType(types string, a netip.Addr) bool {
	for _, ty := range strings.Split(types, ",") {
		switch ty {
		case "LOCAL":
			if t.isLocal(a) {
				return true
			}
		case "UNICAST":
			if !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return true
			}
		case "MULTICAST":
			if a.IsMulticast() {
				return true
			}
		case "BROADCAST":
			if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return true
			}
		}
	}
	return false
}

func prefixContains(s string, a netip.Addr) bool {
	if !strings.Contains(s, "/") {
		b, err := netip.ParseAddr(s)
		return err == nil && b == a.Unmap()
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return false
	}
	return p.Contains(a.Unmap())
}

func portIn(spec string, port uint16) bool {
	lo, hi, ok := strings.Cut(spec, ":")
	l, err := strconv.Atoi(lo)
	if err != nil {
		if lo != "" {
			return false
		}
		l = 0
	}
	h := l
	if ok {
		if hi == "" {
			h = 65535
		} else if h, err = strconv.Atoi(hi); err != nil {
			return false
		}
	}
	return int(port) >= l && int(port) <= h
}

func portList(spec string, port uint16) bool {
	for _, p := range strings.Split(spec, ",") {
		if portIn(p, port) {
			return true
		}
	}
	return false
}

// parseMark parses "0x4000" or "0x4000/0x4000".
func parseMark(s string) (val, mask uint32, err error) {
	v, m, hasMask := strings.Cut(s, "/")
	vv, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark %q", s)
	}
	mask = 0xffffffff
	if hasMask {
		mm, err := strconv.ParseUint(m, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("bad mark %q", s)
		}
		mask = uint32(mm)
	}
	return uint32(vv), mask, nil
}

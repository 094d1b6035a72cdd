package nftables

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/dataplane"

	"github.com/google/nftables/expr"
)

// Rule is one rule as a list of statements. Each statement knows both its
// nft text (what `nft list` prints, for goldens, the tracer and operators)
// and its netlink expressions (what the apply layer sends); keeping the two
// in one place is what keeps them in step.
type Rule struct {
	Stmts   []stmt
	Comment string
}

// Text is the rule as nft prints it, for an ip (v6 false) or ip6 table.
func (r Rule) Text(v6 bool) string {
	var b strings.Builder
	for i, s := range r.Stmts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.text(v6))
	}
	if r.Comment != "" {
		b.WriteString(` comment "` + r.Comment + `"`)
	}
	return b.String()
}

func rule(s ...stmt) Rule { return Rule{Stmts: s} }

// stmt is one match or action of a rule.
type stmt interface {
	text(v6 bool) string
	exprs(v6 bool) []expr.Any
}

func ipWord(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}

func dir(src bool) string {
	if src {
		return "saddr"
	}
	return "daddr"
}

// matchAddr: "ip saddr 10.0.0.1", "ip daddr != 10.0.0.0/8".
type matchAddr struct {
	src bool
	p   netip.Prefix
	neg bool
}

func (m matchAddr) text(v6 bool) string {
	s := ipWord(v6) + " " + dir(m.src) + " "
	if m.neg {
		s += "!= "
	}
	if m.p.IsSingleIP() {
		return s + m.p.Addr().String()
	}
	return s + m.p.String()
}

func addrIs(src bool, a netip.Addr) matchAddr {
	return matchAddr{src: src, p: netip.PrefixFrom(a, a.BitLen())}
}

// matchPort: "tcp dport 80" (protocol and port).
type matchPort struct {
	proto string
	port  uint16
}

func (m matchPort) text(bool) string {
	return m.proto + " dport " + strconv.Itoa(int(m.port))
}

// matchL4: "meta l4proto tcp".
type matchL4 struct{ proto string }

func (m matchL4) text(bool) string { return "meta l4proto " + m.proto }

// matchFibLocal: "fib saddr type local" (or daddr).
type matchFibLocal struct{ src bool }

func (m matchFibLocal) text(bool) string { return "fib " + dir(m.src) + " type local" }

// matchCtNew: "ct state new".
type matchCtNew struct{}

func (matchCtNew) text(bool) string { return "ct state new" }

// matchAddrSet: "ip daddr @set".
type matchAddrSet struct {
	src bool
	set string
}

func (m matchAddrSet) text(v6 bool) string { return ipWord(v6) + " " + dir(m.src) + " @" + m.set }

// matchIifname: "iifname [!=] "name"" (prefix: "name*").
type matchIifname struct {
	name        string
	prefix, neg bool
}

func (m matchIifname) text(bool) string {
	s := "iifname "
	if m.neg {
		s += "!= "
	}
	if m.prefix {
		return s + `"` + m.name + `*"`
	}
	return s + `"` + m.name + `"`
}

// local matches pod traffic (or, negated, all other traffic) as the
// local-traffic detector says: by source or by input interface.
func local(pods dataplane.LocalTraffic, neg bool) stmt {
	if pods.Interface != "" {
		return matchIifname{name: pods.Interface, prefix: pods.Prefix, neg: neg}
	}
	return matchAddr{src: true, p: pods.CIDR, neg: neg}
}

// matchMarkClear: the masquerade bit is not set.
type matchMarkClear struct{ mark uint32 }

func (m matchMarkClear) text(bool) string {
	return "meta mark & " + hex32(m.mark) + " == " + hex32(0)
}

type verdictKind string

const (
	vJump   verdictKind = "jump"
	vGoto   verdictKind = "goto"
	vReturn verdictKind = "return"
	vDrop   verdictKind = "drop"
)

// verdict: "jump CHAIN", "goto CHAIN", "return", "drop".
type verdict struct {
	kind  verdictKind
	chain string
}

func (v verdict) text(bool) string {
	if v.chain == "" {
		return string(v.kind)
	}
	return string(v.kind) + " " + v.chain
}

func jump(c string) verdict      { return verdict{vJump, c} }
func goTo(c string) verdict      { return verdict{vGoto, c} }
func drop() verdict              { return verdict{kind: vDrop} }
func returnV() verdict           { return verdict{kind: vReturn} }
func (v verdict) String() string { return v.text(false) }

// reject: ICMP port unreachable.
type reject struct{}

// counterRef counts in a named counter: "counter name "x"".
type counterRef struct{ name string }

func (c counterRef) text(bool) string { return `counter name "` + c.name + `"` }

func (reject) text(bool) string { return "reject" }

// numgenPick matches one packet in mod: "numgen random mod 3 0". A ladder
// of them (mod N, N-1, ... 2, then an unconditional rung) picks each of N
// endpoints with probability 1/N, as iptables' statistic rules do (used for
// session affinity, whose endpoint chains need verdicts). Upstream uses one
// anonymous verdict map instead; the kernel's cost of creating maps grows
// with how many the table has, which makes large syncs slow.
type numgenPick struct{ mod int }

func (n numgenPick) text(bool) string { return "numgen random mod " + strconv.Itoa(n.mod) + " 0" }

// dnat: "dnat to 10.0.0.1:80" (after a matchL4).
type dnat struct {
	addr netip.Addr
	port uint16
}

func (d dnat) text(bool) string {
	return "dnat to " + netip.AddrPortFrom(d.addr, d.port).String()
}

// matchCtDNAT: "ct status dnat".
type matchCtDNAT struct{}

func (matchCtDNAT) text(bool) string { return "ct status dnat" }

// matchSet: "ip saddr . ip daddr @set", a lookup of the concatenated
// fields.
type matchSet struct {
	keys []keyField
	set  string
}

func (m matchSet) text(v6 bool) string { return keysText(m.keys, v6) + " @" + m.set }

// dnatMap: "dnat ip to numgen random mod 16384 offset N map @endpoints"
// (after a matchL4): a random number in range id of the endpoints map, which
// gives the address and port.
type dnatMap struct{ id uint32 }

func (d dnatMap) offset() uint32 { return d.id << rangeBits }

func (d dnatMap) text(v6 bool) string {
	return "dnat " + ipWord(v6) + " to numgen random mod " + strconv.Itoa(slotsPerRange) + " offset " +
		strconv.FormatUint(uint64(d.offset()), 10) + " map @" + endpointMap(d.id)
}

// markOr sets the masquerade bit; markXor flips it back.
type markOr struct{ mark uint32 }

func (m markOr) text(bool) string { return "meta mark set meta mark | " + hex32(m.mark) }

type markXor struct{ mark uint32 }

func (m markXor) text(bool) string { return "meta mark set meta mark ^ " + hex32(m.mark) }

// masq: "masquerade fully-random".
type masq struct{}

func (masq) text(bool) string { return "masquerade fully-random" }

// Fields of a concatenated map key.
type keyField string

const (
	fSaddr   keyField = "saddr"
	fDaddr   keyField = "daddr"
	fL4Proto keyField = "l4proto"
	fDport   keyField = "dport"
)

// keysText is a concatenation of fields: "ip daddr . meta l4proto . th dport".
func keysText(keys []keyField, v6 bool) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		switch k {
		case fSaddr, fDaddr:
			parts[i] = ipWord(v6) + " " + string(k)
		case fL4Proto:
			parts[i] = "meta l4proto"
		case fDport:
			parts[i] = "th dport"
		}
	}
	return strings.Join(parts, " . ")
}

// vmapLookup: "ip daddr . meta l4proto . th dport vmap @service-ips".
type vmapLookup struct {
	keys []keyField
	m    string
}

func (v vmapLookup) text(v6 bool) string { return keysText(v.keys, v6) + " vmap @" + v.m }

// updateSet records the client in a session-affinity set.
type updateSet struct{ set string }

func (u updateSet) text(v6 bool) string { return "update @" + u.set + " { " + ipWord(v6) + " saddr }" }

func hex32(v uint32) string {
	s := strconv.FormatUint(uint64(v), 16)
	return "0x" + strings.Repeat("0", 8-len(s)) + s
}

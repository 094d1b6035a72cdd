package iptables

import (
	"net/netip"

	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/dataplane"
)

// lines accumulates iptables-restore lines by appending to one byte slice:
// at 10k Services a render writes about 700k rules, so building them word by
// word into strings (or []string argument lists) would dominate its cost.
type lines []byte

// rule starts an "-A chain" line.
func (l *lines) rule(chain string) *lines {
	*l = append(append(*l, "-A "...), chain...)
	return l
}

// w appends words, each after a space.
func (l *lines) w(words ...string) *lines {
	for _, s := range words {
		*l = append(append(*l, ' '), s...)
	}
	return l
}

// comment appends a comment match whose text is the concatenation of parts,
// quoted when it has a space, as iptables-save prints it.
func (l *lines) comment(parts ...string) *lines {
	*l = append(*l, " -m comment --comment "...)
	quoted := false
	for _, p := range parts {
		quoted = quoted || strings.IndexByte(p, ' ') >= 0
	}
	if quoted {
		*l = append(*l, '"')
	}
	for _, p := range parts {
		*l = append(*l, p...)
	}
	if quoted {
		*l = append(*l, '"')
	}
	return l
}

func (l *lines) addr(a netip.Addr) *lines {
	*l = a.AppendTo(append(*l, ' '))
	return l
}

func (l *lines) prefix(p netip.Prefix) *lines {
	*l = p.AppendTo(append(*l, ' '))
	return l
}

// local matches pod traffic (or, negated, all other traffic) as the
// local-traffic detector says: by source or by input interface.
func (l *lines) local(pods dataplane.LocalTraffic, neg bool) *lines {
	if neg {
		l.w("!")
	}
	if pods.Interface != "" {
		name := pods.Interface
		if pods.Prefix {
			name += "+"
		}
		return l.w("-i", name)
	}
	return l.w("-s").prefix(pods.CIDR)
}

func (l *lines) endpoint(ep netip.AddrPort) *lines {
	*l = ep.AppendTo(append(*l, ' '))
	return l
}

func (l *lines) num(n int32) *lines {
	*l = strconv.AppendInt(append(*l, ' '), int64(n), 10)
	return l
}

func (l *lines) end() { *l = append(*l, '\n') }

// reset empties l for reuse, with room for at least n bytes.
func (l *lines) reset(n int) {
	if cap(*l) < n {
		*l = make([]byte, 0, n)
	}
	*l = (*l)[:0]
}

// quote quotes a comment only when it needs it, as iptables-save prints it.
func quote(s string) string {
	if strings.IndexByte(s, ' ') >= 0 {
		return `"` + s + `"`
	}
	return s
}

package nftables

import (
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// List prints the ruleset as `nft list table` does, which is what operators
// read and what the packet tracer parses.
func (rs *Ruleset) List() string {
	var b strings.Builder
	b.WriteString("table " + rs.family() + " " + TableName + " {\n")
	elements := rs.elementsBySet()
	for _, s := range rs.allSets() {
		kind := "set"
		if s.IsMap {
			kind = "map"
		}
		if s.Endpoints {
			b.WriteString("\t" + kind + " " + s.Name + " {\n\t\ttypeof " + endpointsTypeof(rs.IPv6) + "\n")
		} else {
			b.WriteString("\t" + kind + " " + s.Name + " {\n\t\ttype " + setType(s, rs.IPv6) + "\n")
		}
		if s.Endpoints {
			b.WriteString("\t\tflags interval\n")
		}
		if s.Timeout > 0 {
			b.WriteString("\t\tflags dynamic,timeout\n\t\ttimeout " + strconv.Itoa(int(s.Timeout)) + "s\n")
		}
		if s.Comment != "" {
			b.WriteString("\t\tcomment \"" + s.Comment + "\"\n")
		}
		if els := elements[s.Name]; len(els) > 0 {
			b.WriteString("\t\telements = { ")
			for i, e := range els {
				if i > 0 {
					b.WriteString(",\n\t\t\t     ")
				}
				b.WriteString(e.text(s))
			}
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n\n")
	}
	for _, c := range rs.Counters {
		b.WriteString("\tcounter " + c + " {\n\t\tpackets 0 bytes 0\n\t}\n\n")
	}
	for _, c := range rs.Base {
		b.WriteString("\tchain " + c.Name + " {\n\t\ttype " + c.Type + " hook " + c.Hook + " priority " + strconv.Itoa(c.Priority) + "; policy accept;\n")
		rs.writeRules(&b, c.Chain)
		b.WriteString("\t}\n\n")
	}
	for _, c := range rs.chains() {
		b.WriteString("\tchain " + c.Name + " {\n")
		rs.writeRules(&b, c)
		b.WriteString("\t}\n\n")
	}
	return strings.TrimSuffix(b.String(), "\n") + "}\n"
}

func (rs *Ruleset) writeRules(b *strings.Builder, c Chain) {
	for _, r := range c.Rules {
		b.WriteString("\t\t" + r.Text(rs.IPv6) + "\n")
	}
}

func (rs *Ruleset) family() string { return ipWord(rs.IPv6) }

// allSets are the fixed sets and maps, then every affinity set.
func (rs *Ruleset) allSets() []Set {
	out := append([]Set{}, rs.Sets...)
	for _, s := range rs.Services {
		out = append(out, s.AffinitySets...)
	}
	return out
}

// chains are the fixed regular chains, then every Service's.
func (rs *Ruleset) chains() []Chain {
	out := append([]Chain{}, rs.Fixed...)
	for _, s := range rs.Services {
		out = append(out, s.Chains...)
	}
	return out
}

// elementsBySet gathers the node's and every Service's elements per set.
func (rs *Ruleset) elementsBySet() map[string][]Element {
	m := map[string][]Element{}
	for _, s := range rs.Sets {
		m[s.Name] = append(m[s.Name], s.Elements...)
	}
	for _, svc := range rs.Services {
		for _, e := range svc.Elements {
			m[e.Set] = append(m[e.Set], e.Element)
		}
	}
	return m
}

// setType is a set's "type" line: its key type, and a map's value type.
func setType(s Set, v6 bool) string {
	switch {
	case s.Endpoints:
		return keyType(s, v6) + " : " + addrType(v6) + " . inet_service"
	case s.IsMap:
		return keyType(s, v6) + " : verdict"
	}
	return keyType(s, v6)
}

// keyType is the nft type of a set's key.
func keyType(s Set, v6 bool) string {
	parts := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		switch k {
		case "addr":
			parts[i] = addrType(v6)
		case "proto":
			parts[i] = "inet_proto"
		case "port":
			parts[i] = "inet_service"
		case "slot":
			// numgen values: plain 32-bit numbers (declared by typeof,
			// see endpointsTypeof).
			parts[i] = "integer"
		}
	}
	return strings.Join(parts, " . ")
}

// keyParts are the element's key fields as nft prints them.
func (e Element) keyParts(s Set) []string {
	parts := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		switch k {
		case "addr":
			parts[i] = e.Addr.String()
		case "proto":
			parts[i] = e.Proto
		case "port":
			parts[i] = strconv.Itoa(int(e.Port))
		case "slot":
			parts[i] = slotRange(e.Slots[0], e.Slots[1])
		}
	}
	return parts
}

// slotRange prints a range of numgen values as nft prints integers: a
// value, or first-last.
func slotRange(first, last uint32) string {
	if first == last {
		return strconv.FormatUint(uint64(first), 10)
	}
	return strconv.FormatUint(uint64(first), 10) + "-" + strconv.FormatUint(uint64(last), 10)
}

// value is a map element's value as nft prints it.
func (e Element) value(s Set) string {
	if s.Endpoints {
		return e.Target.Addr().String() + " . " + strconv.Itoa(int(e.Target.Port()))
	}
	return e.Verdict.String()
}

func (e Element) text(s Set) string {
	t := strings.Join(e.keyParts(s), " . ")
	if s.IsMap {
		t += " : " + e.value(s)
	}
	if e.Comment != "" {
		t += ` comment "` + e.Comment + `"`
	}
	return t
}

// Transaction is the ruleset as one knftables transaction that creates the
// table from nothing: what the golden tests dump through knftables.NewFake.
func (rs *Ruleset) Transaction(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{})
	sets := map[string]Set{}
	for _, s := range rs.allSets() {
		sets[s.Name] = s
		tx.Add(knftSet(s, rs.IPv6))
	}
	for _, c := range rs.Counters {
		tx.Add(&knftables.Counter{Name: c})
	}
	for _, c := range rs.Base {
		tx.Add(knftBaseChain(c))
	}
	all := rs.chains()
	for _, c := range all {
		tx.Add(&knftables.Chain{Name: c.Name})
	}
	for _, c := range append(baseChains(rs.Base), all...) {
		for _, r := range c.Rules {
			tx.Add(knftRule(c.Name, r, rs.IPv6))
		}
	}
	for name, els := range rs.elementsBySet() {
		for _, e := range els {
			tx.Add(knftElement(sets[name], e, true))
		}
	}
}

// knftSet is a set or map as knftables declares it.
func knftSet(s Set, v6 bool) knftables.Object {
	var comment *string
	if s.Comment != "" {
		comment = knftables.PtrTo(s.Comment)
	}
	if s.IsMap {
		m := &knftables.Map{Name: s.Name, Type: setType(s, v6), Comment: comment}
		if s.Endpoints {
			m.Type, m.TypeOf = "", endpointsTypeof(v6)
			m.Flags = []knftables.SetFlag{knftables.IntervalFlag}
		}
		return m
	}
	set := &knftables.Set{Name: s.Name, Type: keyType(s, v6), Comment: comment}
	if s.Timeout > 0 {
		set.Flags = []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}
		set.Timeout = knftables.PtrTo(timeoutDuration(s.Timeout))
	}
	return set
}

func knftBaseChain(c BaseChain) *knftables.Chain {
	return &knftables.Chain{Name: c.Name, Type: knftables.PtrTo(knftables.BaseChainType(c.Type)),
		Hook: knftables.PtrTo(knftables.BaseChainHook(c.Hook)), Priority: knftables.PtrTo(knftables.BaseChainPriority(strconv.Itoa(c.Priority)))}
}

// knftRule is a rule of chain; knftables carries the comment apart.
func knftRule(chain string, r Rule, v6 bool) *knftables.Rule {
	kr := &knftables.Rule{Chain: chain, Rule: Rule{Stmts: r.Stmts}.Text(v6)}
	if r.Comment != "" {
		kr.Comment = knftables.PtrTo(r.Comment)
	}
	return kr
}

// knftElement is an element of set s: with its value and comment to add
// it (whole), by its key alone to delete it.
func knftElement(s Set, e Element, whole bool) *knftables.Element {
	ke := &knftables.Element{Key: e.keyParts(s)}
	if s.IsMap {
		ke.Map = s.Name
		if whole {
			ke.Value = []string{e.value(s)}
		}
	} else {
		ke.Set = s.Name
	}
	if whole && e.Comment != "" {
		ke.Comment = knftables.PtrTo(e.Comment)
	}
	return ke
}

func baseChains(bs []BaseChain) []Chain {
	out := make([]Chain, len(bs))
	for i, b := range bs {
		out[i] = b.Chain
	}
	return out
}

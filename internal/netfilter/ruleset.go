// Package netfilter reads netfilter rulesets as text (iptables-save and
// iptables-restore input, and nft list output of either proxy's nftables
// table) and follows packets through them. It never touches
// the kernel: callers hand it text, which makes it usable on a live node, on
// a dump from another node, and on svcproxy's own rendered output alike.
package netfilter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Ruleset is a parsed iptables-save dump: tables in the order they appeared.
type Ruleset struct {
	Tables []*Table
}

// Table is one "*name ... COMMIT" section.
type Table struct {
	Name   string
	Chains []*Chain
	byName map[string]*Chain
}

// Chain is a built-in or user-defined chain with its rules in order.
type Chain struct {
	Name string
	// Policy is ACCEPT/DROP for built-in chains and "-" for user chains.
	Policy string
	Rules  []*Rule
}

// Rule is one "-A CHAIN ..." line, parsed.
type Rule struct {
	Chain string
	// Text is the rule as written, without the leading "-A CHAIN".
	Text string
	// Line is the 1-based line number in the parsed input.
	Line    int
	Matches []Match
	// Target is the -j (or -g) target; empty for a rule with no target,
	// which only counts packets.
	Target     string
	Goto       bool
	TargetOpts []Option
}

// Match is one match module with its options. Basic matches (-s, -d, -p, -i,
// -o) have Module "".
type Match struct {
	Module string
	Opts   []Option
}

// Option is "[!] --name value..." inside a match or target.
type Option struct {
	Name   string
	Neg    bool
	Values []string
}

// Table returns the named table, or nil.
func (rs *Ruleset) Table(name string) *Table {
	for _, t := range rs.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Chain returns the named chain, or nil.
func (t *Table) Chain(name string) *Chain {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

// Comment returns the rule's "-m comment --comment" text, or "".
func (r *Rule) Comment() string {
	for _, m := range r.Matches {
		if m.Module == "comment" {
			if o := m.opt("--comment"); o != nil && len(o.Values) > 0 {
				return o.Values[0]
			}
		}
	}
	return ""
}

// TargetOpt returns the first value of a target option such as
// "--to-destination", or "".
func (r *Rule) TargetOpt(name string) string {
	for _, o := range r.TargetOpts {
		if o.Name == name && len(o.Values) > 0 {
			return o.Values[0]
		}
	}
	return ""
}

func (m *Match) opt(name string) *Option {
	for i := range m.Opts {
		if m.Opts[i].Name == name {
			return &m.Opts[i]
		}
	}
	return nil
}

// ErrNoTables is returned for input without any "*table" section: an empty
// iptables-save (a kernel with no rules), or something that is not a dump.
var ErrNoTables = errors.New(`not an iptables-save dump: no "*table" line found`)

// ParseError names the line of the dump that could not be read.
type ParseError struct {
	Line int
	Text string
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("line %d: %s: %q", e.Line, e.Msg, e.Text)
}

// ParseIPTables parses iptables-save output (or iptables-restore input).
// Lines that add rules to chains never declared are accepted, as
// iptables-restore --noflush would for chains that already exist.
func ParseIPTables(text string) (*Ruleset, error) {
	p := NewIPTablesParser(nil)
	for b := []byte(text); len(b) > 0; {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\n"))
		if err := p.Line(line); err != nil {
			return nil, err
		}
	}
	return p.Ruleset()
}

// IPTablesParser parses an iptables-save dump fed to it line by line, so
// that a large dump (60 MB at 10k Services) need not be in memory whole.
type IPTablesParser struct {
	// rulesOf says whose rules to keep (nil: every chain's); the others'
	// chains are kept with their names only.
	rulesOf func(chain string) bool
	rs      *Ruleset
	cur     *Table
	sawAny  bool
	lineNo  int
}

// NewIPTablesParser parses a dump, keeping the rules of the chains rulesOf
// accepts (every chain's when nil).
func NewIPTablesParser(rulesOf func(chain string) bool) *IPTablesParser {
	return &IPTablesParser{rulesOf: rulesOf, rs: &Ruleset{}}
}

// Line parses the next line of the dump.
func (p *IPTablesParser) Line(raw []byte) error {
	p.lineNo++
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '#' {
		return nil
	}
	if p.rulesOf != nil && p.cur != nil && bytes.HasPrefix(raw, []byte("-A ")) {
		// The chain was declared by its ":" line: a rule not kept is not
		// even read.
		chain, _, _ := bytes.Cut(raw[3:], []byte(" "))
		if !p.rulesOf(string(chain)) {
			return nil
		}
	}
	line := string(raw)
	perr := func(msg string) error { return &ParseError{Line: p.lineNo, Text: line, Msg: msg} }
	cur := p.cur
	switch {
	case line[0] == '*':
		if cur != nil {
			return perr("table starts before the previous one was committed")
		}
		name := line[1:]
		if name == "" || strings.ContainsAny(name, " \t") {
			return perr("bad table name")
		}
		p.cur = p.rs.Table(name)
		if p.cur == nil {
			p.cur = &Table{Name: name, byName: map[string]*Chain{}}
			p.rs.Tables = append(p.rs.Tables, p.cur)
		}
		p.sawAny = true
	case line == "COMMIT":
		if cur == nil {
			return perr("COMMIT outside a table")
		}
		p.cur = nil
	case cur == nil:
		return perr("not an iptables-save dump (expected \"*table\")")
	case line[0] == ':':
		f := strings.Fields(line[1:])
		if len(f) < 2 {
			return perr("bad chain line")
		}
		c := cur.ensureChain(f[0])
		c.Policy = f[1]
	default:
		args, err := splitArgs(line)
		if err != nil {
			return perr(err.Error())
		}
		switch args[0] {
		case "-A", "--append", "-I", "--insert":
			if len(args) < 2 {
				return perr("rule without a chain")
			}
			rest := args[2:]
			if (args[0] == "-I" || args[0] == "--insert") && len(rest) > 0 && isNumber(rest[0]) {
				rest = rest[1:]
			}
			r, err := parseRule(args[1], rest)
			if err != nil {
				return perr(err.Error())
			}
			r.Line = p.lineNo
			r.Text = joinArgs(rest)
			c := cur.ensureChain(args[1])
			if args[0] == "-A" || args[0] == "--append" {
				c.Rules = append(c.Rules, r)
			} else {
				c.Rules = append([]*Rule{r}, c.Rules...)
			}
		case "-X", "--delete-chain", "-D", "--delete", "-F", "--flush":
			// Changes relative to the kernel's state; they do not add rules.
		default:
			return perr("unknown command " + args[0])
		}
	}
	return nil
}

// Ruleset is what the dump holds, once all of it was fed.
func (p *IPTablesParser) Ruleset() (*Ruleset, error) {
	if p.cur != nil {
		return nil, fmt.Errorf("table %s is not committed (missing COMMIT)", p.cur.Name)
	}
	if !p.sawAny {
		return nil, ErrNoTables
	}
	return p.rs, nil
}

func (t *Table) ensureChain(name string) *Chain {
	if c, ok := t.byName[name]; ok {
		return c
	}
	c := &Chain{Name: name, Policy: "-"}
	t.Chains = append(t.Chains, c)
	t.byName[name] = c
	return c
}

// parseRule turns the arguments of one rule into matches and a target.
func parseRule(chain string, args []string) (*Rule, error) {
	r := &Rule{Chain: chain}
	var cur *Match   // the match module options currently go to
	var proto string // from -p, for options given without "-m tcp"
	neg := false
	inTarget := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			neg = true
			continue
		}
		values := func() []string {
			var v []string
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && args[i+1] != "!" {
				i++
				v = append(v, args[i])
			}
			// Old syntax puts the "!" after the option name.
			if len(v) == 0 && i+2 < len(args) && args[i+1] == "!" {
				neg = true
				i += 2
				v = append(v, args[i])
			}
			return v
		}
		switch a {
		case "-s", "--source", "-d", "--destination", "-p", "--protocol", "-i", "--in-interface", "-o", "--out-interface":
			name := shortBasic[a]
			v := values()
			if len(v) != 1 {
				return nil, fmt.Errorf("%s needs one value", a)
			}
			if name == "-p" {
				proto = strings.ToLower(v[0])
			}
			r.Matches = append(r.Matches, Match{Opts: []Option{{Name: name, Neg: neg, Values: v}}})
			cur = nil
		case "-m", "--match":
			if i+1 >= len(args) {
				return nil, fmt.Errorf("-m needs a module name")
			}
			i++
			r.Matches = append(r.Matches, Match{Module: args[i]})
			cur = &r.Matches[len(r.Matches)-1]
		case "-j", "--jump", "-g", "--goto":
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s needs a target", a)
			}
			i++
			r.Target = args[i]
			r.Goto = a == "-g" || a == "--goto"
			inTarget = true
			cur = nil
		case "-c", "--set-counters":
			i += 2
		default:
			if !strings.HasPrefix(a, "-") {
				return nil, fmt.Errorf("unexpected argument %q", a)
			}
			o := Option{Name: a, Neg: neg}
			o.Values = values()
			o.Neg = neg
			switch {
			case inTarget:
				r.TargetOpts = append(r.TargetOpts, o)
			case cur != nil:
				cur.Opts = append(cur.Opts, o)
			case proto != "":
				// "-p tcp --dport 80" loads the protocol's match implicitly.
				r.Matches = append(r.Matches, Match{Module: proto, Opts: []Option{o}})
				cur = &r.Matches[len(r.Matches)-1]
			default:
				return nil, fmt.Errorf("option %s outside a match or target", a)
			}
		}
		neg = false
		// Pointers into r.Matches are invalidated by append; re-point.
		if cur != nil {
			cur = &r.Matches[len(r.Matches)-1]
		}
	}
	return r, nil
}

var shortBasic = map[string]string{
	"-s": "-s", "--source": "-s", "-d": "-d", "--destination": "-d",
	"-p": "-p", "--protocol": "-p", "-i": "-i", "--in-interface": "-i",
	"-o": "-o", "--out-interface": "-o",
}

// splitArgs splits a line the way iptables-restore does: on white space,
// with double quotes grouping and backslash escaping inside them.
func splitArgs(line string) ([]string, error) {
	var args []string
	var b strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			i++
			b.WriteByte(line[i])
		case c == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (c == ' ' || c == '\t'):
			if have {
				args = append(args, b.String())
				b.Reset()
				have = false
			}
		default:
			b.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote")
	}
	if have {
		args = append(args, b.String())
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("empty line")
	}
	return args, nil
}

// joinArgs is the inverse of splitArgs, quoting only where needed, as
// iptables-save does.
func joinArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(a))
	}
	return b.String()
}

// Quote returns s as one iptables-restore argument.
func Quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ChainNames returns the names of the table's chains in dump order; nil for a
// nil table.
func (t *Table) ChainNames() []string {
	if t == nil {
		return nil
	}
	names := make([]string, len(t.Chains))
	for i, c := range t.Chains {
		names[i] = c.Name
	}
	return names
}

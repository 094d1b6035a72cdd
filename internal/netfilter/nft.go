package netfilter

import (
	"fmt"
	"strconv"
	"strings"
)

// NftRuleset is parsed `nft list ruleset` output.
type NftRuleset struct {
	Tables []*NftTable
}

// NftTable is one "table FAMILY NAME { ... }".
type NftTable struct {
	Family, Name string
	Chains       []*NftChain
	chains       map[string]*NftChain
	Sets         map[string]*NftSet
}

// NftSet is a set or map with its elements.
type NftSet struct {
	Name     string
	IsMap    bool
	Elements []NftElement
}

// NftElement is one element; Key has one part per concatenated field.
// Verdict is set for verdict maps ("goto CHAIN").
type NftElement struct {
	Key     []string
	Verdict []string
	// Comment is the element's comment, unquoted.
	Comment string
}

// NftChain is a chain; base chains have a hook.
type NftChain struct {
	Name     string
	Type     string // filter, nat, route
	Hook     string // prerouting, input, forward, output, postrouting
	Priority int
	Policy   string
	Rules    []*NftRule
}

// NftRule is one rule line.
type NftRule struct {
	Text   string
	Line   int
	tokens []string
}

// Chain returns the named chain, or nil.
func (t *NftTable) Chain(name string) *NftChain { return t.chains[name] }

// LooksLikeNft reports whether text is nft list ruleset output.
func LooksLikeNft(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.HasPrefix(line, "table ")
	}
	return false
}

// ParseNft parses `nft list ruleset` output.
func ParseNft(text string) (*NftRuleset, error) {
	rs := &NftRuleset{}
	lines := strings.Split(text, "\n")
	var table *NftTable
	var chain *NftChain
	var set *NftSet
	// inObject is set inside a stateful object's block (a named counter):
	// what it holds does not steer packets.
	inObject := false
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		perr := func(msg string) error { return &ParseError{Line: lineNo, Text: line, Msg: msg} }
		switch {
		case table == nil:
			f := strings.Fields(line)
			if len(f) != 4 || f[0] != "table" || f[3] != "{" {
				return nil, perr("not an nft ruleset (expected \"table FAMILY NAME {\")")
			}
			table = &NftTable{Family: f[1], Name: f[2], chains: map[string]*NftChain{}, Sets: map[string]*NftSet{}}
			rs.Tables = append(rs.Tables, table)
		case line == "}":
			switch {
			case chain != nil:
				chain = nil
			case set != nil:
				set = nil
			case inObject:
				inObject = false
			default:
				table = nil
			}
		case inObject:
			continue
		case chain == nil && set == nil:
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "chain" && f[2] == "{":
				chain = &NftChain{Name: f[1], Policy: "accept"}
				table.Chains = append(table.Chains, chain)
				table.chains[chain.Name] = chain
			case len(f) == 3 && (f[0] == "set" || f[0] == "map") && f[2] == "{":
				set = &NftSet{Name: f[1], IsMap: f[0] == "map"}
				table.Sets[set.Name] = set
			case len(f) == 3 && (f[0] == "counter" || f[0] == "quota" || f[0] == "limit") && f[2] == "{":
				inObject = true
			case len(f) >= 1 && (f[0] == "comment" || f[0] == "flags"):
			default:
				return nil, perr("unexpected line in table " + table.Name)
			}
		case set != nil:
			if !strings.HasPrefix(line, "elements = {") {
				continue // type, flags, comment, size, timeout...
			}
			// Elements may span lines until the braces close.
			body := line
			for strings.Count(body, "{") > strings.Count(body, "}") {
				i++
				if i >= len(lines) {
					return nil, perr("unterminated elements")
				}
				body += " " + strings.TrimSpace(lines[i])
			}
			elems, err := parseElements(strings.TrimPrefix(body, "elements = "), set.IsMap)
			if err != nil {
				return nil, perr(err.Error())
			}
			set.Elements = append(set.Elements, elems...)
		default: // in a chain
			if strings.HasPrefix(line, "type ") && strings.Contains(line, " hook ") {
				if err := parseBaseChain(chain, line); err != nil {
					return nil, perr(err.Error())
				}
				continue
			}
			if strings.HasPrefix(line, "comment ") && len(chain.Rules) == 0 {
				continue // the chain's own comment
			}
			toks, err := nftTokens(line)
			if err != nil {
				return nil, perr(err.Error())
			}
			chain.Rules = append(chain.Rules, &NftRule{Text: line, Line: lineNo, tokens: toks})
		}
	}
	if table != nil {
		return nil, fmt.Errorf("table %s %s is not closed (missing \"}\")", table.Family, table.Name)
	}
	if len(rs.Tables) == 0 {
		return nil, fmt.Errorf("not an nft ruleset: no table found")
	}
	return rs, nil
}

var priorityNames = map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}

// parseBaseChain reads "type nat hook prerouting priority dstnat - 10; policy accept;".
func parseBaseChain(c *NftChain, line string) error {
	for _, part := range strings.Split(line, ";") {
		f := strings.Fields(part)
		switch {
		case len(f) >= 6 && f[0] == "type" && f[2] == "hook" && f[4] == "priority":
			c.Type, c.Hook = f[1], f[3]
			p, err := priority(f[5:])
			if err != nil {
				return err
			}
			c.Priority = p
		case len(f) == 2 && f[0] == "policy":
			c.Policy = f[1]
		case len(f) == 0:
		default:
			return fmt.Errorf("unknown chain setting %q", strings.TrimSpace(part))
		}
	}
	return nil
}

func priority(f []string) (int, error) {
	base, ok := priorityNames[f[0]]
	if !ok {
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, fmt.Errorf("bad priority %q", strings.Join(f, " "))
		}
		base = n
	}
	if len(f) == 3 {
		n, err := strconv.Atoi(f[2])
		if err != nil || (f[1] != "+" && f[1] != "-") {
			return 0, fmt.Errorf("bad priority %q", strings.Join(f, " "))
		}
		if f[1] == "-" {
			n = -n
		}
		base += n
	}
	return base, nil
}

// parseElements reads "{ a . b : goto X, c . d : goto Y }".
func parseElements(body string, isMap bool) ([]NftElement, error) {
	toks, err := nftTokens(body)
	if err != nil {
		return nil, err
	}
	if len(toks) < 2 || toks[0] != "{" || toks[len(toks)-1] != "}" {
		return nil, fmt.Errorf("elements must be enclosed in braces")
	}
	var out []NftElement
	var cur NftElement
	inVerdict := false
	flush := func() {
		if len(cur.Key) > 0 {
			out = append(out, cur)
		}
		cur, inVerdict = NftElement{}, false
	}
	for i := 1; i < len(toks)-1; i++ {
		t := toks[i]
		switch {
		case t == ",":
			flush()
		case t == "comment" && i+1 < len(toks)-1:
			i++
			cur.Comment = strings.Trim(toks[i], `"`)
		case t == ":" && isMap:
			inVerdict = true
		case t == ".":
		case inVerdict:
			cur.Verdict = append(cur.Verdict, t)
		default:
			cur.Key = append(cur.Key, t)
		}
	}
	flush()
	return out, nil
}

// nftTokens splits a rule into words, keeping quoted strings whole and
// braces and commas apart.
func nftTokens(line string) ([]string, error) {
	var out []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			out = append(out, b.String())
			b.Reset()
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			flush()
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote")
			}
			out = append(out, line[i:i+j+2])
			i += j + 1
		case c == ' ' || c == '\t':
			flush()
		case c == '{' || c == '}' || c == ',':
			flush()
			out = append(out, string(c))
		default:
			b.WriteByte(c)
		}
	}
	flush()
	return out, nil
}

package files

import (
	"bytes"
	"slices"
)

// plainJSON converts one YAML document to JSON when it is written in the
// plain part of YAML that manifests use: block and single-line flow mappings
// and sequences of plain, "double" (no escapes) and 'single' quoted scalars,
// comments, ASCII text. It declines (ok false) everything else — anchors,
// tags, block and multi-line scalars, floats and numbers other than plain
// decimals, keys that are not strings, duplicate keys, tabs, non-ASCII —
// and the caller hands that document to the full YAML library. Whatever it
// accepts it converts exactly as that library would (FuzzPlainJSON holds it
// to that).
//
// It exists for speed: the library builds a generic tree and encodes it
// again, most of the cost of reading 100k Services from manifests.
func plainJSON(doc []byte) (out []byte, ok bool) {
	// A file's first document keeps the separator line that opened it.
	if rest, cut := bytes.CutPrefix(doc, []byte("---")); cut {
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		if len(line) > 0 && (line[0] != ' ' || !commentOrBlank(line)) {
			return nil, false
		}
		doc = rest[min(len(line)+1, len(rest)):]
	}
	if !plainText(doc) {
		return nil, false
	}
	c := plainConv{src: doc, out: make([]byte, 0, len(doc)+len(doc)/4)}
	line, ind := c.nextContent(0)
	if ind < 0 {
		return append(c.out, "null"...), true
	}
	c.pos = line + ind
	if !c.node(-1, ind, false) {
		return nil, false
	}
	if _, ind := c.nextContent(c.pos); ind >= 0 {
		return nil, false
	}
	return c.out, true
}

// plainText is the character set the converter takes: printable ASCII and
// newlines, with no document markers or directives inside.
func plainText(doc []byte) bool {
	lineStart := true
	for i, b := range doc {
		if b == '\n' {
			lineStart = true
			continue
		}
		if b < 0x20 || b > 0x7e {
			return false
		}
		if lineStart && (b == '%' || bytes.HasPrefix(doc[i:], []byte("---")) || bytes.HasPrefix(doc[i:], []byte("..."))) {
			return false
		}
		lineStart = false
	}
	return true
}

// commentOrBlank: spaces, then perhaps a comment.
func commentOrBlank(line []byte) bool {
	t := bytes.TrimLeft(line, " ")
	return len(t) == 0 || t[0] == '#' && len(t) < len(line)
}

type plainConv struct {
	src   []byte
	pos   int
	out   []byte
	depth int
}

// nextContent finds the first line at or after the line holding p that has
// something other than spaces and a comment: its start and indentation, or
// indentation -1 at the end of the document.
func (c *plainConv) nextContent(p int) (line, ind int) {
	for p < len(c.src) {
		// back to the start of p's line
		for p > 0 && c.src[p-1] != '\n' {
			p--
		}
		i := p
		for i < len(c.src) && c.src[i] == ' ' {
			i++
		}
		if i < len(c.src) && c.src[i] != '\n' && c.src[i] != '#' {
			return p, i - p
		}
		for i < len(c.src) && c.src[i] != '\n' {
			i++
		}
		p = i + 1
	}
	return len(c.src), -1
}

// afterLine is the start of the line after p's.
func (c *plainConv) afterLine(p int) int {
	for p < len(c.src) && c.src[p] != '\n' {
		p++
	}
	return min(p+1, len(c.src))
}

// column is p's distance from the start of its line.
func (c *plainConv) column(p int) int {
	s := p
	for s > 0 && c.src[s-1] != '\n' {
		s--
	}
	return p - s
}

func (c *plainConv) at(p int) byte {
	if p < len(c.src) {
		return c.src[p]
	}
	return '\n'
}

// commentAt: a comment starts at p (a '#' after a space).
func (c *plainConv) commentAt(p int) bool { return c.at(p) == '#' && c.src[p-1] == ' ' }

// lineEndsAt: nothing but perhaps a comment is left of the line at p.
func (c *plainConv) lineEndsAt(p int) bool { return c.at(p) == '\n' || c.commentAt(p) }

// entryAt: a block sequence entry starts at p (a dash, then a space or
// the end of the line).
func (c *plainConv) entryAt(p int) bool {
	return c.at(p) == '-' && (c.at(p+1) == ' ' || c.at(p+1) == '\n')
}

// restOfLine skips spaces and a comment and reports whether the line ends
// there; c.pos is then at the start of the next line.
func (c *plainConv) restOfLine() bool {
	for c.at(c.pos) == ' ' {
		c.pos++
	}
	if c.commentAt(c.pos) {
		for c.at(c.pos) != '\n' {
			c.pos++
		}
	}
	if c.at(c.pos) != '\n' {
		return false
	}
	c.pos++
	return true
}

// node converts the node that starts at c.pos, at column col, inside a
// block indented parent. inline is a value on its key's line, where no
// block collection may start.
func (c *plainConv) node(parent, col int, inline bool) bool {
	if c.depth++; c.depth > maxDepth {
		return false
	}
	defer func() { c.depth-- }()
	switch b := c.at(c.pos); {
	case c.entryAt(c.pos):
		return !inline && c.sequence(col)
	case b == '{' || b == '[':
		if !c.flow() || !c.restOfLine() {
			return false
		}
		return c.endsScalar(parent)
	case b == '"' || b == '\'':
		start := c.pos
		s, ok := c.quoted()
		if !ok {
			return false
		}
		if c.keyFollows() {
			if inline {
				return false
			}
			c.pos = start
			return c.mapping(col)
		}
		c.out = appendJSONString(c.out, s)
		return c.restOfLine() && c.endsScalar(parent)
	case isIndicator(b):
		return false
	}
	start := c.pos
	s, key := c.blockPlain()
	if key {
		if inline {
			return false
		}
		c.pos = start
		return c.mapping(col)
	}
	if !c.scalar(s) || !c.restOfLine() {
		return false
	}
	return c.endsScalar(parent)
}

// endsScalar refuses a value followed by lines indented under it, which
// would continue it (or be an error).
func (c *plainConv) endsScalar(parent int) bool {
	line, ind := c.nextContent(c.pos)
	c.pos = line
	return ind <= parent
}

// mapping converts a block mapping whose keys sit at column indent; c.pos is
// at its first key.
func (c *plainConv) mapping(indent int) bool {
	c.out = append(c.out, '{')
	var keys [][]byte
	for n := 0; ; n++ {
		key, ok := c.key()
		if !ok {
			return false
		}
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return false
			}
		}
		keys = append(keys, key)
		if n > 0 {
			c.out = append(c.out, ',')
		}
		c.out = appendJSONString(c.out, key)
		c.out = append(c.out, ':')
		if !c.value(indent) {
			return false
		}
		line, ind := c.nextContent(c.pos)
		c.pos = line
		if ind < indent {
			break
		}
		if ind > indent {
			return false
		}
		c.pos = line + ind
	}
	c.out = append(c.out, '}')
	return true
}

// value converts what follows a block key's colon (c.pos just after it).
func (c *plainConv) value(indent int) bool {
	for c.at(c.pos) == ' ' {
		c.pos++
	}
	if !c.lineEndsAt(c.pos) {
		return c.node(indent, c.column(c.pos), true)
	}
	line, ind := c.nextContent(c.afterLine(c.pos))
	switch {
	case ind > indent:
		c.pos = line + ind
		return c.node(indent, ind, false)
	case ind == indent && c.entryAt(line+ind):
		c.pos = line + ind
		return c.sequence(indent)
	}
	c.out = append(c.out, "null"...)
	c.pos = line
	return true
}

// maxKey is under the YAML library's limit on a key's length (1024).
const maxKey = 1000

// maxDepth bounds the nesting the converter follows (the library's own
// bound is higher, and manifests are shallow).
const maxDepth = 64

// key reads a block mapping key and its colon.
func (c *plainConv) key() ([]byte, bool) {
	start := c.pos
	s, ok := c.keyAndColon()
	return s, ok && c.pos-start <= maxKey
}

func (c *plainConv) keyAndColon() ([]byte, bool) {
	if b := c.at(c.pos); b == '"' || b == '\'' {
		s, ok := c.quoted()
		if !ok || !c.keyFollows() {
			return nil, false
		}
		for c.at(c.pos) == ' ' {
			c.pos++
		}
		c.pos++ // the colon
		return s, true
	}
	if isIndicator(c.at(c.pos)) || c.at(c.pos) == '-' {
		return nil, false
	}
	s, key := c.blockPlain()
	if !key || !plainString(s) {
		return nil, false
	}
	c.pos++ // the colon
	return s, true
}

// keyFollows reports whether a colon that makes the scalar just read a key
// comes next.
func (c *plainConv) keyFollows() bool {
	p := c.pos
	for c.at(p) == ' ' {
		p++
	}
	return c.at(p) == ':' && (c.at(p+1) == ' ' || c.at(p+1) == '\n')
}

// blockPlain reads a plain scalar in block context up to the end of the
// line, a comment, or a colon that makes it a key (c.pos is then at that
// colon).
func (c *plainConv) blockPlain() (s []byte, key bool) {
	start := c.pos
	end := start
	for p := start; ; p++ {
		b := c.at(p)
		if c.lineEndsAt(p) {
			break
		}
		if b == ':' && (c.at(p+1) == ' ' || c.at(p+1) == '\n') {
			c.pos = p
			return bytes.TrimRight(c.src[start:p], " "), true
		}
		if b != ' ' {
			end = p + 1
		}
	}
	c.pos = end
	return c.src[start:end], false
}

// sequence converts a block sequence whose dashes sit at column indent; c.pos
// is at its first dash.
func (c *plainConv) sequence(indent int) bool {
	c.out = append(c.out, '[')
	for n := 0; ; n++ {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		c.pos++ // the dash
		for c.at(c.pos) == ' ' {
			c.pos++
		}
		if !c.lineEndsAt(c.pos) {
			if !c.node(indent, c.column(c.pos), false) {
				return false
			}
		} else if line, ind := c.nextContent(c.afterLine(c.pos)); ind > indent {
			c.pos = line + ind
			if !c.node(indent, ind, false) {
				return false
			}
		} else {
			c.out = append(c.out, "null"...)
			c.pos = line
		}
		line, ind := c.nextContent(c.pos)
		c.pos = line
		if ind > indent {
			return false
		}
		if ind < indent || !c.entryAt(line+ind) {
			break
		}
		c.pos = line + ind
	}
	c.out = append(c.out, ']')
	return true
}

// flow converts a flow mapping or sequence that ends on the line it starts.
func (c *plainConv) flow() bool {
	if c.depth++; c.depth > maxDepth {
		return false
	}
	defer func() { c.depth-- }()
	open := c.src[c.pos]
	closer := byte(']')
	if open == '{' {
		closer = '}'
	}
	c.out = append(c.out, open)
	c.pos++
	c.flowSpace()
	if c.at(c.pos) == closer {
		c.pos++
		c.out = append(c.out, closer)
		return true
	}
	for n := 0; ; n++ {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		if open == '{' {
			start := c.pos
			if !c.flowScalar(true) || c.pos-start > maxKey {
				return false
			}
			c.flowSpace()
			if c.at(c.pos) != ':' || c.at(c.pos+1) != ' ' {
				return false
			}
			c.pos++
			c.out = append(c.out, ':')
			c.flowSpace()
		}
		if b := c.at(c.pos); b == '{' || b == '[' {
			if !c.flow() {
				return false
			}
		} else if !c.flowScalar(false) {
			return false
		}
		c.flowSpace()
		switch c.at(c.pos) {
		case ',':
			c.pos++
			c.flowSpace()
			if b := c.at(c.pos); b == closer || b == ',' {
				return false
			}
			continue
		case closer:
			c.pos++
			c.out = append(c.out, closer)
			return true
		}
		return false
	}
}

func (c *plainConv) flowSpace() {
	for c.at(c.pos) == ' ' {
		c.pos++
	}
}

// flowScalar converts a scalar inside a flow collection; a key must be a
// string. (What it wrote is dropped with the rest if the document is
// declined.)
func (c *plainConv) flowScalar(key bool) bool {
	if b := c.at(c.pos); b == '"' || b == '\'' {
		s, ok := c.quoted()
		c.out = appendJSONString(c.out, s)
		return ok
	}
	if b := c.at(c.pos); isIndicator(b) || b == '-' || b == ',' || b == ']' || b == '}' {
		return false
	}
	start, end := c.pos, c.pos
	for {
		b := c.at(c.pos)
		if c.lineEndsAt(c.pos) || b == ',' || b == '[' || b == ']' || b == '{' || b == '}' {
			break
		}
		if b == ':' {
			if c.at(c.pos+1) != ' ' {
				return false
			}
			break
		}
		c.pos++
		if b != ' ' {
			end = c.pos
		}
	}
	c.pos = end
	s := c.src[start:end]
	if key {
		c.out = appendJSONString(c.out, s)
		return plainString(s)
	}
	return c.scalar(s)
}

// quoted reads a quoted scalar that ends on its line: a slice of the
// source, or a copy when a doubled single quote had to be undone.
func (c *plainConv) quoted() ([]byte, bool) {
	q := c.src[c.pos]
	start := c.pos + 1
	var s []byte // the copy, once one is needed
	for p := start; ; p++ {
		switch b := c.at(p); {
		case b == '\n':
			return nil, false
		case b == '\\' && q == '"':
			return nil, false
		case b == q && q == '\'' && c.at(p+1) == '\'':
			if s == nil {
				s = slices.Clone(c.src[start:p])
			}
			s = append(s, '\'')
			p++
		case b == q:
			c.pos = p + 1
			if s == nil {
				return c.src[start:p], true
			}
			return s, true
		default:
			if s != nil {
				s = append(s, b)
			}
		}
	}
}

// scalar writes a plain scalar as the YAML library resolves it: null, bool,
// decimal integer or string; anything else (floats, octal, signed or very
// long numbers, timestamps, merge keys) is declined.
func (c *plainConv) scalar(s []byte) bool {
	if w := word(s); w != "" {
		c.out = append(c.out, w...)
		return true
	}
	if b := s[0]; b >= '0' && b <= '9' {
		switch {
		case decimal(s):
			c.out = append(c.out, s...)
			return true
		case digitString(s):
			c.out = appendJSONString(c.out, s)
			return true
		}
		return false
	}
	if !plainString(s) {
		return false
	}
	c.out = appendJSONString(c.out, s)
	return true
}

// decimal: an integer the library reads as the same number (a leading
// zero would make it octal).
func decimal(s []byte) bool {
	if len(s) > 18 || s[0] == '0' && len(s) > 1 {
		return false
	}
	for _, d := range s {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

// digitString: a scalar starting with a digit that no number or timestamp
// rule can read, so the library keeps it as a string: IPv4 addresses (two
// or more dots) and IPv6 ones (colons). A date (four digits and a dash) may
// be a timestamp and is declined.
func digitString(s []byte) bool {
	if len(s) > 4 && s[4] == '-' {
		return false
	}
	return bytes.IndexByte(s, ':') >= 0 || bytes.Count(s, []byte(".")) >= 2
}

// plainString reports whether a plain scalar resolves to the string it reads
// as: one that cannot be a number, bool, null or merge key.
func plainString(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	switch s[0] {
	case '+', '-', '.', '~', '<':
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		return false
	}
	return word(s) == ""
}

// word is the JSON of a plain scalar the library reads as null or a bool
// (YAML 1.1's words), or "".
func word(s []byte) string {
	switch string(s) {
	case "", "~", "null", "Null", "NULL":
		return "null"
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return "true"
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return "false"
	}
	return ""
}

// isIndicator: characters that cannot start a plain scalar, or start YAML
// this converter leaves to the library (anchors, aliases, tags, block
// scalars, complex keys, directives, reserved).
func isIndicator(b byte) bool {
	switch b {
	case '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return true
	}
	return false
}

// appendJSONString quotes s, printable ASCII, as a JSON string.
func appendJSONString(out, s []byte) []byte {
	out = append(out, '"')
	for _, b := range s {
		if b == '"' || b == '\\' {
			out = append(out, '\\')
		}
		out = append(out, b)
	}
	return append(out, '"')
}

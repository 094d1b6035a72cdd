package files

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// samePlainJSON fails when the fast converter accepts a document and reads
// it differently from the YAML library, or accepts one the library refuses.
// It reports whether the converter accepted the document.
func samePlainJSON(t *testing.T, doc []byte) bool {
	t.Helper()
	got, ok := plainJSON(doc)
	if !ok {
		return false
	}
	want, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatalf("accepted a document the YAML library refuses (%v):\n%s", err, doc)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("wrote invalid JSON %s (%v) for:\n%s", got, err, doc)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("read\n%s\nas %s, the YAML library as %s", doc, got, want)
	}
	return true
}

func TestPlainJSON(t *testing.T) {
	tests := []struct {
		name   string
		doc    string
		accept bool
	}{
		{"flow style, as the scale benchmarks write", "apiVersion: v1\nkind: Service\nmetadata: {name: svc1, namespace: ns1}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{name: http, port: 80}]\n", true},
		{"block style, as kubectl get -o yaml writes", `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: web  # the Service
    "quoted.example/key": 'it''s'
  name: web-abc
addressType: IPv4
endpoints:
- addresses:
  - 10.244.1.5
  conditions:
    ready: true
    serving: yes
  nodeName: node-1
  zone:
-   addresses: ["10.244.1.6"]
ports:
  - name: ""
    port: 8080
    protocol: TCP
`, true},
		{"IPv6 and nested sequences", "a:\n- - 1\n  - fd00::1\n- 2001:db8::1\n- []\n- {}\n-\n", true},
		{"comments and blank lines", "# head\n\na: 1 # one\n\n  # indented comment\nb: '#not a comment'\nc: x#y\n", true},
		{"empty document", "# only a comment\n", true},
		{"opening separator", "---\na: 1\n", true},
		{"opening separator with a comment", "--- # first\na: 1\n", true},
		{"only a separator", "---\n", true},
		{"content on the separator line", "--- a\n", false},
		{"separator then a comment without a space", "---#x\na: 1\n", false},
		{"null and bool words", "a: ~\nb: Null\nc: off\nd: N\ne:\n", true},
		{"strings with indicators inside", "a: b,c\nd: e[f]\ng: http://x:80/y\nh: say \"hi\"\ni: C:\\dir\n", true},

		{"anchor", "a: &x 1\nb: *x\n", false},
		{"tag", "a: !!str 80\n", false},
		{"block scalar", "a: |\n  text\n", false},
		{"multi-line plain scalar", "a: one\n  two\n", false},
		{"float", "a: 1.5\n", false},
		{"octal", "a: 017\n", false},
		{"signed", "a: -1\n", false},
		{"timestamp", "a: 2001-12-14\n", false},
		{"merge key", "a: {x: 1}\n<<: {y: 2}\n", false},
		{"duplicate key", "a: 1\na: 2\n", false},
		{"number key", "80: http\n", false},
		{"bool key", "yes: 1\n", false},
		{"escape in double quotes", "a: \"\\t\"\n", false},
		{"tab", "a:\t1\n", false},
		{"non-ASCII", "a: caf\xc3\xa9\n", false},
		{"multi-line flow", "a: [1,\n  2]\n", false},
		{"mapping in a value", "a: b: c\n", false},
		{"sequence in a value", "a: - b\n", false},
		{"key without colon", "a: 1\nb\n", false},
		{"over-indented key", "a: 1\n  b: 2\n", false},
		{"trailing comma", "a: [1, 2, ]\n", false},
		{"flow key without space", "a: {b:c}\n", false},
		{"scalar document", "just text\n", true},
		{"directive", "%YAML 1.1\na: 1\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := samePlainJSON(t, []byte(tt.doc)); got != tt.accept {
				t.Errorf("accepted = %v, want %v", got, tt.accept)
			}
		})
	}
}

// TestPlainJSONTakesTheBundledManifests: the fast path must actually serve
// the manifests people write, or it buys nothing.
func TestPlainJSONTakesTheBundledManifests(t *testing.T) {
	paths, _ := filepath.Glob("../../../examples/lab/*.yaml")
	if len(paths) == 0 {
		t.Fatal("no bundled manifests found")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(t, data) {
			if !samePlainJSON(t, doc) {
				t.Errorf("%s document %d: declined:\n%s", filepath.Base(p), i+1, doc)
			}
		}
	}
}

func documents(t testing.TB, data []byte) [][]byte {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, bytes.Clone(doc))
	}
}

// FuzzPlainJSON: whatever the fast converter accepts, it reads as the YAML
// library does.
func FuzzPlainJSON(f *testing.F) {
	paths, _ := filepath.Glob("../../../examples/lab/*.yaml")
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			for _, doc := range documents(f, data) {
				f.Add(doc)
			}
		}
	}
	f.Add([]byte("a:\n- b: 1\n  c: [x, 'y', \"z\"]\n- {d: e}\n"))
	f.Add([]byte("a: 10.0.0.1\nb: fd00::1\nc: 0\nd: yes\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		samePlainJSON(t, doc)
	})
}

// TestPlainJSONRandomDocuments builds documents from the pieces manifests
// are made of, in block and flow styles with comments, tricky scalars and
// indentation mistakes, and holds the converter to the library on each.
const randomDocs = 20000

func TestPlainJSONRandomDocuments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	scalars := []string{"a", "web", "10.96.0.1", "fd00::1", "2001:db8::1", "0", "7", "80", "017", "1.5", "1e3", "-1", "+1", "0x1F",
		"1_000", "2001-12-14", "yes", "No", "on", "OFF", "y", "~", "null", "Null", "true", "False", "<<", ".inf", "a b", "a#b",
		"http://x:80/", `"quoted"`, `""`, `'it''s'`, `"a#b"`, `'x: y'`, "b,c", "e[f]", "!tag", "&a", "*a", "|", "-", "- x", "x:", "x: y",
		"99999999999999999999", "1.2.3", "1:2", "12:30", "0b101", "tRUe"}
	keys := []string{"a", "name", "port", `"k.io/x"`, `'q'`, "80", "yes", "my key", "~", "x.y", "a", "-k", "1.5"}
	var b strings.Builder
	var block func(indent, depth int)
	pick := func(from []string) string { return from[rng.IntN(len(from))] }
	// flow is a flow collection of up to two entries that entry makes.
	flow := func(open, closer string, entry func() string) string {
		parts := make([]string, rng.IntN(3))
		for i := range parts {
			parts[i] = entry()
		}
		return open + strings.Join(parts, ", ") + closer
	}
	value := func(depth int) string {
		switch rng.IntN(4) {
		case 0:
			return flow("[", "]", func() string { return pick(scalars) })
		case 1:
			return flow("{", "}", func() string { return pick(keys) + ": " + pick(scalars) })
		}
		return pick(scalars)
	}
	block = func(indent, depth int) {
		pad := strings.Repeat(" ", indent)
		seq := rng.IntN(3) == 0
		for range 1 + rng.IntN(3) {
			if rng.IntN(8) == 0 {
				b.WriteString(pad + "# note\n")
			}
			if rng.IntN(30) == 0 {
				pad += " " // an indentation mistake
			}
			lead := pad
			if seq {
				b.WriteString(pad + "- ")
				lead = pad + "  "
				if rng.IntN(2) == 0 {
					b.WriteString(value(depth) + "\n")
					continue
				}
			} else {
				b.WriteString(pad)
			}
			b.WriteString(pick(keys) + ":")
			if depth < 3 && rng.IntN(3) == 0 {
				b.WriteString("\n")
				block(len(lead)+2*rng.IntN(2), depth+1)
				continue
			}
			b.WriteString(" " + value(depth))
			if rng.IntN(8) == 0 {
				b.WriteString(" # why")
			}
			b.WriteString("\n")
		}
	}
	accepted := 0
	for range randomDocs {
		b.Reset()
		block(0, 0)
		if samePlainJSON(t, []byte(b.String())) {
			accepted++
		}
	}
	t.Logf("%d of %d documents taken by the fast path", accepted, randomDocs)
	if accepted < 1000 {
		t.Errorf("only %d documents taken by the fast path: the test no longer exercises it", accepted)
	}
}

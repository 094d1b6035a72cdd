package files

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// sameSplit fails when splitDocuments and kubectl's reader split data
// differently or stop at different places.
func sameSplit(t *testing.T, data []byte) {
	t.Helper()
	if bytes.IndexByte(data, '\r') >= 0 {
		return // split by the reader itself
	}
	got, gotErr := splitDocuments(data)
	want, wantErr := readDocuments(data)
	if !slices.EqualFunc(got, want, bytes.Equal) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("split %q into %q (%v), kubectl's reader into %q (%v)", data, got, gotErr, want, wantErr)
	}
}

func TestSplitDocumentsAsKubectl(t *testing.T) {
	for _, data := range []string{
		"", "\n", "a: 1", "a: 1\n", "---\na: 1\n", "a: 1\n---\nb: 2\n", "a: 1\n---\n", "---\n---\n---\n",
		"a: 1\n--- # next\nb: 2", "a: 1\n---   \nb: 2\n", "a: 1\n--- b\n", "a: 1\n---b\nc: 2\n", "a: 1\n----\n",
		"# only a comment\n---\n", "  ---\na: 1\n", "a: |\n  ---\n", "a: 1\n...\nb: 2\n",
		"x: " + string(bytes.Repeat([]byte("y"), 10000)) + "\n---\nz: 1\n",
	} {
		sameSplit(t, []byte(data))
	}
}

// FuzzSplitDocuments: the documents are kubectl's, whatever the file.
func FuzzSplitDocuments(f *testing.F) {
	f.Add([]byte("a: 1\n---\nb: 2\n"))
	f.Add([]byte("---\n--- #x\n---y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameSplit(t, data)
	})
}

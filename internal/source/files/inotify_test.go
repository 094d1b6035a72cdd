package files

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The notifier tells a write still going on from a file its writer has
// finished with: that is what lets a saved manifest be read at once.
func TestNotifierSaysWhenAFileIsWhole(t *testing.T) {
	dir := t.TempDir()
	n, err := newNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if err := n.watch(); err != nil {
		t.Fatal(err)
	}
	// next returns the changes up to and including the first whole one of
	// name (or the end of the watch, when name is "").
	next := func(name string) []change {
		t.Helper()
		var got []change
		for {
			select {
			case c := <-n.changes:
				got = append(got, c)
				if name == "" && c.gone || name != "" && c.name == filepath.Join(dir, name) && c.done {
					return got
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no whole change of %q; got %+v", name, got)
			}
		}
	}
	open, err := os.Create(filepath.Join(dir, "a.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.WriteString("apiVersion: v1\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("kind: Service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sawA := false
	for _, c := range next("b.yaml") {
		if c.name == filepath.Join(dir, "a.yaml") {
			sawA = true
			if c.done {
				t.Errorf("a.yaml, still open for writing, reported whole: %+v", c)
			}
		}
	}
	if !sawA {
		t.Error("no change reported for a.yaml while it was written")
	}
	open.Close()
	next("a.yaml")

	tmp := filepath.Join(dir, ".c.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("kind: Service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	next("c.yaml")
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	next("b.yaml")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	next("")
}

// Closing the notifier ends its reader even when changes were left
// unread (Run returning while files change): no goroutine is left behind.
func TestNotifierCloseEndsTheReader(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	n, err := newNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.watch(); err != nil {
		t.Fatal(err)
	}
	// More changes than the channel holds, so that the reader waits to
	// hand one on.
	for i := range 2 * cap(n.changes) {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.yaml", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for len(n.changes) < cap(n.changes) {
		time.Sleep(time.Millisecond)
	}
	n.close()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after close, %d before the notifier: its reader did not end", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
}

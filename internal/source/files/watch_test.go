package files

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Watch hands over the folder as it is, then again after each change: a
// burst of writes to several files ends in a snapshot with all of them, and
// a removed file takes its objects with it.
func TestWatchFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	write := func(name, svc string) {
		data := "apiVersion: v1\nkind: Service\nmetadata: {name: " + svc + "}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "a")
	got := make(chan []string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Dir{Path: dir}).Run(ctx, func(in model.Input, _ []error) {
			var names []string
			for _, s := range in.Services {
				names = append(names, s.Name)
			}
			got <- names
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// until waits for a snapshot with exactly these Services.
	until := func(want ...string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case names := <-got:
				if slices.Equal(names, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no snapshot with Services %v", want)
			}
		}
	}
	until("a")
	for _, f := range []string{"b", "c", "d"} {
		write(f+".yaml", f)
	}
	until("a", "b", "c", "d")
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	until("a", "c", "d")
}

// --manifests may name one file, as kubectl apply -f does: it is read, and
// followed when it changes, whatever its name.
func TestWatchOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.manifest")
	write := func(svcs ...string) {
		var data string
		for _, s := range svcs {
			data += "---\napiVersion: v1\nkind: Service\nmetadata: {name: " + s + "}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n"
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	got := make(chan int, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Dir{Path: path}).Run(ctx, func(in model.Input, _ []error) { got <- len(in.Services) })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for _, want := range []int{1, 2} {
		if want == 2 {
			write("a", "b")
		}
		select {
		case n := <-got:
			if n != want {
				t.Fatalf("%d Services read, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no snapshot with %d Services", want)
		}
	}
}

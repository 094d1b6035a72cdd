package files

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/svcproxy/svcproxy/internal/source"
	"github.com/svcproxy/svcproxy/internal/source/sourcetest"
)

// The folder source keeps source.Source's promises.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	write := func(t *testing.T, name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := 0
	sourcetest.Run(t, sourcetest.Harness{
		New: func(*testing.T) source.Source { return &Dir{Path: dir, Node: "node-1"} },
		Apply: func(t *testing.T, objs ...any) {
			for _, o := range objs {
				b, err := yaml.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				// The API types write "creationTimestamp: null", a field
				// strict reading refuses.
				b = []byte(strings.ReplaceAll(string(b), "  creationTimestamp: null\n", ""))
				files++
				write(t, fmt.Sprintf("object-%d.yaml", files), b)
			}
		},
		Namespace: "default",
		Broken: func(t *testing.T) {
			write(t, "broken.yaml", []byte("apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {clusterIP: 10.96.9.9, ports: [{port: 99999}]}\n"))
		},
		Origin: filepath.Join(dir, "broken.yaml"),
	}, [3]string{"10.96.9.1", "10.96.9.2", "10.96.9.3"})
}

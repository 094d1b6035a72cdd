package files

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDirLoad reads a folder of 10k Services with 10-endpoint slices
// (10 files of 1000 Services each), as `svcproxy rules --manifests` does.
func BenchmarkDirLoad(b *testing.B) {
	dir := b.TempDir()
	for f := 0; f < 10; f++ {
		var sb strings.Builder
		for i := f * 1000; i < (f+1)*1000; i++ {
			fmt.Fprintf(&sb, "apiVersion: v1\nkind: Service\nmetadata: {name: svc%d, namespace: ns%d}\nspec:\n  clusterIP: 10.96.%d.%d\n  ports: [{name: http, port: 80}]\n---\n", i, i%100, i>>8, i&255)
			fmt.Fprintf(&sb, "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: svc%d-a, namespace: ns%d, labels: {kubernetes.io/service-name: svc%d}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n", i, i%100, i)
			for e := 0; e < 10; e++ {
				k := i*10 + e
				fmt.Fprintf(&sb, "- addresses: [\"10.%d.%d.%d\"]\n", 128+k>>16, (k>>8)&255, k&255)
			}
			sb.WriteString("---\n")
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("svc-%d.yaml", f)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		d := &Dir{Path: dir}
		in, errs, _, err := d.Load()
		if err != nil || len(errs) > 0 || len(in.Services) != 10000 {
			b.Fatalf("services=%d errs=%v err=%v", len(in.Services), errs, err)
		}
	}
}

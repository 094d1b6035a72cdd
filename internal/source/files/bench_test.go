package files

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

// BenchmarkDirLoad reads a folder of 10k Services with 10-endpoint slices
// (10 files of 1000 Services each), as `svcproxy rules --manifests` does.
func BenchmarkDirLoad(b *testing.B) {
	dir := scaleDir(b)
	b.ReportAllocs()
	for b.Loop() {
		d := &Dir{Path: dir}
		in, errs, _, err := d.Load()
		if err != nil || len(errs) > 0 || len(in.Services) != 10000 {
			b.Fatalf("services=%d errs=%v err=%v", len(in.Services), errs, err)
		}
	}
}

// BenchmarkDirOneChange is the source side of an endpoint change in that
// folder, as `svcproxy run --manifests` follows it: one small file edited,
// the folder loaded again, the changes counted and the model built.
func BenchmarkDirOneChange(b *testing.B) {
	dir := scaleDir(b)
	d := &Dir{Path: dir}
	prev, _, _, err := d.Load()
	if err != nil {
		b.Fatal(err)
	}
	var builder model.Builder
	node := model.Node{Name: "node-1"}
	builder.Build(prev, node)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		one := fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: one, namespace: zz}\nspec:\n  clusterIP: 10.97.0.1\n  ports: [{port: 80}]\n---\n"+
			"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: one-a, namespace: zz, labels: {kubernetes.io/service-name: one}}\n"+
			"addressType: IPv4\nports: [{port: 80}]\nendpoints: [{addresses: [\"10.244.0.%d\"]}]\n", 10+i%2)
		if err := os.WriteFile(filepath.Join(dir, "zz-one.yaml"), []byte(one), 0o644); err != nil {
			b.Fatal(err)
		}
		in, _, changed, err := d.Load()
		if err != nil || !changed {
			b.Fatalf("changed=%v err=%v", changed, err)
		}
		model.Changes(prev, in)
		prev = in
		if st, errs := builder.Build(in, node); len(errs) > 0 || len(st.Services) != 10001 {
			b.Fatalf("%d Service ports, errors %v", len(st.Services), errs)
		}
	}
}

// scaleDir writes 10k Services with 10-endpoint slices (10 files of 1000
// Services each).
func scaleDir(b *testing.B) string {
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
	return dir
}

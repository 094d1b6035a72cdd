package files

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name         string
		data         string
		services     int
		slices       int
		ignored      int
		wantErrParts []string // each error line must contain these, in order of errors
	}{
		{
			name: "multi-document YAML with a Deployment",
			data: `apiVersion: v1
kind: Service
metadata: {name: a}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, labels: {kubernetes.io/service-name: a}}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5]}]
`,
			services: 1, slices: 1, ignored: 1,
		},
		{
			name:     "JSON List",
			data:     `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"x"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}]}`,
			services: 1,
		},
		{
			name: "misspelt field is refused, the next document is kept",
			data: `apiVersion: v1
kind: Service
metadata: {name: typo}
spec: {type: NodePort, clusterIP: 10.96.0.1, ports: [{port: 80, nodeport: 30450}]}
---
apiVersion: v1
kind: Service
metadata: {name: good}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
`,
			services:     1,
			wantErrParts: []string{`f.yaml: Service default/typo: unknown field "spec.ports[0].nodeport"`},
		},
		{
			name:         "wrong type names the field",
			data:         "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: eighty}]}\n",
			wantErrParts: []string{"Service default/a", "spec.ports.port"},
		},
		{
			name:         "missing kind",
			data:         "apiVersion: v1\nmetadata: {name: a}\n",
			wantErrParts: []string{"f.yaml: default/a: kind: required"},
		},
		{
			name:         "Service with the wrong apiVersion",
			data:         "apiVersion: apps/v1\nkind: Service\nmetadata: {name: a}\n",
			wantErrParts: []string{`Service default/a: apiVersion: "apps/v1"`},
		},
		{
			name:         "broken YAML",
			data:         "apiVersion: v1\nkind: [Service\n",
			wantErrParts: []string{"f.yaml: document 1: not valid YAML or JSON"},
		},
		{
			name:         "a broken document does not hide the next one",
			data:         "apiVersion: v1\nkind: [Service\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n",
			services:     1,
			wantErrParts: []string{"f.yaml: document 1: not valid YAML or JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := Decode("f.yaml", []byte(tt.data))
			if len(objs.Services) != tt.services || len(objs.EndpointSlices) != tt.slices || objs.Ignored != tt.ignored {
				t.Errorf("got %d services, %d slices, %d ignored; want %d, %d, %d",
					len(objs.Services), len(objs.EndpointSlices), objs.Ignored, tt.services, tt.slices, tt.ignored)
			}
			if len(errs) != min(len(tt.wantErrParts), 1) {
				t.Fatalf("errors: %v, want %d", errs, len(tt.wantErrParts))
			}
			for _, part := range tt.wantErrParts {
				if !strings.Contains(errs[0].Error(), part) {
					t.Errorf("error %q does not contain %q", errs[0], part)
				}
			}
		})
	}
}

func TestDirLoadDuplicatesAndChanges(t *testing.T) {
	dir := t.TempDir()
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n"
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1.yaml", svc)
	write("2.yml", svc)
	write("notes.txt", "not a manifest")
	d := &Dir{Path: dir}
	in, errs, changed, err := d.Load()
	if err != nil || !changed {
		t.Fatalf("first load: changed=%v err=%v", changed, err)
	}
	if len(in.Services) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "already defined in "+filepath.Join(dir, "1.yaml")) {
		t.Fatalf("services=%d errs=%v", len(in.Services), errs)
	}
	if _, _, changed, _ := d.Load(); changed {
		t.Error("second load without changes reports a change")
	}
	os.Remove(filepath.Join(dir, "2.yml"))
	if _, errs, changed, _ := d.Load(); !changed || len(errs) != 0 {
		t.Errorf("after removing the duplicate: changed=%v errs=%v", changed, errs)
	}
	if _, _, _, err := (&Dir{Path: filepath.Join(dir, "missing")}).Load(); err == nil {
		t.Error("a missing folder must be an error")
	}
}

// ServiceCIDR objects reach the model, so that nftables mode can drop
// traffic to unallocated cluster IPs in standalone mode too.
func TestDirReadsServiceCIDRs(t *testing.T) {
	dir := t.TempDir()
	data := "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: kubernetes}\nspec: {cidrs: [10.96.0.0/16, \"fd00:96::/112\"]}\n"
	if err := os.WriteFile(filepath.Join(dir, "cidr.yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	in, errs, _, err := (&Dir{Path: dir}).Load()
	if err != nil || len(errs) > 0 {
		t.Fatalf("err=%v errs=%v", err, errs)
	}
	st, _ := model.Build(in, model.Node{Name: "node-1"})
	if got := fmt.Sprint(st.ServiceCIDRs); got != "[10.96.0.0/16 fd00:96::/112]" {
		t.Errorf("service CIDRs %s", got)
	}
}

// An EndpointSlice whose Service is in no manifest is named, with what to
// do, and the rest is read as usual.
func TestDirWarnsOfSlicesWithoutTheirService(t *testing.T) {
	dir := t.TempDir()
	data := `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 80}]
endpoints: [{addresses: ["10.244.0.5"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: wbe-1, namespace: default, labels: {kubernetes.io/service-name: wbe}}
addressType: IPv4
ports: [{port: 80}]
endpoints: [{addresses: ["10.244.0.6"]}]
`
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	in, errs, _, err := (&Dir{Path: dir}).Load()
	if err != nil || len(in.Services) != 1 || len(in.EndpointSlices) != 2 {
		t.Fatalf("services=%d slices=%d err=%v", len(in.Services), len(in.EndpointSlices), err)
	}
	want := "EndpointSlice default/wbe-1: metadata.labels[kubernetes.io/service-name]: no Service default/wbe in the manifests, so these endpoints serve nothing: add the Service, or correct the label"
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
		t.Errorf("errs = %v, want one: %s", errs, want)
	}
}

// A Dir that read the folder before gives, file edit after file edit, what
// reading the folder afresh gives: an edit that keeps a file's objects
// patches the last merge, any other goes through a whole merge.
func TestDirEditsReadAsAFreshRead(t *testing.T) {
	dir := t.TempDir()
	svc := func(name, ip string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {clusterIP: " + ip + ", ports: [{port: 80}]}\n---\n"
	}
	slice := func(name, service, ip string) string {
		return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: " + name + ", labels: {kubernetes.io/service-name: " + service + "}}\n" +
			"addressType: IPv4\nports: [{port: 80}]\nendpoints: [{addresses: [\"" + ip + "\"]}]\n---\n"
	}
	steps := []map[string]string{
		{"a.yaml": svc("web", "10.96.0.1") + slice("web-a", "web", "10.244.0.1"),
			"b.yaml": svc("api", "10.96.0.2") + slice("api-a", "api", "10.244.0.2"),
			"c.yaml": svc("web", "10.96.0.9") + slice("lost-a", "lost", "10.244.0.3")},
		{"a.yaml": svc("web", "10.96.0.1") + slice("web-a", "web", "10.244.0.4")},                      // endpoints only
		{"c.yaml": svc("web", "10.96.0.8") + slice("lost-a", "lost", "10.244.0.5")},                    // the duplicate edited
		{"b.yaml": svc("api", "10.96.0.2") + slice("api-a", "web", "10.244.0.2")},                      // a slice changes Service
		{"a.yaml": svc("web", "10.96.0.1") + svc("db", "10.96.0.3")},                                   // objects come and go
		{"a.yaml": "kind: [", "b.yaml": svc("api", "10.96.0.2") + slice("api-a", "api", "10.244.0.6")}, // a broken file
		{"a.yaml": svc("web", "10.96.0.1") + slice("web-a", "web", "10.244.0.7")},
	}
	ports := func(st model.State) string {
		var b strings.Builder
		for _, sp := range st.Services {
			fmt.Fprintf(&b, "%+v\n", *sp)
		}
		return b.String()
	}
	d := &Dir{Path: dir}
	mtime := time.Now()
	for i, files := range steps {
		for name, data := range files {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			// Edits of one size within a clock tick must still be seen.
			mtime = mtime.Add(time.Second)
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		in, errs, changed, err := d.Load()
		fresh, freshErrs, _, freshErr := (&Dir{Path: dir}).Load()
		if err != nil || freshErr != nil || !changed {
			t.Fatalf("step %d: changed=%v err=%v, fresh err=%v", i, changed, err, freshErr)
		}
		got, _ := model.Build(in, model.Node{Name: "node-1"})
		want, _ := model.Build(fresh, model.Node{Name: "node-1"})
		if ports(got) != ports(want) || fmt.Sprint(errs) != fmt.Sprint(freshErrs) {
			t.Errorf("step %d: read\n%s %v\nafresh\n%s %v", i, ports(got), errs, ports(want), freshErrs)
		}
	}
}

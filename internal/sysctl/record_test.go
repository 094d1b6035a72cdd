package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

// The record keeps the value from before svcproxy, across restarts, and
// Restore puts it back, an empty one included.
func TestRecorderRestoresTheValuesFromBefore(t *testing.T) {
	root := t.TempDir()
	Root = root
	defer func() { Root = "/proc/sys" }()
	for name, v := range map[string]string{"net/ipv4/conf/all/route_localnet": "0\n", "net/ipv4/ip_local_reserved_ports": "\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := Recorder{File: filepath.Join(root, "state", "sysctls.json")}
	if changed, err := rec.Ensure("net.ipv4.conf.all.route_localnet", "1"); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, err := rec.Ensure("net.ipv4.ip_local_reserved_ports", "30000-32767"); err != nil {
		t.Fatal(err)
	}
	// A restart finds route_localnet already 1: the record still says 0.
	if changed, err := (Recorder{File: rec.File}).Ensure("net.ipv4.conf.all.route_localnet", "1"); err != nil || changed {
		t.Fatal(changed, err)
	}
	restored, err := rec.Restore()
	if err != nil || len(restored) != 2 {
		t.Fatalf("restored %v, %v", restored, err)
	}
	for name, want := range map[string]string{"net.ipv4.conf.all.route_localnet": "0", "net.ipv4.ip_local_reserved_ports": ""} {
		if got, _ := Get(name); got != want {
			t.Errorf("%s = %q after restore, want %q", name, got, want)
		}
	}
	if _, err := os.Stat(rec.File); !os.IsNotExist(err) {
		t.Error("record left after a full restore")
	}
}

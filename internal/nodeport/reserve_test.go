package nodeport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/sysctl"
)

func TestPortSet(t *testing.T) {
	s, err := ParsePortSet("8080, 30000-32767,22")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "22,8080,30000-32767" {
		t.Errorf("String() = %s", got)
	}
	for _, bad := range []string{"0", "70000", "5-3", "x", "1-"} {
		if _, err := ParsePortSet(bad); err == nil {
			t.Errorf("ParsePortSet(%q) accepted", bad)
		}
	}
}

// The reservation merges with the operator's entries and removes only its own.
func TestReserverKeepsOperatorEntries(t *testing.T) {
	root := t.TempDir()
	sysctl.Root = root
	defer func() { sysctl.Root = "/proc/sys" }()
	key := filepath.Join(root, "net/ipv4/ip_local_reserved_ports")
	os.MkdirAll(filepath.Dir(key), 0o755)
	os.WriteFile(key, []byte("8080,30100\n"), 0o644)
	read := func() string { b, _ := os.ReadFile(key); return strings.TrimSpace(string(b)) }

	r := &Reserver{StateFile: filepath.Join(root, "state", "reserved.json")}
	rangeSet, _ := ParsePortSet("30000-32767")
	if _, err := r.Reserve(rangeSet); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "8080,30000-32767" {
		t.Errorf("after reserve: %q", got)
	}
	// A restart (new Reserver, same state) switching to "ports" mode.
	r = &Reserver{StateFile: r.StateFile}
	ports, _ := ParsePortSet("30450")
	if _, err := r.Reserve(ports); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "8080,30100,30450" {
		t.Errorf("after switching to ports: %q, want the operator's 30100 kept", got)
	}
	if _, err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "8080,30100" {
		t.Errorf("after release: %q, want the operator's entries only", got)
	}
	if _, err := os.Stat(r.StateFile); !os.IsNotExist(err) {
		t.Error("state file left after release")
	}
}

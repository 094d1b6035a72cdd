package iptables

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// iptables-restore is run as upstream runs it: a bounded wait for the
// xtables lock (-w 5), never flushing, keeping counters.
func TestRestoreArguments(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	script := filepath.Join(dir, "iptables-restore")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+args+"\ncat > /dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (Exec{RestoreCmd: script}).Restore(context.Background(), []byte("*filter\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(args)
	if err != nil || strings.TrimSpace(string(got)) != "-w 5 --noflush --counters" {
		t.Errorf("iptables-restore %q (%v), want -w 5 --noflush --counters", got, err)
	}
}

// Package sysctl reads and writes kernel parameters of the current network
// namespace through /proc/sys.
package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Root is /proc/sys; tests may point it elsewhere.
var Root = "/proc/sys"

func path(name string) string {
	return filepath.Join(Root, strings.ReplaceAll(name, ".", "/"))
}

// Get returns a parameter such as "net.ipv4.conf.all.route_localnet".
func Get(name string) (string, error) {
	b, err := os.ReadFile(path(name))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Ensure sets a parameter if it differs and reports whether it changed.
func Ensure(name, value string) (bool, error) {
	cur, err := Get(name)
	if err != nil {
		return false, err
	}
	if cur == value {
		return false, nil
	}
	if err := set(name, value); err != nil {
		return false, err
	}
	return true, nil
}

// set writes a parameter and reads it back. The newline matters: the
// kernel ignores an empty write, so "" would leave the old value.
func set(name, value string) error {
	if err := os.WriteFile(path(name), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%q: %w", name, value, err)
	}
	got, err := Get(name)
	if err != nil {
		return err
	}
	if got != value {
		return fmt.Errorf("set sysctl %s=%q: the kernel kept %q", name, value, got)
	}
	return nil
}

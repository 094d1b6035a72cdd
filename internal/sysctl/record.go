package sysctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// Recorder sets parameters like Ensure, and records in File what each one
// was before it first changed it, so that Restore can put the node back as
// it was (svcproxy cleanup), across restarts: a value already recorded is
// never overwritten by one svcproxy set.
type Recorder struct {
	File string
}

// Ensure sets a parameter if it differs, recording its value first.
func (r Recorder) Ensure(name, value string) (bool, error) {
	cur, err := Get(name)
	if err != nil {
		return false, err
	}
	if cur == value {
		return false, nil
	}
	before, err := r.load()
	if err != nil {
		return false, err
	}
	if _, ok := before[name]; !ok {
		before[name] = cur
		if err := r.save(before); err != nil {
			return false, err
		}
	}
	if err := set(name, value); err != nil {
		return false, err
	}
	return true, nil
}

// Setting is a parameter and its value.
type Setting struct{ Name, Value string }

// Restore writes back every recorded value, checks that the kernel took it,
// and forgets the record only when all were restored.
func (r Recorder) Restore() ([]Setting, error) {
	before, err := r.load()
	if err != nil {
		return nil, err
	}
	var out []Setting
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if err := set(name, before[name]); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, Setting{name, before[name]})
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	if err := os.Remove(r.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, err
	}
	return out, nil
}

func (r Recorder) load() (map[string]string, error) {
	m := map[string]string{}
	b, err := os.ReadFile(r.File)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sysctl record: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sysctl record %s: %w", r.File, err)
	}
	return m, nil
}

func (r Recorder) save(m map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(r.File), 0o755); err != nil {
		return fmt.Errorf("save sysctl record: %w", err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(r.File, b, 0o644); err != nil {
		return fmt.Errorf("save sysctl record: %w", err)
	}
	return nil
}

package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Runner runs iptables-save and iptables-restore. Exec is the real one;
// tests of the sync logic can use a fake.
type Runner interface {
	Save(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, input []byte) error
}

// Exec runs the iptables binaries of the current network namespace.
type Exec struct {
	// SaveCmd and RestoreCmd default to iptables-save and iptables-restore.
	SaveCmd, RestoreCmd string
}

func (e Exec) Save(ctx context.Context) ([]byte, error) {
	name := cmp(e.SaveCmd, "iptables-save")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (e Exec) Restore(ctx context.Context, input []byte) error {
	name := cmp(e.RestoreCmd, "iptables-restore")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, "--noflush", "--counters", "--wait")
	cmd.Stdin = bytes.NewReader(input)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &RestoreError{Err: err, Stderr: strings.TrimSpace(stderr.String()), Input: input}
	}
	return nil
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// RestoreError is a failed iptables-restore. Because a restore is one
// transaction per table, nothing of the failed input is in the kernel.
type RestoreError struct {
	Err    error
	Stderr string
	Input  []byte
}

var failedLine = regexp.MustCompile(`line (\d+)`)

// Line returns the number and text of the input line iptables-restore
// complained about, if it said.
func (e *RestoreError) Line() (int, string) {
	m := failedLine.FindStringSubmatch(e.Stderr)
	if m == nil {
		return 0, ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(e.Input), "\n")
	if n < 1 || n > len(lines) {
		return n, ""
	}
	return n, lines[n-1]
}

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("iptables-restore: %v: %s", e.Err, e.Stderr)
	if n, text := e.Line(); text != "" {
		msg += fmt.Sprintf(" (input line %d: %s)", n, text)
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }

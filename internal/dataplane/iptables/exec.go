package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
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
	// Prefix runs the commands through another one, such as
	// ["ip", "netns", "exec", "NS"] to work on another network namespace.
	Prefix []string
}

func (e Exec) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append(append(append([]string{}, e.Prefix...), name), args...)
	return exec.CommandContext(ctx, full[0], full[1:]...)
}

func (e Exec) Save(ctx context.Context) ([]byte, error) {
	name := cmp(e.SaveCmd, "iptables-save")
	var stdout, stderr bytes.Buffer
	cmd := e.command(ctx, name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (e Exec) Restore(ctx context.Context, input []byte) error {
	name := cmp(e.RestoreCmd, "iptables-restore")
	var stderr bytes.Buffer
	cmd := e.command(ctx, name, "--noflush", "--counters", "--wait")
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

var (
	failedLine = regexp.MustCompile(`line:? (\d+)`)
	quotedName = regexp.MustCompile(`'([^' ]+)'`)
)

// Line returns the number and text of the input line that made
// iptables-restore fail. With the nf_tables backend many errors surface only
// at COMMIT, so when the message names an object ("Chain 'X' does not
// exist") the first rule referring to it is returned instead.
func (e *RestoreError) Line() (int, string) {
	lines := strings.Split(string(e.Input), "\n")
	if m := quotedName.FindStringSubmatch(e.Stderr); m != nil {
		for i, l := range lines {
			if strings.HasPrefix(l, "-") && slices.Contains(strings.Fields(l), m[1]) {
				return i + 1, l
			}
		}
	}
	m := failedLine.FindStringSubmatch(e.Stderr)
	if m == nil {
		return 0, ""
	}
	n, _ := strconv.Atoi(m[1])
	if n < 1 || n > len(lines) {
		return n, ""
	}
	return n, lines[n-1]
}

func (e *RestoreError) Error() string {
	var said []string
	for _, l := range strings.Split(e.Stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Try `iptables-restore -h'") {
			said = append(said, l)
		}
	}
	msg := fmt.Sprintf("iptables-restore: %v: %s", e.Err, strings.Join(said, "; "))
	if n, text := e.Line(); text != "" {
		msg += fmt.Sprintf(" (input line %d: %s)", n, text)
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }

package iptables

import (
	"bufio"
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
	// SaveLines runs iptables-save and calls f with each line of its
	// output (valid during the call), stopping at f's first error.
	SaveLines(ctx context.Context, f func(line []byte) error) error
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

// iptablesCmd is the plain iptables tool of the same backend and family.
func (e Exec) iptablesCmd() string {
	if e.SaveCmd != "" {
		return strings.TrimSuffix(e.SaveCmd, "-save")
	}
	return "iptables"
}

func (e Exec) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append(append(append([]string{}, e.Prefix...), name), args...)
	return exec.CommandContext(ctx, full[0], full[1:]...)
}

// Save returns iptables-save's output whole.
func (e Exec) Save(ctx context.Context) ([]byte, error) {
	var out bytes.Buffer
	err := e.SaveLines(ctx, func(line []byte) error {
		out.Write(line)
		return out.WriteByte('\n')
	})
	return out.Bytes(), err
}

// SaveLines reads iptables-save's output as it comes: at 10k Services it
// is 60 MB, which a sync need not hold.
func (e Exec) SaveLines(ctx context.Context, f func(line []byte) error) error {
	name := cmp(e.SaveCmd, "iptables-save")
	var stderr bytes.Buffer
	cmd := e.command(ctx, name)
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var ferr error
	for ferr == nil && sc.Scan() {
		ferr = f(sc.Bytes())
	}
	if ferr == nil {
		ferr = sc.Err()
	}
	if ferr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return ferr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func (e Exec) Restore(ctx context.Context, input []byte) error {
	name := cmp(e.RestoreCmd, "iptables-restore")
	var stderr bytes.Buffer
	// As upstream: wait for the xtables lock at most 5 s, then fail (and the
	// sync is retried) rather than hang behind a stuck holder.
	cmd := e.command(ctx, name, "-w", "5", "--noflush", "--counters")
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

package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the lab started inside a namespace.
type Proc struct {
	cmd  *exec.Cmd
	out  *SafeBuffer
	done chan struct{}
	err  error
}

// Start runs a command inside a namespace (ip netns exec execs it, so the
// pid is the command's own). The lab kills it on Close.
func (l *Lab) Start(ns *NS, name string, args ...string) (*Proc, error) {
	return l.start(exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...), ns, name)
}

// StartNetOnly is Start that enters the network namespace alone (nsenter
// execs the command too): ip netns exec also mounts a sysfs of the
// namespace over /sys, which hides the cgroup file systems a kubelet and a
// container runtime need.
func (l *Lab) StartNetOnly(ns *NS, env []string, name string, args ...string) (*Proc, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns.Name, "--", name}, args...)...)
	cmd.Env = env
	return l.start(cmd, ns, name)
}

func (l *Lab) start(cmd *exec.Cmd, ns *NS, name string) (*Proc, error) {
	buf := &SafeBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s in %s: %w", name, ns.Name, err)
	}
	p := &Proc{cmd: cmd, out: buf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends a signal to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(p.Pid(), sig) }

// Kill sends SIGKILL to the process and waits for it to end.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	killPid(p.Pid())
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end, at most until ctx ends.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitOutput waits until the process has written s.
func (p *Proc) WaitOutput(ctx context.Context, s string) error {
	for {
		if bytes.Contains([]byte(p.Output()), []byte(s)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q in output: %w", s, ctx.Err())
		case <-p.done:
			if bytes.Contains([]byte(p.Output()), []byte(s)) {
				return nil
			}
			return fmt.Errorf("process ended (%v) before writing %q", p.err, s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func killPid(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// SafeBuffer is a bytes.Buffer that many goroutines may write to.
type SafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

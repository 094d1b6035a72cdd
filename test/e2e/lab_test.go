package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

const labPrefix = "svcproxy-lab-" // as cmd/svcproxy names the lab's namespaces

func labNamespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], labPrefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// The README's run command: a NodePort answered by a pod, nothing left over.
func TestLabCommand(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	modes(t, labCommand)
}

func labCommand(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "lab", "--proxy-mode", mode).CombinedOutput()
	if err != nil {
		t.Fatalf("svcproxy lab: %v\n%s", err, out)
	}
	for _, want := range []string{
		"lab: NodePort 192.168.77.1:30450 answered after",
		"answered by pod azure-vote-front-",
		"a rogue process now listens on :30450 in the node; the request is still answered by pod azure-vote-front-",
		"lab: UDP 10.96.0.53:53 (kube-system/kube-dns:dns) from the node: answered by pod coredns-1",
		"lab: removed the lab's namespaces and processes",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if left := labNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

// Ctrl-C removes the lab; a crashed lab's leftovers are removed by the next run.
func TestLabInterruptAndCrash(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	start := func() (*exec.Cmd, *lab.SafeBuffer) {
		cmd := exec.Command(binary, "lab", "--keep")
		w := &lab.SafeBuffer{}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(w.String(), "running until Ctrl-C") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("lab --keep never got ready:\n%s", w.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return cmd, w
	}

	cmd, w := start()
	// --keep says how to look around, for the mode it runs.
	for _, want := range []string{"iptables-save -t nat", binary + " trace --to", binary + " explain default/azure-vote-front", binary + " doctor"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("lab --keep does not suggest %q:\n%s", want, w.String())
		}
	}
	// A second lab would take the first one's namespaces: it is refused,
	// and the first keeps running.
	before := labNamespaces(t)
	out, err := exec.Command(binary, "lab").CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("another svcproxy lab is running (pid %d", cmd.Process.Pid)) {
		t.Errorf("a second lab: %v\n%s", err, out)
	}
	if after := labNamespaces(t); len(after) != len(before) {
		t.Errorf("the second lab changed the first one's namespaces: %v, then %v", before, after)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lab after Ctrl-C: %v\n%s", err, w.String())
	}
	if left := labNamespaces(t); len(left) > 0 {
		t.Fatalf("namespaces left after Ctrl-C: %v", left)
	}

	cmd, _ = start()
	cmd.Process.Kill() // a crash: nothing is cleaned up
	cmd.Wait()
	if len(labNamespaces(t)) == 0 {
		t.Fatal("expected leftovers after SIGKILL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err = exec.CommandContext(ctx, binary, "lab").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "answered by pod") {
		t.Fatalf("lab after a crashed run: %v\n%s", err, out)
	}
	if left := labNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

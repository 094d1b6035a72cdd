package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kube-proxy's --oom-score-adj and --init-only act on the node as they do
// under kube-proxy.
func TestOOMScoreAndInitOnly(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	w := newWorld(t)
	ctx := ctxFor(t, 60*time.Second)

	// A positive score needs no privilege the test machine may lack
	// (-999, kube-proxy's default, needs CAP_SYS_RESOURCE).
	p := w.start("--oom-score-adj", "321")
	if err := p.WaitOutput(ctx, "Services loaded"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/oom_score_adj")
	if err != nil || strings.TrimSpace(string(b)) != "321" {
		t.Errorf("oom_score_adj of svcproxy = %q (%v), want 321", b, err)
	}
	p.Kill()

	// --init-only sets the node up (route_localnet, the NodePort
	// reservation) and exits, programming no Service.
	if _, err := w.node.Run(ctx, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/all/route_localnet; echo > /proc/sys/net/ipv4/ip_local_reserved_ports"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.node.Run(ctx, "iptables", "-t", "nat", "-F"); err != nil {
		t.Fatal(err)
	}
	out, err := w.node.Run(ctx, binary, "run", "--init-only", "--manifests", w.dir, "--hostname-override", w.node.NodeName, "--state-dir", w.stateDir)
	if err != nil {
		t.Fatalf("--init-only: %v\n%s", err, out)
	}
	for file, want := range map[string]string{"/proc/sys/net/ipv4/conf/all/route_localnet": "1", "/proc/sys/net/ipv4/ip_local_reserved_ports": "30000-32767"} {
		if got, err := w.node.Run(ctx, "cat", file); err != nil || strings.TrimSpace(got) != want {
			t.Errorf("%s = %q after --init-only, want %s", file, got, want)
		}
	}
	if rules, _ := w.node.Run(ctx, "iptables-save", "-t", "nat"); strings.Contains(rules, "KUBE-SVC-") {
		t.Errorf("--init-only programmed Services:\n%s", rules)
	}
}

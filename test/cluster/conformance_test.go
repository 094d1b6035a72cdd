package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/cluster"
)

// serviceConformance selects Kubernetes' [sig-network] Services
// conformance specs: 15 in v1.37.2.
const serviceConformance = `\[sig-network\] Services .*\[Conformance\]`

// Kubernetes' own Service conformance tests pass against svcproxy running
// as the DaemonSet of deploy/svcproxy.yaml, from its own image, on a real
// kubelet with containerd and pods: in both modes, side by side. Needs
// root and make cluster-tools images (make test does both); in CI
// (SVCPROXY_E2E_REQUIRED) it must run.
func TestServiceConformance(t *testing.T) {
	bin, images := os.Getenv("SVCPROXY_KUBE_BIN"), os.Getenv("SVCPROXY_IMAGES")
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "not root"
	case bin == "" || images == "":
		missing = "SVCPROXY_KUBE_BIN and SVCPROXY_IMAGES not set (make test sets them)"
	default:
		for _, f := range []string{filepath.Join(bin, "network-e2e.test"), filepath.Join(bin, "kubelet"), filepath.Join(images, "svcproxy.tar")} {
			if _, err := os.Stat(f); err != nil {
				missing = err.Error()
			}
		}
	}
	if missing != "" {
		if os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
			t.Fatalf("the real cluster cannot run: %s", missing)
		}
		t.Skip(missing)
	}
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			start := time.Now()
			c, err := cluster.Up(ctx, cluster.Config{Bin: bin, Images: images, Manifest: "../../deploy/svcproxy.yaml",
				Dir: t.TempDir(), Prefix: "svcconf-" + mode[:3], Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}()
			up := time.Since(start)
			t.Run("kubectl plugin", func(t *testing.T) { kubectlPlugin(t, c, bin) })
			specs, out, err := c.E2E(ctx, filepath.Join(bin, "network-e2e.test"), serviceConformance, "")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var failed []string
			passed := 0
			for _, s := range specs {
				switch s.State {
				case "passed":
					passed++
				default:
					failed = append(failed, s.State+": "+s.Name+": "+firstLine(s.Message))
				}
			}
			t.Logf("%s mode: cluster up in %s, %d of %d Service conformance specs passed in %s", mode, up.Round(time.Second),
				passed, len(specs), (time.Since(start) - up).Round(time.Second))
			if len(failed) > 0 || passed < 15 {
				t.Errorf("%d passed (want all, at least 15); not passed:\n%s\nsvcproxy's log:\n%s", passed, strings.Join(failed, "\n"), c.SvcproxyLog(ctx))
			}
		})
	}
}

// kubectlPlugin runs kubectl-svcproxy as an operator would from a laptop:
// the node list, a node's Services, and the kubernetes Service explained on
// every node, each through kubectl exec into the node's svcproxy pod.
func kubectlPlugin(t *testing.T, c *cluster.Cluster, bin string) {
	plugin := filepath.Join(t.TempDir(), "kubectl-svcproxy")
	if out, err := exec.Command("go", "build", "-o", plugin, "../../cmd/kubectl-svcproxy").CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-svcproxy: %v\n%s", err, out)
	}
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		out, err := c.Lab.Client.Run(ctx, append([]string{plugin, "--kubectl", filepath.Join(bin, "kubectl"), "--kubeconfig", c.AdminKubeconfig}, args...)...)
		if err != nil {
			t.Fatalf("kubectl svcproxy %v: %v\n%s", args, err, out)
		}
		return out
	}
	node := c.Node.NodeName
	if out := run("nodes"); !strings.Contains(out, node) || !strings.Contains(out, "svcproxy-") {
		t.Errorf("nodes:\n%s", out)
	}
	if out := run("--node", node, "services"); !strings.Contains(out, "default/kubernetes:https") {
		t.Errorf("services on %s:\n%s", node, out)
	}
	if out := run("explain", "svc/kubernetes", "-n", "default"); !strings.Contains(out, node) || !strings.Contains(out, "DNAT to 1 endpoint(s)") {
		t.Errorf("explain svc/kubernetes on every node:\n%s", out)
	}
}

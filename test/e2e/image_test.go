package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// svcproxy's image holds exactly what it needs: the files
// deploy/image/rootfs.sh gathers (which both the Dockerfile and make images
// pack) run svcproxy as the node's proxy, chrooted into them, in both
// modes, with rules that load iptables' extensions (statistic for two
// endpoints, comment, mark, conntrack): a NodePort answers from both pods.
func TestImageFilesRunTheProxy(t *testing.T) { modes(t, testImageFilesRunTheProxy) }

func testImageFilesRunTheProxy(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
	root := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("sh", "../../deploy/image/rootfs.sh", "svcproxy", root, binary).CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(root, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	svc := webService("web", "10.96.0.10", 30450, "10.244.0.10", "10.244.0.11")
	if err := os.WriteFile(filepath.Join(root, "manifests", "web.yaml"), []byte(svc), 0o644); err != nil {
		t.Fatal(err)
	}
	// As a container runtime does: /proc and /dev inside, in a mount
	// namespace of the process's own (gone with it).
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := w.lab.Start(&w.node.NS, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"`, root,
		"/usr/local/bin/svcproxy", "run", "--manifests", "/manifests",
		"--hostname-override", w.node.NodeName, "--cluster-cidr", "10.244.0.0/16", "--proxy-mode", mode,
		"--metrics-bind-address", "", "--healthz-bind-address", "", "--state-dir", "/state", "--nodeport-reservation", "off")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("svcproxy (from the image's files) log:\n%s", p.Output())
		}
	})
	ctx := ctxFor(t, 30*time.Second)
	seen := map[string]bool{}
	eventually(t, 20*time.Second, "both pods answer the NodePort", func() error {
		a, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30450")
		if err != nil {
			return err
		}
		seen[a.Pod] = true
		if len(seen) < 2 {
			return fmt.Errorf("answered by %v so far", seen)
		}
		return nil
	})
}

package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// cgroupRoot is the node's cgroup, under which the kubelet puts its pods
// (in every cgroup v1 hierarchy, or the v2 tree), removed on Close: one per
// lab, so that clusters can run side by side.
func (c *Cluster) cgroupRoot() string { return "/" + c.cfg.Prefix + "-node" }

// sandboxImage is the pause image the e2e tests of v1.37.2 name, which
// containerd runs as each pod's sandbox.
const sandboxImage = "registry.k8s.io/pause:3.10.2"

// nodeEnv is the environment of containerd and the kubelet: the cluster's
// binaries first (the runc shim), then the system's (runc, mount, ...).
func (c *Cluster) nodeEnv() []string {
	return []string{"PATH=" + c.cfg.Bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	n := c.Node
	cniDir := c.path("node", "cni")
	// The pods' bridge on the node, with this node's pod range.
	if err := writeFile(filepath.Join(cniDir, "10-pods.conflist"), fmt.Sprintf(`
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR.String())); err != nil {
		return err
	}
	c.containerdSock = c.path("node", "containerd.sock")
	config := c.path("node", "containerd.toml")
	if err := writeFile(config, fmt.Sprintf(`
version = 3
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %q

[plugins.'io.containerd.cri.v1.runtime']
  # These VMs lack CAP_SYS_RESOURCE: runc could not lower a container's
  # oom_score_adj below the runtime's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  tolerate_missing_hugetlb_controller = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = %q

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "/usr/sbin/runc"
`, c.path("node", "containerd", "root"), c.path("node", "containerd", "state"), c.containerdSock, c.containerdSock+".ttrpc",
		sandboxImage, cniDir)); err != nil {
		return err
	}
	if _, err := c.Lab.StartNetOnly(&n.NS, c.nodeEnv(), c.bin("containerd"), "--config", config); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "containerd's socket", func() error {
		_, err := c.ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	for _, img := range []string{"pause", "agnhost", "svcproxy"} {
		if _, err := c.ctr(ctx, "-n", "k8s.io", "images", "import", filepath.Join(c.cfg.Images, img+".tar")); err != nil {
			return fmt.Errorf("import %s: %w", img, err)
		}
	}
	return nil
}

// ctr runs containerd's client against the node's containerd.
func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	return c.Node.Run(ctx, append([]string{c.bin("ctr"), "--address", c.containerdSock}, args...)...)
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	n := c.Node
	if err := c.host.makeCgroupRoot(c.cgroupRoot()); err != nil {
		return err
	}
	// The lab's API server has no Node authorizer: the kubelet is an
	// administrator.
	kubeconfig, err := c.CP.Kubeconfig("kubelet", lab.AdminToken)
	if err != nil {
		return err
	}
	// Pods resolve through CoreDNS; the host's resolv.conf may name
	// servers the lab cannot reach.
	resolv := c.path("node", "resolv.conf")
	if err := writeFile(resolv, "nameserver "+dnsIP.String()+"\n"); err != nil {
		return err
	}
	config := c.path("node", "kubelet.yaml")
	if err := writeFile(config, fmt.Sprintf(`
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines boot with cgroup v1, which the kubelet refuses by default.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [%s]
resolvConf: %s
failSwapOn: false
podLogsDir: %s
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podCIDR: %s
maxPods: 200
`, c.cgroupRoot(), c.containerdSock, dnsIP, resolv, c.path("node", "pod-logs"), n.PodCIDR)); err != nil {
		return err
	}
	if c.kubelet, err = c.Lab.StartNetOnly(&n.NS, c.nodeEnv(), c.bin("kubelet"),
		"--config="+config, "--kubeconfig="+kubeconfig,
		"--root-dir="+c.path("node", "kubelet"), "--cert-dir="+c.path("node", "kubelet-pki"),
		"--hostname-override="+n.NodeName, "--node-ip="+n.IP.String(), "-v=1"); err != nil {
		return err
	}
	err = waitFor(ctx, 120*time.Second, "node "+n.NodeName+" Ready", func() error {
		out, err := c.Kubectl(ctx, "get", "node", n.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w; the kubelet's log ends:\n%s", err, lastLines(c.kubelet.Output(), 30))
	}
	return nil
}

// lastLines is the end of a log.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stopContainers kills every container and shim of the node's containerd
// (the lab kills containerd and the kubelet themselves): a shim outlives
// containerd, and holds its container's mounts.
func (c *Cluster) stopContainers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := c.ctr(ctx, "-n", "k8s.io", "tasks", "list", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.ctr(ctx, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id)
		}
	}
	return killShims(c.containerdSock)
}

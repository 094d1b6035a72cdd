package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// cgroupRoot is a node's cgroup, under which its kubelet puts its pods
// (in every cgroup v1 hierarchy, or the v2 tree), removed on Close: one per
// node of each lab, so that nodes and clusters can run side by side.
func (c *Cluster) cgroupRoot(n *lab.Node) string { return "/" + c.cfg.Prefix + "-" + n.NodeName }

// sandboxImage is the pause image the e2e tests of v1.37.2 name, which
// containerd runs as each pod's sandbox.
const sandboxImage = "registry.k8s.io/pause:3.10.2"

// images are the tarballs (in Config.Images, from make images) every node
// imports: the sandbox, svcproxy's own, and those the e2e specs run, under
// the names they ask for, so that nothing is pulled.
var images = []string{"pause", "svcproxy", "agnhost", "busybox", "iptables", "regression"}

// nodeEnv is the environment of containerd and the kubelet: the cluster's
// binaries first (the runc shim), then the system's (runc, mount, ...).
func (c *Cluster) nodeEnv() []string {
	return []string{"PATH=" + c.cfg.Bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
}

func (c *Cluster) startContainerds(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := c.startContainerd(ctx, n); err != nil {
			return fmt.Errorf("%s: %w", n.NodeName, err)
		}
	}
	return nil
}

// startContainerd starts a node's containerd, with state, socket and CNI
// configuration of its own, and imports the images into it.
func (c *Cluster) startContainerd(ctx context.Context, n *lab.Node) error {
	cniDir := c.path(n.NodeName, "cni")
	// The pods' bridge on the node, with this node's pod range.
	if err := writeFile(filepath.Join(cniDir, "10-pods.conflist"), fmt.Sprintf(`
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR.String(), c.path(n.NodeName, "cni-ipam"))); err != nil {
		return err
	}
	sock := c.path(n.NodeName, "containerd.sock")
	config := c.path(n.NodeName, "containerd.toml")
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
  Root = %q
`, c.path(n.NodeName, "containerd", "root"), c.path(n.NodeName, "containerd", "state"), sock, sock+".ttrpc",
		sandboxImage, cniDir, c.path(n.NodeName, "runc"))); err != nil {
		return err
	}
	if _, err := c.Lab.StartNetOnly(&n.NS, c.nodeEnv(), c.bin("containerd"), "--config", config); err != nil {
		return err
	}
	c.containerdSocks = append(c.containerdSocks, sock)
	if err := waitFor(ctx, 30*time.Second, "containerd's socket", func() error {
		_, err := c.ctr(ctx, n, sock, "version")
		return err
	}); err != nil {
		return err
	}
	for _, img := range images {
		if _, err := c.ctr(ctx, n, sock, "-n", "k8s.io", "images", "import", filepath.Join(c.cfg.Images, img+".tar")); err != nil {
			return fmt.Errorf("import %s: %w", img, err)
		}
	}
	return nil
}

// ctr runs containerd's client against a node's containerd.
func (c *Cluster) ctr(ctx context.Context, n *lab.Node, sock string, args ...string) (string, error) {
	return n.Run(ctx, append([]string{c.bin("ctr"), "--address", sock}, args...)...)
}

func (c *Cluster) startKubelets(ctx context.Context) error {
	for i, n := range c.Nodes {
		if err := c.startKubelet(ctx, n, c.containerdSocks[i]); err != nil {
			return fmt.Errorf("%s: %w", n.NodeName, err)
		}
	}
	return nil
}

// startKubelet starts a node's kubelet, with its root, cgroup and
// configuration of its own, and waits for its Node to be Ready.
func (c *Cluster) startKubelet(ctx context.Context, n *lab.Node, sock string) error {
	if err := c.host.makeCgroupRoot(c.cgroupRoot(n)); err != nil {
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
	resolv := c.path(n.NodeName, "resolv.conf")
	if err := writeFile(resolv, "nameserver "+dnsIP.String()+"\n"); err != nil {
		return err
	}
	config := c.path(n.NodeName, "kubelet.yaml")
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
`, c.cgroupRoot(n), sock, dnsIP, resolv, c.path(n.NodeName, "pod-logs"), n.PodCIDR)); err != nil {
		return err
	}
	kubelet, err := c.Lab.StartNetOnly(&n.NS, c.nodeEnv(), c.bin("kubelet"),
		"--config="+config, "--kubeconfig="+kubeconfig,
		"--root-dir="+c.path(n.NodeName, "kubelet"), "--cert-dir="+c.path(n.NodeName, "kubelet-pki"),
		"--hostname-override="+n.NodeName, "--node-ip="+n.IP.String(), "-v=1")
	if err != nil {
		return err
	}
	c.kubelets = append(c.kubelets, kubelet)
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
		return fmt.Errorf("%w; the kubelet's log ends:\n%s", err, lastLines(kubelet.Output(), 30))
	}
	return nil
}

// lastLines is the end of a log.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stopContainers kills every container and shim of a node's containerd
// (the lab kills containerd and the kubelet themselves): a shim outlives
// containerd, and holds its container's mounts.
func (c *Cluster) stopContainers(n *lab.Node, sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := c.ctr(ctx, n, sock, "-n", "k8s.io", "containers", "list", "-q"); err == nil {
		c.host.containers = append(c.host.containers, strings.Fields(out)...)
	}
	if out, err := c.ctr(ctx, n, sock, "-n", "k8s.io", "tasks", "list", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.ctr(ctx, n, sock, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id)
		}
	}
	return killShims(sock)
}

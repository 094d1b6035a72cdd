// Package cluster brings up a real one-node Kubernetes cluster on this
// machine, inside a lab (internal/lab) so that the host keeps its network:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and CoreDNS
// in the control-plane namespace, containerd and a kubelet in the node's
// namespace (pods on a CNI bridge there), images imported from tarballs
// (nothing is pulled), and svcproxy itself as the DaemonSet of
// deploy/svcproxy.yaml from its own image. Close stops every process it
// started, unmounts and removes what the node made, and restores the
// kernel-wide settings the kubelet changed.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// Config is where the parts are and how svcproxy runs.
type Config struct {
	// Bin holds kube-apiserver, server (etcd), kube-controller-manager,
	// kube-scheduler, kubelet, kubectl, containerd,
	// containerd-shim-runc-v2 and coredns (make cluster-tools).
	Bin string
	// Images holds the image tarballs of make images (see images).
	Images string
	// Manifest is deploy/svcproxy.yaml.
	Manifest string
	// Dir keeps the cluster's state; it is removed on Close.
	Dir string
	// Prefix names the lab's namespaces.
	Prefix string
	// Mode is svcproxy's proxy mode (iptables or nftables).
	Mode string
	// FeatureGates and NodePortAddresses, when set, go into svcproxy's
	// KubeProxyConfiguration (featureGates, nodePortAddresses).
	FeatureGates      map[string]bool
	NodePortAddresses []string
	// Nodes is how many nodes (kubelets) the cluster has: 1 unless set.
	Nodes int
	// Log gets progress, one line per step.
	Log io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	cfg Config
	Lab *lab.Lab
	CP  *lab.ControlPlane
	// Node is the first node; Nodes all of them.
	Node  *lab.Node
	Nodes []*lab.Node
	// AdminKubeconfig reaches the API server as an administrator from the
	// lab's client namespace (where kubectl and the e2e tests run).
	AdminKubeconfig string
	host            *hostState
	// kubelets and containerdSocks are per node, as started.
	kubelets        []*lab.Proc
	containerdSocks []string
}

// Up brings the cluster up, step by step, and returns once svcproxy's pod
// is ready on the node. On error, what was started is stopped again.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Mode == "" {
		cfg.Mode = "iptables"
	}
	cfg.Nodes = max(cfg.Nodes, 1)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg}
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"save the kernel-wide settings the node changes", c.saveHost},
		{"build the lab's namespaces", c.buildLab},
		{"start etcd and kube-apiserver", c.startAPIServer},
		{"start kube-controller-manager, kube-scheduler and CoreDNS", c.startControllers},
		{"start containerd in each node's namespace and import the images", c.startContainerds},
		{"start the kubelets and wait for the nodes to be Ready", c.startKubelets},
		{"apply deploy/svcproxy.yaml (svcproxy " + cfg.Mode + " mode) and wait for its pods", c.deploySvcproxy},
	}
	for _, s := range steps {
		start := time.Now()
		c.logf("%s ...", s.what)
		if err := s.do(ctx); err != nil {
			err = fmt.Errorf("%s: %w", s.what, err)
			if cerr := c.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
			return nil, err
		}
		c.logf("  done in %s", time.Since(start).Round(100*time.Millisecond))
	}
	return c, nil
}

func (c *Cluster) logf(format string, a ...any) {
	if c.cfg.Log != nil {
		fmt.Fprintf(c.cfg.Log, format+"\n", a...)
	}
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.cfg.Bin, name) }

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.cfg.Dir}, parts...)...)
}

func (c *Cluster) buildLab(ctx context.Context) error {
	l, err := lab.Build(ctx, lab.Config{Prefix: c.cfg.Prefix, Nodes: c.cfg.Nodes, ControlPlane: true})
	if err != nil {
		return err
	}
	c.Lab, c.Node, c.Nodes = l, l.Nodes[0], l.Nodes
	// CoreDNS and the API server answer pods from the control-plane
	// namespace: the way back to them is through their node.
	for _, n := range c.Nodes {
		if _, err := l.CP.Run(ctx, "ip", "route", "add", n.PodCIDR.String(), "via", n.IP.String()); err != nil {
			return err
		}
	}
	return nil
}

// Kubectl runs kubectl as the administrator from the client namespace.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.Lab.Client.Run(ctx, append([]string{c.bin("kubectl"), "--kubeconfig", c.AdminKubeconfig}, args...)...)
}

// Close stops the cluster: the node's pods and processes, the control
// plane, the lab; then it undoes what the node did to the host.
func (c *Cluster) Close() error {
	var errs []error
	// The kubelets first, so that they restart none of the containers
	// killed next.
	for _, k := range c.kubelets {
		k.Kill()
	}
	for i, sock := range c.containerdSocks {
		errs = append(errs, c.stopContainers(c.Nodes[i], sock))
	}
	if c.Lab != nil {
		errs = append(errs, c.Lab.Close())
	}
	if c.host != nil {
		errs = append(errs, c.host.restore(c.cfg.Dir))
	}
	if c.cfg.Dir != "" {
		errs = append(errs, os.RemoveAll(c.cfg.Dir))
	}
	return errors.Join(errs...)
}

// waitFor retries check until it passes or timeout ends, and then returns
// its last error.
func waitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// writeFile writes a file of the cluster's state.
func writeFile(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.TrimLeft(body, "\n")), 0o600)
}

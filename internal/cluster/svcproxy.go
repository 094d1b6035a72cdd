package cluster

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// proxyConfig is the ConfigMap's config lines for Config.FeatureGates and
// Config.NodePortAddresses.
func (c *Cluster) proxyConfig() string {
	var b strings.Builder
	if len(c.cfg.FeatureGates) > 0 {
		b.WriteString("    featureGates:\n")
		for _, name := range slices.Sorted(maps.Keys(c.cfg.FeatureGates)) {
			fmt.Fprintf(&b, "      %s: %t\n", name, c.cfg.FeatureGates[name])
		}
	}
	if len(c.cfg.NodePortAddresses) > 0 {
		fmt.Fprintf(&b, "    nodePortAddresses: [%s]\n", strings.Join(c.cfg.NodePortAddresses, ", "))
	}
	return b.String()
}

// deploySvcproxy applies deploy/svcproxy.yaml as an operator would, with
// these edits: the proxy mode (and the feature gates and NodePort addresses
// given), and the API server's address, which a node proxy cannot reach
// through the kubernetes Service it has yet to program (kubeadm gives
// kube-proxy the same in its kubeconfig).
func (c *Cluster) deploySvcproxy(ctx context.Context) error {
	manifest, err := os.ReadFile(c.cfg.Manifest)
	if err != nil {
		return err
	}
	text := strings.Replace(string(manifest), "    mode: iptables\n", "    mode: "+c.cfg.Mode+"\n"+c.proxyConfig(), 1)
	text = strings.Replace(text, "        env:\n", fmt.Sprintf(`        env:
        - name: KUBERNETES_SERVICE_HOST
          value: %q
        - name: KUBERNETES_SERVICE_PORT
          value: "6443"
`, lab.ControlPlaneIP), 1)
	if !strings.Contains(text, "mode: "+c.cfg.Mode) || !strings.Contains(text, "KUBERNETES_SERVICE_HOST") {
		return fmt.Errorf("%s: no config mode or container env to set", c.cfg.Manifest)
	}
	path := c.path("svcproxy.yaml")
	if err := writeFile(path, text); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", path); err != nil {
		return err
	}
	return waitFor(ctx, 120*time.Second, "svcproxy's pod Ready", func() error {
		out, err := c.Kubectl(ctx, "-n", "kube-system", "get", "pods", "-l", "k8s-app=svcproxy",
			"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			return err
		}
		lines := strings.Fields(strings.ReplaceAll(strings.TrimSpace(out), " ", "="))
		ready := 0
		for _, l := range lines {
			if strings.HasSuffix(l, "=True") {
				ready++
			}
		}
		if ready < len(c.Nodes) {
			return fmt.Errorf("%d of %d nodes' pods ready: %q", ready, len(c.Nodes), strings.TrimSpace(out))
		}
		return nil
	})
}

// SvcproxyLog is the log of svcproxy's pod.
func (c *Cluster) SvcproxyLog(ctx context.Context) string {
	out, err := c.Kubectl(ctx, "-n", "kube-system", "logs", "-l", "k8s-app=svcproxy", "--tail=200")
	if err != nil {
		return err.Error()
	}
	return out
}

// ApplyText applies manifests given as text, as the administrator.
func (c *Cluster) ApplyText(ctx context.Context, manifests string) (string, error) {
	path := filepath.Join(c.cfg.Dir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	if err := writeFile(path, manifests); err != nil {
		return "", err
	}
	return c.Kubectl(ctx, "apply", "-f", path)
}

// Curl GETs url from the client namespace ("client") or the node's
// ("node") and returns the body.
func (c *Cluster) Curl(ctx context.Context, from, url string) (string, error) {
	ns := c.Lab.Client
	if from == "node" {
		ns = &c.Node.NS
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: ns.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

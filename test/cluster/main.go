// Command cluster (make cluster) brings up a real one-node Kubernetes
// cluster on this machine with svcproxy as its proxy, from its own image as
// the DaemonSet of deploy/svcproxy.yaml, and shows a Deployment behind a
// NodePort Service answering through it; then it waits for Ctrl-C and
// removes everything. Everything runs inside network namespaces of its own
// (see internal/cluster): the host's network is untouched.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/svcproxy/svcproxy/internal/cluster"
	"github.com/svcproxy/svcproxy/internal/config"
)

func main() {
	home, _ := os.UserHomeDir()
	bin := flag.String("bin", filepath.Join(home, ".cache/svcproxy-kube/v1.37.2"), "the cluster's binaries (make cluster-tools)")
	images := flag.String("images", "bin/images", "the images' tarballs (make images)")
	mode := flag.String("mode", "iptables", "svcproxy's proxy mode: iptables or nftables")
	nodes := flag.Int("nodes", 1, "how many nodes (kubelets, each in a namespace of its own)")
	keep := flag.Bool("wait", true, "after the demo, keep the cluster until Ctrl-C")
	focus := flag.String("e2e-focus", "", "instead of the demo, run the e2e specs matching this (network-e2e.test in -bin) and print each one's outcome")
	skip := flag.String("e2e-skip", "", "with -e2e-focus, leave out the specs matching this")
	e2eLog := flag.String("e2e-log", "", "with -e2e-focus, write the e2e run's whole output (each failure's log) to this file")
	var gates config.FeatureGates
	flag.Var(&gates, "feature-gates", "svcproxy's feature gates in its KubeProxyConfiguration, NAME=true|false,...")
	nodePortAddresses := flag.String("nodeport-addresses", "", "svcproxy's nodePortAddresses, comma-separated (e.g. localhost,primary)")
	flag.Parse()
	if *focus != "" {
		*keep = false
	}
	cfg := cluster.Config{Bin: *bin, Images: *images, Manifest: "deploy/svcproxy.yaml",
		Prefix: "svcc-" + (*mode)[:3], Mode: *mode, Nodes: *nodes, Log: os.Stdout, FeatureGates: gates}
	if *nodePortAddresses != "" {
		cfg.NodePortAddresses = strings.Split(*nodePortAddresses, ",")
	}
	if err := run(cfg, *keep, *focus, *skip, *e2eLog); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(cfg cluster.Config, wait bool, focus, skip, e2eLog string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "svcproxy-cluster-")
	if err != nil {
		return err
	}
	cfg.Dir = dir
	start := time.Now()
	c, err := cluster.Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("removing the cluster ...")
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: cleanup:", err)
		}
	}()
	for _, n := range c.Nodes {
		fmt.Printf("node %s: %s, pods %s\n", n.NodeName, n.IP, n.PodCIDR)
	}
	fmt.Printf("cluster up in %s, svcproxy %s mode\n", time.Since(start).Round(time.Second), cfg.Mode)
	if focus != "" {
		return e2e(ctx, c, filepath.Join(cfg.Bin, "network-e2e.test"), focus, skip, e2eLog)
	}
	if err := demo(ctx, c); err != nil {
		fmt.Println(c.SvcproxyLog(context.Background()))
		return err
	}
	if !wait {
		return nil
	}
	fmt.Printf("kubectl: ip netns exec %s %s/kubectl --kubeconfig %s get pods -A\nCtrl-C removes everything.\n",
		c.Lab.Client.Name, cfg.Bin, c.AdminKubeconfig)
	<-ctx.Done()
	return nil
}

// demo runs a Deployment of two agnhost pods behind a NodePort Service and
// asks it, from outside the node and from the node, who answers.
func demo(ctx context.Context, c *cluster.Cluster) error {
	manifest := `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.66.1
        args: [netexec, --http-port=8080]
        readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
`
	if _, err := c.ApplyText(ctx, manifest); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "rollout", "status", "deployment/web", "--timeout=120s"); err != nil {
		return err
	}
	ip, err := c.Kubectl(ctx, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return err
	}
	for _, t := range []struct{ from, url string }{
		{"client", "http://" + c.Node.IP.String() + ":30080/hostname"},
		{"node", "http://" + strings.TrimSpace(ip) + ":80/hostname"},
	} {
		// The EndpointSlice may follow the rollout by a moment: ask until
		// both pods have answered.
		seen := map[string]int{}
		deadline := time.Now().Add(30 * time.Second)
		for len(seen) < 2 {
			out, err := c.Curl(ctx, t.from, t.url)
			if err == nil {
				seen[out]++
			} else if time.Now().After(deadline) {
				return fmt.Errorf("%s to %s: %w", t.from, t.url, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s to %s: only %v answered in 30s", t.from, t.url, seen)
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Printf("%s -> %s: answered by %v\n", t.from, t.url, seen)
	}
	return nil
}

// e2e runs the specs and prints one line per spec and a count; the whole
// output goes to logFile when given.
func e2e(ctx context.Context, c *cluster.Cluster, binary, focus, skip, logFile string) error {
	start := time.Now()
	specs, out, err := c.E2E(ctx, binary, focus, skip)
	if logFile != "" {
		if werr := os.WriteFile(logFile, []byte(out), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "cluster:", werr)
		} else {
			fmt.Println("the e2e run's output:", logFile)
		}
	}
	if err != nil {
		fmt.Println(out)
		return err
	}
	count := map[string]int{}
	for _, s := range specs {
		count[s.State]++
		line := fmt.Sprintf("%-7s %6.1fs  %s", s.State, s.Took.Seconds(), s.Name)
		if s.State != "passed" && s.Message != "" {
			line += "\n        " + strings.ReplaceAll(firstLine(s.Message), "\n", " ")
		}
		fmt.Println(line)
	}
	fmt.Printf("e2e: %d passed, %d failed, %d skipped in %s\n", count["passed"], count["failed"], count["skipped"], time.Since(start).Round(time.Second))
	if count["failed"] > 0 {
		return fmt.Errorf("%d specs failed", count["failed"])
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

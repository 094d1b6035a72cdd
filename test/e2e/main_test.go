// Package e2e runs svcproxy against the real kernel: real iptables-restore,
// real TCP and UDP traffic, all inside throwaway network namespaces built by
// internal/lab. The machine's own namespace is never touched.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var (
	binary     string // the svcproxy binary under test
	skipReason string
	labSeq     atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "real-kernel tests need root (network namespaces)"
	default:
		for _, tool := range []string{"ip", "iptables-save", "iptables-restore"} {
			if _, err := exec.LookPath(tool); err != nil {
				skipReason = tool + " not installed (make deps installs it)"
			}
		}
	}
	if skipReason != "" && os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
		fmt.Fprintf(os.Stderr, "SVCPROXY_E2E_REQUIRED is set but the real-kernel tests cannot run: %s\n", skipReason)
		return 1
	}
	if skipReason == "" {
		dir, err := os.MkdirTemp("", "svcproxy-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "svcproxy")
		out, err := exec.Command("go", "build", "-o", binary, "../../cmd/svcproxy").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build svcproxy: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// isRequired reports whether skipping is a failure (CI).
func isRequired() bool { return os.Getenv("SVCPROXY_E2E_REQUIRED") != "" }

// world is one lab with a manifests folder and svcproxy on node-1.
type world struct {
	t        testing.TB
	lab      *lab.Lab
	dir      string
	stateDir string
	node     *lab.Node
	// mode is the --proxy-mode start passes ("" for the default, iptables).
	mode string
}

func newWorld(t *testing.T, pods ...lab.PodSpec) *world {
	t.Helper()
	return newWorldCfg(t, lab.Config{Nodes: 1, Pods: pods})
}

// newWorldCfg builds a lab from cfg (its prefix is chosen here).
func newWorldCfg(t *testing.T, cfg lab.Config) *world {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Prefix = fmt.Sprintf("svt%d-%d", os.Getpid()%100000, labSeq.Add(1))
	l, err := lab.Build(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return &world{t: t, lab: l, dir: t.TempDir(), stateDir: t.TempDir(), node: l.Nodes[0]}
}

func (w *world) write(name, yaml string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, name), []byte(yaml), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) remove(name string) {
	w.t.Helper()
	if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
		w.t.Fatal(err)
	}
}

// start runs svcproxy in the node; its log is attached to the test on
// failure.
func (w *world) start(extra ...string) *lab.Proc {
	w.t.Helper()
	args := append([]string{"run", "--manifests", w.dir, "--hostname-override", w.node.NodeName,
		"--cluster-cidr", "10.244.0.0/16", "--iptables-min-sync-period", "100ms", "--state-dir", w.stateDir,
		"--metrics-bind-address", "127.0.0.1:10249"}, extra...)
	if w.mode != "" {
		args = append(args, "--proxy-mode", w.mode)
	}
	p, err := w.lab.Start(&w.node.NS, binary, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		if w.t.Failed() {
			w.t.Logf("svcproxy (pid %d) log:\n%s", p.Pid(), p.Output())
		}
	})
	return p
}

func (w *world) iptablesSave() string {
	w.t.Helper()
	out, err := w.node.Run(context.Background(), "iptables-save")
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// nftList is the node's kube-proxy table as nft lists it ("" when absent).
func (w *world) nftList() string {
	w.t.Helper()
	out, err := w.node.Run(context.Background(), "nft", "list", "table", "ip", "kube-proxy")
	if err != nil {
		return ""
	}
	return out
}

// nftTable is the node's ip kube-proxy table, parsed.
func (w *world) nftTable() *netfilter.NftTable {
	w.t.Helper()
	rs, err := netfilter.ParseNft(w.nftList())
	if err != nil {
		w.t.Fatalf("parse nft list: %v", err)
	}
	return rs.Tables[0]
}

// nodePortProgrammed reports whether the NodePort's dispatch is installed.
func (w *world) nodePortProgrammed(port int) bool {
	if w.mode == "nftables" {
		return strings.Contains(w.nftList(), fmt.Sprintf("tcp . %d : goto external-", port))
	}
	return strings.Contains(w.iptablesSave(), fmt.Sprintf("--dport %d -j KUBE-EXT-", port))
}

// hookJumps counts the jumps from the kernel's hooks into svcproxy's
// dispatch: one, however often svcproxy restarted.
func (w *world) hookJumps() int {
	if w.mode == "nftables" {
		list := w.nftList()
		i := strings.Index(list, "chain nat-prerouting {")
		if i < 0 {
			return 0
		}
		body := list[i : i+strings.Index(list[i:], "}")]
		return strings.Count(body, "jump services")
	}
	return strings.Count(w.iptablesSave(), "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
}

// modes runs a test in both proxy modes.
func modes(t *testing.T, f func(t *testing.T, mode string)) {
	for _, m := range []string{"iptables", "nftables"} {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// webService is a NodePort Service with the given endpoints on node-1.
func webService(name, clusterIP string, nodePort int, endpoints ...string) string {
	return webServiceIn("default", name, clusterIP, nodePort, endpoints...)
}

// webServiceIn is webService in namespace ns.
func webServiceIn(ns, name, clusterIP string, nodePort int, endpoints ...string) string {
	var eps strings.Builder
	for _, ip := range endpoints {
		fmt.Fprintf(&eps, "- addresses: [%q]\n  nodeName: node-1\n", ip)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[5]s}
spec:
  type: NodePort
  clusterIP: %[2]s
  ports: [{port: 80, targetPort: 80, nodePort: %[3]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-abcde
  namespace: %[5]s
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{port: 80}]
endpoints:
%[4]s`, name, clusterIP, nodePort, eps.String(), ns)
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/lab"
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

// Before its rules are in the kernel the proxy is alive but not ready: an
// API server that never answers keeps /healthz at 503 (load balancers keep
// away), while /livez stays 200 (the pod is not restarted for waiting); the
// log says why it waits, and doctor fails the node.
func TestHealthzNotReadyBeforeTheFirstSync(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	w := newWorld(t)
	ctx := ctxFor(t, 60*time.Second)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := w.lab.Start(&w.node.NS, binary, "run", "--kubeconfig", kubeconfig, "--hostname-override", w.node.NodeName,
		"--healthz-bind-address", "127.0.0.1", "--state-dir", w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.WaitOutput(ctx, "waiting for the API server caches to sync"); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/healthz": "503", "/livez": "200"} {
		eventually(t, 5*time.Second, path, func() error {
			code, err := w.node.Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:10256"+path)
			if err != nil || code != want {
				return fmt.Errorf("%s %v, want %s", code, err, want)
			}
			return nil
		})
	}
	if err := p.WaitOutput(ctx, `cannot list or watch the API server; retrying`); err != nil {
		t.Error(err)
	}
	if !strings.Contains(p.Output(), "127.0.0.1:1") || !strings.Contains(p.Output(), "connection refused") {
		t.Errorf("the log does not say what failed:\n%s", p.Output())
	}
	out, err := w.node.Run(ctx, binary, "doctor")
	if err == nil || !strings.Contains(out, "FAIL  proxy") {
		t.Errorf("doctor passes a proxy that never synced:\n%s", out)
	}
}

// The conntrack flags set the node's conntrack sysctls as kube-proxy sets
// them (the timeouts are the network namespace's; nf_conntrack_max is
// kernel-wide, raised only when below what is asked: here it is not), and
// with tcp_be_liberal on iptables mode drops no INVALID packets.
func TestConntrackSysctls(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	w := newWorld(t)
	ctx := ctxFor(t, 60*time.Second)
	hostMax, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		t.Fatal(err)
	}
	p := w.start("--conntrack-tcp-timeout-established=2h", "--conntrack-tcp-timeout-close-wait=30m", "--conntrack-tcp-be-liberal",
		"--conntrack-udp-timeout=45s", "--conntrack-udp-timeout-stream=3m", "--conntrack-max-per-core=1024", "--conntrack-min=4096")
	if err := p.WaitOutput(ctx, "Services loaded"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"nf_conntrack_tcp_timeout_established": "7200", "nf_conntrack_tcp_timeout_close_wait": "1800",
		"nf_conntrack_tcp_be_liberal": "1", "nf_conntrack_udp_timeout": "45", "nf_conntrack_udp_timeout_stream": "180",
	} {
		if got, err := w.node.Run(ctx, "cat", "/proc/sys/net/netfilter/"+name); err != nil || strings.TrimSpace(got) != want {
			t.Errorf("%s = %q (%v), want %s", name, got, err, want)
		}
	}
	if now, _ := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max"); string(now) != string(hostMax) {
		t.Errorf("nf_conntrack_max changed from %s to %s though it was above what was asked", hostMax, now)
	}
	eventually(t, 5*time.Second, "KUBE-FORWARD without the INVALID drop", func() error {
		rules := w.iptablesSave()
		if !strings.Contains(rules, "-A KUBE-FORWARD") || strings.Contains(rules, "--ctstate INVALID -j DROP") {
			return fmt.Errorf("KUBE-FORWARD:\n%s", rules)
		}
		return nil
	})
}

// The node's addresses in --nodeport-addresses are read at every sync, as
// upstream: an address added after the start serves NodePorts from the
// next sync on, in both modes.
func TestNodePortAddressAddedLater(t *testing.T) { modes(t, testNodePortAddressAddedLater) }

func testNodePortAddressAddedLater(t *testing.T, mode string) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.mode = mode
	ctx := ctxFor(t, 60*time.Second)
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	if _, err := w.lab.Client.Run(ctx, "ip", "route", "add", "192.168.99.1/32", "via", w.node.IP.String()); err != nil {
		t.Fatal(err)
	}
	p := w.start("--nodeport-addresses", "192.168.99.0/24", "--iptables-sync-period", "1s")
	if err := p.WaitOutput(ctx, "Services loaded"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := w.lab.Client.HTTPGet(ctx, "192.168.99.1:30450"); err == nil {
		t.Fatal("a NodePort answered on an address the node does not have yet")
	}
	if _, err := w.node.Run(ctx, "ip", "addr", "add", "192.168.99.1/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the NodePort on the new address", func() error {
		a, err := w.lab.Client.HTTPGet(ctx, "192.168.99.1:30450")
		if err == nil && a.Pod != "web-1" {
			return fmt.Errorf("answered by %s", a.Pod)
		}
		return err
	})
}

// On a node whose kubelet uses iptables-legacy, svcproxy writes its rules
// there too, as upstream's image does; otherwise to iptables-nft.
func TestIPTablesBackendFollowsTheNode(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	w := newWorld(t)
	ctx := ctxFor(t, 60*time.Second)
	prefix := []string{"ip", "netns", "exec", w.node.Name}
	if got := iptables.Backend(ctx, prefix...); got != "nft" {
		t.Errorf("an empty node: backend %q, want nft", got)
	}
	if _, err := w.node.Run(ctx, "iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"); err != nil {
		t.Fatal(err)
	}
	if got := iptables.Backend(ctx, prefix...); got != "legacy" {
		t.Errorf("kubelet's hint in legacy: backend %q, want legacy", got)
	}
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if err := p.WaitOutput(ctx, "iptables backend legacy"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the rules in iptables-legacy", func() error {
		legacy, _ := w.node.Run(ctx, "iptables-legacy-save", "-t", "nat")
		if !strings.Contains(legacy, "--dport 30450") {
			return fmt.Errorf("not in legacy:\n%s", legacy)
		}
		return nil
	})
	if nft, _ := w.node.Run(ctx, "iptables-nft-save", "-t", "nat"); strings.Contains(nft, "KUBE-SERVICES") {
		t.Errorf("rules also in iptables-nft:\n%s", nft)
	}
	p.Kill()
	if out, err := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if legacy, _ := w.node.Run(ctx, "iptables-legacy-save", "-t", "nat"); strings.Contains(legacy, "KUBE-SERVICES") {
		t.Errorf("cleanup left the legacy rules:\n%s", legacy)
	}
	_, _ = w.node.Run(ctx, "iptables-legacy", "-t", "mangle", "-X", "KUBE-IPTABLES-HINT")
}

// detect-local BridgeInterface and InterfaceNamePrefix tell pod traffic by
// the interface it arrives on: a pod calling a cluster IP keeps its source
// address when its interface matches (the lab's pod veths are vpN), and is
// masqueraded when it does not.
func TestDetectLocalByInterface(t *testing.T) { modes(t, testDetectLocalByInterface) }

func testDetectLocalByInterface(t *testing.T, mode string) {
	for _, tt := range []struct {
		flags []string
		kept  bool
	}{
		{[]string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "vp"}, true},
		{[]string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "cali"}, false},
		{[]string{"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0"}, false},
	} {
		t.Run(strings.Join(tt.flags[2:], "="), func(t *testing.T) {
			w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "client-pod"})
			w.mode = mode
			ctx := ctxFor(t, 60*time.Second)
			w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
			client := w.lab.Pods[1]
			w.start(tt.flags...)
			a, err := client.WaitHTTP(ctx, "10.96.0.10:80")
			if err != nil {
				t.Fatal(err)
			}
			kept := strings.HasPrefix(a.Remote, client.IP.String()+":")
			if a.Pod != "web-1" || kept != tt.kept {
				t.Errorf("web-1 saw %+v; want the pod's source %s kept: %v", a, client.IP, tt.kept)
			}
		})
	}
}

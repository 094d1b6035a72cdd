package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// proxy is a service proxy the takeover tests run on the node: upstream
// kube-proxy v1.37.2 or svcproxy, in a mode.
type proxy struct{ name, mode string }

func (p proxy) String() string { return p.name + " " + p.mode }

// takeoverLab is lab nodes with an API server, the Services the scenarios
// send traffic to, and the proxies they switch between.
type takeoverLab struct {
	t          *testing.T
	l          *lab.Lab
	kubeconfig string
	kubeProxy  string
	stateDirs  []string
	// client is the pod the cluster IP and UDP traffic comes from.
	client    *lab.Pod
	nodePort  string // a node's IP:NodePort of web (the node the clients' pod is on)
	clusterIP string // web's cluster IP:80
	dnsIP     string // dns's cluster IP:53 (UDP)
}

// newTakeoverLab builds the lab: with one node every pod is on it; with
// three, web's two pods are on node-1 and node-3, and the clients' pod and
// the DNS pod on node-2, whose NodePort the client outside uses: every
// request crosses nodes.
func newTakeoverLab(t *testing.T, nodes int) *takeoverLab {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	bins := kubeBinaries(t)
	kubeProxy := filepath.Join(bins, "kube-proxy")
	if _, err := os.Stat(kubeProxy); err != nil {
		msg := "kube-proxy not built: run make kube-tools"
		if isRequired() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx := ctxFor(t, 2*time.Minute)
	on := func(i int) int { return min(i, nodes-1) }
	l, err := lab.Build(ctx, lab.Config{
		Prefix: fmt.Sprintf("svto%d-%d", os.Getpid()%100000, nodes), Nodes: nodes, ControlPlane: true,
		Pods: []lab.PodSpec{
			{Name: "web-1", Node: 0, TCP: []int{80}}, {Name: "web-2", Node: on(2), TCP: []int{80}},
			{Name: "dns-1", Node: on(1), UDP: []int{53}}, {Name: "client-pod", Node: on(1), TCP: []int{8080}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cp, err := l.StartControlPlane(ctx, bins, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range l.Nodes {
		createNode(t, admin, node, nil)
	}
	web, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dns, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "dns"},
			Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DiscoveryV1().EndpointSlices("default").Create(ctx,
		endpointSlice("web", "web-abc12", 80, l, l.Pods[0].IP.String(), l.Pods[1].IP.String()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	udp, port, name := corev1.ProtocolUDP, int32(53), "dns"
	if _, err := admin.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "dns-abc12", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &udp}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{l.Pods[2].IP.String()}, NodeName: &l.Nodes[on(1)].NodeName}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-proxy reads the same Services as svcproxy with the admin's
	// rights (its own ClusterRole is not the test's subject).
	kubeconfig, err := cp.Kubeconfig("admin", lab.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	tl := &takeoverLab{t: t, l: l, kubeconfig: kubeconfig, kubeProxy: kubeProxy, client: l.Pods[3],
		nodePort: fmt.Sprintf("%s:%d", l.Nodes[on(1)].IP, web.Spec.Ports[0].NodePort), clusterIP: web.Spec.ClusterIP + ":80", dnsIP: dns.Spec.ClusterIP + ":53"}
	for range l.Nodes {
		tl.stateDirs = append(tl.stateDirs, t.TempDir())
	}
	return tl
}

// start runs a proxy and waits until it has programmed the node.
func (n *takeoverLab) start(ctx context.Context, p proxy, i int) *lab.Proc {
	n.t.Helper()
	var bin string
	var args []string
	switch p.name {
	case "kube-proxy":
		// No kernel-wide conntrack sysctls: the lab must leave the host as
		// it was.
		bin, args = n.kubeProxy, []string{"--kubeconfig", n.kubeconfig, "--hostname-override", n.l.Nodes[i].NodeName,
			"--cluster-cidr", "10.244.0.0/16", "--proxy-mode", p.mode, "--conntrack-max-per-core", "0",
			"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249"}
	default:
		bin, args = binary, []string{"run", "--kubeconfig", n.kubeconfig, "--hostname-override", n.l.Nodes[i].NodeName,
			"--cluster-cidr", "10.244.0.0/16", "--proxy-mode", p.mode, "--iptables-min-sync-period", "100ms",
			"--healthz-bind-address", "127.0.0.1:10256", "--state-dir", n.stateDirs[i]}
	}
	proc, err := n.l.Start(&n.l.Nodes[i].NS, bin, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		proc.Kill()
		if n.t.Failed() {
			n.t.Logf("%s log:\n%s", p, lastLines(proc.Output(), 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n.synced(ctx, p, i) {
			return proc
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s never became healthy:\n%s", p, lastLines(proc.Output(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// synced says whether the running proxy has programmed the node:
// svcproxy's /healthz answers 200 only after its first sync; kube-proxy's
// answers 200 from the start, so its last-sync metric is read instead.
func (n *takeoverLab) synced(ctx context.Context, p proxy, i int) bool {
	if p.name == "kube-proxy" {
		m, err := n.l.Nodes[i].Run(ctx, "curl", "-s", "http://127.0.0.1:10249/metrics")
		if err != nil {
			return false
		}
		// Both families: kube-proxy runs a proxier for each the node has.
		families := 0
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "kubeproxy_sync_proxy_rules_last_timestamp_seconds{") && !strings.HasSuffix(line, " 0") {
				families++
			}
		}
		return families == 2
	}
	code, _ := n.l.Nodes[i].Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:10256/healthz")
	return code == "200"
}

// stop stops a proxy as a DaemonSet rollout does: SIGTERM, rules left.
func (n *takeoverLab) stop(ctx context.Context, proc *lab.Proc) {
	n.t.Helper()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatal(err)
	}
	_ = proc.Wait(ctx)
}

// rules are the node's Service rules in both modes, normalized: the
// iptables and ip6tables lines, and the objects of the kube-proxy nftables
// tables, each sorted (dispatch order is map order in kube-proxy).
func (n *takeoverLab) rules(ctx context.Context, i int) []string {
	n.t.Helper()
	var out []string
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		text, err := n.l.Nodes[i].Run(ctx, save)
		if err != nil {
			n.t.Fatal(err)
		}
		table := ""
		for _, line := range strings.Split(text, "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = save + " " + line
			case strings.HasPrefix(line, ":"):
				name, _, _ := strings.Cut(line[1:], " ")
				out = append(out, table+" chain "+name)
			case strings.HasPrefix(line, "-A "):
				out = append(out, table+" "+line)
			}
		}
	}
	for _, family := range []string{"ip", "ip6"} {
		if nft, err := n.l.Nodes[i].Run(ctx, "nft", "list", "table", family, "kube-proxy"); err == nil {
			for _, o := range nftObjects(n.t, nft) {
				out = append(out, family+" "+o)
			}
		}
	}
	slices.Sort(out)
	return out
}

// traffic is the clients of a takeover: fresh connections to the NodePort
// from outside and to the cluster IP from a pod, UDP from a fixed source
// port to the DNS Service, and keep-alive connections opened before.
type traffic struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	gap          time.Duration // longest time a stream went without an answer
	stop         chan struct{}
	wg           sync.WaitGroup
	keepAlive    []keepAliveConn
}

type keepAliveConn struct {
	conn  net.Conn
	br    *bufio.Reader
	first string
}

func (n *takeoverLab) startTraffic(ctx context.Context) *traffic {
	n.t.Helper()
	tr := &traffic{stop: make(chan struct{})}
	udpSrc := &net.UDPAddr{IP: net.IP(n.client.IP.AsSlice()), Port: 40053}
	streams := []func() error{
		func() error { _, err := n.l.Client.HTTPGet(ctx, n.nodePort); return err },
		func() error { _, err := n.client.HTTPGet(ctx, n.clusterIP); return err },
		func() error {
			a, err := n.client.UDPAsk(ctx, n.dnsIP, udpSrc)
			if err == nil && a.Pod != "dns-1" {
				err = fmt.Errorf("answered by %q", a.Pod)
			}
			return err
		},
	}
	for _, do := range streams {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			last := time.Now()
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				err := do()
				if errors.Is(err, syscall.EADDRINUSE) {
					// The client could not bind its fixed source port
					// (the last socket on it not yet gone): nothing was
					// sent, so nothing was lost; try again.
					time.Sleep(5 * time.Millisecond)
					continue
				}
				tr.sent.Add(1)
				now := time.Now()
				tr.mu.Lock()
				if err != nil {
					tr.failed.Add(1)
					if len(tr.errs) < 5 {
						tr.errs = append(tr.errs, err.Error())
					}
				} else {
					tr.gap = max(tr.gap, now.Sub(last))
					last = now
				}
				tr.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for _, target := range []struct {
		from *lab.NS
		addr string
	}{{n.l.Client, n.nodePort}, {&n.client.NS, n.clusterIP}} {
		conn, err := target.from.DialContext(ctx, "tcp", target.addr)
		if err != nil {
			n.t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		first, err := keepAliveGet(conn, br)
		if err != nil {
			n.t.Fatal(err)
		}
		tr.keepAlive = append(tr.keepAlive, keepAliveConn{conn, br, first})
	}
	return tr
}

// finish stops the clients and says how many keep-alive connections still
// reach the pod they started on.
func (tr *traffic) finish() (survived int) {
	close(tr.stop)
	tr.wg.Wait()
	for _, k := range tr.keepAlive {
		if pod, err := keepAliveGet(k.conn, k.br); err == nil && pod == k.first {
			survived++
		}
		k.conn.Close()
	}
	return survived
}

// Operators replace the running proxy node by node while traffic flows:
// each scenario switches the node between proxies (and modes) under load,
// with no request lost, every keep-alive connection kept, and the kernel
// left with exactly what a fresh start of the last proxy writes.
func TestTakeover(t *testing.T) {
	n := newTakeoverLab(t, 1)
	kp := func(mode string) proxy { return proxy{"kube-proxy", mode} }
	sp := func(mode string) proxy { return proxy{"svcproxy", mode} }
	scenarios := []struct {
		name  string
		steps []proxy
	}{
		{"kube-proxy iptables to svcproxy iptables", []proxy{kp("iptables"), sp("iptables")}},
		{"kube-proxy nftables to svcproxy nftables", []proxy{kp("nftables"), sp("nftables")}},
		{"kube-proxy iptables to svcproxy nftables", []proxy{kp("iptables"), sp("nftables")}},
		{"svcproxy iptables to nftables and back", []proxy{sp("iptables"), sp("nftables"), sp("iptables")}},
		{"svcproxy nftables restarted (an upgrade)", []proxy{sp("nftables"), sp("nftables")}},
		{"back to kube-proxy iptables", []proxy{sp("iptables"), kp("iptables")}},
		{"back to kube-proxy nftables", []proxy{sp("nftables"), kp("nftables")}},
	}
	var report []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			n.t = t
			ctx := ctxFor(t, 3*time.Minute)
			n.cleanup(ctx, 0)
			proc := n.start(ctx, sc.steps[0], 0)
			tr := n.startTraffic(ctx)
			time.Sleep(300 * time.Millisecond)
			for _, next := range sc.steps[1:] {
				n.stop(ctx, proc)
				proc = n.start(ctx, next, 0)
				// The new proxy's first sync is done; let traffic run over
				// its follow-up syncs too.
				time.Sleep(time.Second)
			}
			report = append(report, n.judge(sc.name, tr))
			n.leftovers(ctx, sc.steps[len(sc.steps)-1], 0, proc)
		})
	}
	t.Logf("takeovers under load:\n%s", strings.Join(report, "\n"))
}

// A rolling replacement across three nodes, one at a time, with every
// request crossing nodes: upstream kube-proxy in iptables mode everywhere,
// then svcproxy in nftables mode (the migration users want).
func TestRollingTakeover(t *testing.T) {
	n := newTakeoverLab(t, 3)
	ctx := ctxFor(t, 3*time.Minute)
	from, to := proxy{"kube-proxy", "iptables"}, proxy{"svcproxy", "nftables"}
	procs := make([]*lab.Proc, len(n.l.Nodes))
	for i := range n.l.Nodes {
		n.cleanup(ctx, i)
		procs[i] = n.start(ctx, from, i)
	}
	tr := n.startTraffic(ctx)
	time.Sleep(300 * time.Millisecond)
	for i := range n.l.Nodes {
		n.stop(ctx, procs[i])
		procs[i] = n.start(ctx, to, i)
		time.Sleep(500 * time.Millisecond)
	}
	n.judge("rolling: kube-proxy iptables to svcproxy nftables, 3 nodes", tr)
	for i := range n.l.Nodes {
		n.leftovers(ctx, to, i, procs[i])
	}
}

// cleanup leaves node i without Service rules.
func (n *takeoverLab) cleanup(ctx context.Context, i int) {
	n.t.Helper()
	if out, err := n.l.Nodes[i].Run(ctx, binary, "cleanup", "--state-dir", n.stateDirs[i]); err != nil {
		n.t.Fatalf("cleanup: %v %s", err, out)
	}
}

// judge stops the traffic, fails the test for any lost request or
// connection, and returns the report line.
func (n *takeoverLab) judge(name string, tr *traffic) string {
	n.t.Helper()
	survived := tr.finish()
	line := fmt.Sprintf("%-45s %6d requests, %d failed, %d/%d keep-alive connections survived, longest gap %s",
		name, tr.sent.Load(), tr.failed.Load(), survived, len(tr.keepAlive), tr.gap.Round(time.Millisecond))
	n.t.Log(line)
	if tr.failed.Load() > 0 || survived != len(tr.keepAlive) {
		n.t.Errorf("lost requests or connections; first errors: %v", tr.errs)
	}
	return line
}

// leftovers checks that node i, its proxy p running as proc, holds exactly
// what a fresh start of p writes: no chain, map, set or jump of the proxy
// before. Both are compared while running and after stopping (svcproxy
// hands its table over as it stops).
func (n *takeoverLab) leftovers(ctx context.Context, p proxy, i int, proc *lab.Proc) {
	n.t.Helper()
	running := n.rules(ctx, i)
	n.stop(ctx, proc)
	stopped := n.rules(ctx, i)
	n.cleanup(ctx, i)
	fresh := n.start(ctx, p, i)
	freshRunning := n.rules(ctx, i)
	n.stop(ctx, fresh)
	for _, c := range []struct {
		when        string
		after, want []string
	}{{"running", running, freshRunning}, {"stopped", stopped, n.rules(ctx, i)}} {
		if d := lineDiff(c.want, c.after); len(d) > 0 {
			n.t.Errorf("after the takeover %s (%s %s) holds what a fresh one does not (+) or lacks what it writes (-):\n%s", n.l.Nodes[i].NodeName, p, c.when, strings.Join(d, "\n"))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

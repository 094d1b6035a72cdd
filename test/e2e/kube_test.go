package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/svcproxy/svcproxy/internal/lab"
	"github.com/svcproxy/svcproxy/internal/source"
	"github.com/svcproxy/svcproxy/internal/source/kube"
	"github.com/svcproxy/svcproxy/internal/source/sourcetest"
)

// kubeBinaries finds kube-apiserver and etcd ("server") as built by
// `make kube-tools`.
func kubeBinaries(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SVCPROXY_KUBE_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "svcproxy-kube", "v1.37.2")
	}
	for _, b := range []string{"kube-apiserver", "server"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			msg := fmt.Sprintf("%s not built in %s: run make kube-tools", b, dir)
			if os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dir
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

func TestKubeAPIServer(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	bins := kubeBinaries(t)
	ctx := ctxFor(t, 5*time.Minute)
	l, err := lab.Build(ctx, lab.Config{
		Prefix: fmt.Sprintf("svk%d", os.Getpid()%100000), Nodes: 3, ControlPlane: true,
		Pods: []lab.PodSpec{
			{Name: "web-1", Node: 0, TCP: []int{80}},
			{Name: "web-2", Node: 1, TCP: []int{80}},
			{Name: "web-3", Node: 2, TCP: []int{80}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	start := time.Now()
	cp, err := l.StartControlPlane(ctx, bins, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane ready after %s", time.Since(start).Round(time.Millisecond))
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("deploy manifests pass server-side dry-run", func(t *testing.T) {
		applyDeploy(t, ctx, admin, true)
	})
	// The proxies get exactly the rights deploy/ grants, bound to the lab's
	// proxy user instead of the ServiceAccount.
	applyDeploy(t, ctx, admin, false)
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "svcproxy-lab-proxy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "svcproxy"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: lab.ProxyUser}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, n := range l.Nodes {
		createNode(t, admin, n, map[string]string{corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%2)})
	}
	kubeconfig, err := cp.Kubeconfig("proxy", lab.ProxyToken)
	if err != nil {
		t.Fatal(err)
	}
	var proxies []*lab.Proc
	// node-3 runs nftables mode, the others iptables mode (a cluster in
	// the middle of a migration): the multi-node cases cross modes.
	modeOf := func(i int) string { return map[bool]string{true: "nftables", false: "iptables"}[i == 2] }
	for i, n := range l.Nodes {
		// The first node reads protobuf (the default), the others JSON:
		// the multi-node cases need both to work.
		contentType := "application/vnd.kubernetes.protobuf"
		if i > 0 {
			contentType = "application/json"
		}
		p, err := l.Start(&n.NS, binary, "run", "--kubeconfig", kubeconfig, "--hostname-override", n.NodeName,
			"--cluster-cidr", "10.244.0.0/16", "--iptables-min-sync-period", "100ms", "--healthz-bind-address", "127.0.0.1:10256",
			"--kube-api-content-type", contentType, "--state-dir", t.TempDir(), "--proxy-mode", modeOf(i))
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range proxies {
				t.Logf("svcproxy on node-%d:\n%s", i+1, p.Output())
			}
		}
	})

	svc, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "azure-vote-front"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "azure-vote-front"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	clusterIP := svc.Spec.ClusterIP
	t.Logf("API server allocated cluster IP %s and NodePort %d", clusterIP, nodePort)
	setEndpoints := func(ips ...string) {
		t.Helper()
		slice := endpointSlice("azure-vote-front", "azure-vote-front-abc12", 80, l, ips...)
		_, err := admin.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{})
		if err != nil {
			_, err = admin.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	onNode := func(i int) string { return fmt.Sprintf("%s:%d", l.Nodes[i].IP, nodePort) }

	t.Run("a new NodePort Service answers within a second", func(t *testing.T) {
		setEndpoints("10.244.0.10")
		took := eventually(t, 5*time.Second, "NodePort answers", func() error {
			_, err := l.Client.HTTPGet(ctx, onNode(0))
			return err
		})
		t.Logf("EndpointSlice written -> NodePort answering: %s", took.Round(time.Millisecond))
		// Recorded right after the rules are committed, so a moment after
		// traffic first flows.
		eventually(t, 5*time.Second, "network programming latency measured", func() error {
			metrics := scrape(t, l.Nodes[0], "127.0.0.1:10249")
			if !strings.Contains(metrics, "kubeproxy_network_programming_duration_seconds_count") ||
				strings.Contains(metrics, "kubeproxy_network_programming_duration_seconds_count 0\n") {
				return fmt.Errorf("not yet:\n%s", grep(metrics, "network_programming_duration_seconds_count"))
			}
			return nil
		})
	})

	t.Run("scaling endpoints up and down", func(t *testing.T) {
		setEndpoints("10.244.0.10", "10.244.1.10", "10.244.2.10")
		eventually(t, 5*time.Second, "three pods answer", answeredBy(ctx, l.Client, onNode(0), true, "web-1", "web-2", "web-3"))
		setEndpoints("10.244.2.10")
		eventually(t, 5*time.Second, "only web-3 answers", answeredBy(ctx, l.Client, onNode(0), true, "web-3"))
	})

	t.Run("a NodePort held by another process is reported as an Event on the Service", func(t *testing.T) {
		rogue, err := l.Start(&l.Nodes[0].NS, "python3", "-m", "http.server", fmt.Sprint(nodePort), "--bind", "0.0.0.0")
		if err != nil {
			t.Fatal(err)
		}
		defer rogue.Kill()
		if err := rogue.WaitOutput(ctx, "Serving HTTP"); err != nil {
			t.Fatal(err)
		}
		setEndpoints("10.244.0.10", "10.244.1.10") // a change, so a sync checks the ports
		eventually(t, 10*time.Second, "NodePortConflict event", func() error {
			evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=azure-vote-front,reason=NodePortConflict"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if strings.Contains(e.Message, fmt.Sprintf("pid %d", rogue.Pid())) && strings.Contains(e.Message, "http.server") &&
					e.Source.Host == "node-1" && e.InvolvedObject.UID == svc.UID && e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("no matching event among %d", len(evs.Items))
		})
		// Traffic still reaches the pods.
		if _, err := l.Client.HTTPGet(ctx, onNode(0)); err != nil {
			t.Error(err)
		}
	})

	t.Run("multi-node: every node's NodePort reaches pods on other nodes, masqueraded", func(t *testing.T) {
		setEndpoints("10.244.0.10")
		for i := 1; i < 3; i++ {
			i := i
			eventually(t, 5*time.Second, fmt.Sprintf("node-%d NodePort", i+1), func() error {
				a, err := l.Client.HTTPGet(ctx, onNode(i))
				if err != nil {
					return err
				}
				if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, l.Nodes[i].IP.String()+":") {
					return fmt.Errorf("answered by %s seeing %s, want web-1 seeing node-%d's address", a.Pod, a.Remote, i+1)
				}
				return nil
			})
		}
	})

	t.Run("multi-node: a pod reaches a ClusterIP served on another node", func(t *testing.T) {
		eventually(t, 5*time.Second, "pod web-3 to ClusterIP", func() error {
			a, err := l.Pods[2].HTTPGet(ctx, clusterIP+":80")
			if err != nil {
				return err
			}
			if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, "10.244.2.10:") {
				return fmt.Errorf("answer %+v: want web-1 seeing the pod's own address", a)
			}
			return nil
		})
	})

	t.Run("port changes follow", func(t *testing.T) {
		cur, err := admin.CoreV1().Services("default").Get(ctx, "azure-vote-front", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec.Ports[0].Port = 8080
		cur.Spec.Ports[0].NodePort = 31999
		if _, err := admin.CoreV1().Services("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "new ports", func() error {
			if _, err := l.Client.HTTPGet(ctx, l.Nodes[0].IP.String()+":31999"); err != nil {
				return err
			}
			if _, err := l.Pods[1].HTTPGet(ctx, clusterIP+":8080"); err != nil {
				return err
			}
			if _, err := l.Client.HTTPGet(ctx, onNode(0)); err == nil {
				return fmt.Errorf("old NodePort %d still answers", nodePort)
			}
			return nil
		})
		nodePort = 31999
	})

	t.Run("API server down: traffic keeps working; back: svcproxy catches up", func(t *testing.T) {
		g := startLoad(ctx, map[*lab.NS]string{l.Client: onNode(2), &l.Pods[0].NS: clusterIP + ":8080"}, 3)
		time.Sleep(300 * time.Millisecond)
		cp.StopAPIServer()
		time.Sleep(time.Second)
		if err := cp.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		g.finish(2000, 60*time.Second)
		t.Logf("API server stopped and restarted under load: %d requests, %d failed", g.sent.Load(), g.failed.Load())
		if g.failed.Load() > 0 || g.sent.Load() < 2000 {
			t.Errorf("%d of %d requests failed; first: %v", g.failed.Load(), g.sent.Load(), g.firstErrs)
		}
		setEndpoints("10.244.1.10")
		took := eventually(t, 30*time.Second, "caught up after the API server restart", answeredBy(ctx, l.Client, onNode(2), true, "web-2"))
		t.Logf("caught up %s after the change", took.Round(time.Millisecond))
		for i, p := range proxies {
			if out, err := l.Nodes[i].Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:10256/healthz"); err != nil || out != "200" {
				t.Errorf("node-%d /healthz: %s %v", i+1, out, err)
			}
			_ = p
		}
	})

	t.Run("/healthz says a node leaving the cluster is not eligible, as upstream", func(t *testing.T) {
		healthz := func(i int) (string, map[string]any) {
			out, err := l.Nodes[i].Run(ctx, "curl", "-s", "-w", "\n%{http_code}", "http://127.0.0.1:10256/healthz")
			if err != nil {
				t.Fatal(err)
			}
			cut := strings.LastIndex(out, "\n")
			body, code := out[:cut], out[cut+1:]
			var m map[string]any
			_ = json.Unmarshal([]byte(body), &m)
			return code, m
		}
		taint := func(on bool) {
			n, err := admin.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Spec.Taints = nil
			if on {
				n.Spec.Taints = []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: corev1.TaintEffectNoSchedule}}
			}
			if _, err := admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		taint(true)
		eventually(t, 10*time.Second, "node-2 not eligible", func() error {
			if code, m := healthz(1); code != "503" || m["nodeEligible"] != false {
				return fmt.Errorf("%s %v", code, m)
			}
			return nil
		})
		if code, m := healthz(0); code != "200" || m["nodeEligible"] != true {
			t.Errorf("node-1 /healthz: %s %v", code, m)
		}
		taint(false)
		eventually(t, 10*time.Second, "node-2 eligible again", func() error {
			if code, m := healthz(1); code != "200" {
				return fmt.Errorf("%s %v", code, m)
			}
			return nil
		})
	})

	t.Run("nftables mode follows ServiceCIDRs: unallocated cluster IPs are dropped", func(t *testing.T) {
		node3 := l.Nodes[2]
		hasDrop := func(cidr string) func() error {
			return func() error {
				out, err := node3.Run(ctx, "nft", "list", "chain", "ip", "kube-proxy", "cluster-ips-check")
				if err != nil {
					return err
				}
				if !strings.Contains(out, "ip daddr "+cidr+" drop") {
					return fmt.Errorf("no drop for %s in:\n%s", cidr, out)
				}
				return nil
			}
		}
		// The API server makes the default ServiceCIDR from its
		// --service-cluster-ip-range.
		eventually(t, 10*time.Second, "the default ServiceCIDR's drop", hasDrop(lab.ServiceCIDR))
		out, err := node3.Run(ctx, binary, "trace", "--from", "10.244.2.10", "--to", "10.96.255.254:80")
		if err != nil || !strings.Contains(out, "Result: DROP by ip kube-proxy cluster-ips-check") {
			t.Errorf("trace of an unallocated cluster IP on node-3: %v\n%s", err, out)
		}
		if _, err := admin.NetworkingV1().ServiceCIDRs().Create(ctx, &networkingv1.ServiceCIDR{
			ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.97.0.0/24"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "a new ServiceCIDR's drop", hasDrop("10.97.0.0/24"))
	})

	t.Run("the API source keeps source.Source's promises", func(t *testing.T) {
		client, err := kube.NewClient(cp.AdminConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conformance"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sourcetest.Run(t, sourcetest.Harness{
			New: func(*testing.T) source.Source {
				// One object per page: the test's objects, in a namespace
				// after "default", are pages into the list, and the first
				// snapshot must still hold them.
				return &kube.Source{Client: client, NodeName: "node-1", Log: slog.New(slog.DiscardHandler), ListPageSize: 1}
			},
			Apply: func(t *testing.T, objs ...any) {
				for _, o := range objs {
					var err error
					switch o := o.(type) {
					case *corev1.Service:
						_, err = admin.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
					case *discoveryv1.EndpointSlice:
						_, err = admin.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			},
			Namespace: "conformance",
		}, [3]string{"10.96.200.1", "10.96.200.2", "10.96.200.3"})
	})

	t.Run("Services of another proxy and headless Services are left alone", func(t *testing.T) {
		for _, s := range []*corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "other-proxy", Labels: map[string]string{"service.kubernetes.io/service-proxy-name": "foo"}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80, NodePort: 31777}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "headless"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}}},
		} {
			if _, err := admin.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
		rules, _ := l.Nodes[0].Run(ctx, "iptables-save")
		if strings.Contains(rules, "default/other-proxy") || strings.Contains(rules, "default/headless") {
			t.Errorf("rules written for Services svcproxy must skip")
		}
	})

	t.Run("deleting the Service removes its rules", func(t *testing.T) {
		if err := admin.CoreV1().Services("default").Delete(ctx, "azure-vote-front", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "rules gone on every node", func() error {
			for i, n := range l.Nodes {
				list := []string{"iptables-save"}
				if modeOf(i) == "nftables" {
					list = []string{"nft", "list", "ruleset"}
				}
				rules, err := n.Run(ctx, list...)
				if err != nil {
					return err
				}
				if strings.Contains(rules, "default/azure-vote-front") {
					return fmt.Errorf("node-%d still has rules", i+1)
				}
			}
			return nil
		})
	})
}

func endpointSlice(service, name string, port int32, l *lab.Lab, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: service},
			// As the EndpointSlice controller writes it: when the change happened.
			Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": time.Now().UTC().Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
	}
	for _, ip := range ips {
		ep := discoveryv1.Endpoint{Addresses: []string{ip}}
		for _, p := range l.Pods {
			if p.IP.String() == ip {
				node := l.Nodes[p.Spec.Node].NodeName
				ep.NodeName = &node
			}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// createNode registers a lab node with the API server, its address as
// the kubelet would report it.
func createNode(tb testing.TB, c kubernetes.Interface, n *lab.Node, labels map[string]string) {
	tb.Helper()
	if _, err := c.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.NodeName, Labels: labels},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP.String()}}}}, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// applyDeploy creates the objects of deploy/svcproxy.yaml; with dryRun the
// API server validates them all without storing them.
func applyDeploy(t *testing.T, ctx context.Context, c kubernetes.Interface, dryRun bool) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/svcproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	kinds := 0
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			break
		}
		if raw == nil {
			continue
		}
		js, _ := utilyaml.ToJSON(mustYAML(t, raw))
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("decode deploy object: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, opts)
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
		case *corev1.ConfigMap:
			_, err = c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
		case *appsv1.DaemonSet:
			_, err = c.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, opts)
		default:
			t.Fatalf("unexpected kind %T in deploy/svcproxy.yaml", obj)
		}
		if err != nil {
			t.Fatalf("create %T (dry run %v): %v", obj, dryRun, err)
		}
		kinds++
	}
	if kinds != 5 {
		t.Fatalf("deploy/svcproxy.yaml: %d objects, want 5", kinds)
	}
}

func mustYAML(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

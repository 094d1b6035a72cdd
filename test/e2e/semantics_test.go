package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// lbLocal is a LoadBalancer Service with externalTrafficPolicy: Local whose
// only endpoint (web-1) runs on node-1, reachable from sourceRange only.
func lbLocal(sourceRange string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.40
  externalTrafficPolicy: Local
  healthCheckNodePort: 30600
  loadBalancerSourceRanges: [%q]
  ports: [{port: 80, nodePort: 30500}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.50}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: default, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{port: 80}]
endpoints: [{addresses: ["10.244.0.10"], nodeName: node-1}]
`, sourceRange)
}

// lbLocalOpen is an externalTrafficPolicy: Local LoadBalancer Service
// without source ranges whose only endpoint (web-1) runs on node-1.
const lbLocalOpen = `apiVersion: v1
kind: Service
metadata: {name: lb-open, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.42
  externalTrafficPolicy: Local
  healthCheckNodePort: 30601
  ports: [{port: 80, nodePort: 30501}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.51}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-open-1, namespace: default, labels: {kubernetes.io/service-name: lb-open}}
addressType: IPv4
ports: [{port: 80}]
endpoints: [{addresses: ["10.244.0.10"], nodeName: node-1}]
`

const stickyAndExternal = `apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  clusterIP: 10.96.0.41
  sessionAffinity: ClientIP
  externalIPs: [192.0.2.50]
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sticky-1, namespace: default, labels: {kubernetes.io/service-name: sticky}}
addressType: IPv4
ports: [{port: 80}]
endpoints:
- {addresses: ["10.244.0.10"], nodeName: node-1}
- {addresses: ["10.244.1.10"], nodeName: node-2}
`

// Behaviour only the kernel can show: source addresses, drops, stickiness,
// in both modes.
func TestServiceSemantics(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	modes(t, testServiceSemantics)
}

func testServiceSemantics(t *testing.T, mode string) {
	ctx := ctxFor(t, 2*time.Minute)
	l, err := lab.Build(ctx, lab.Config{Prefix: fmt.Sprintf("svs%d", labSeq.Add(1)), Nodes: 2, Pods: []lab.PodSpec{
		{Name: "web-1", Node: 0, TCP: []int{80}},
		{Name: "web-2", Node: 1, TCP: []int{80}},
		{Name: "client-pod", Node: 0, TCP: []int{80}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := t.TempDir()
	w := &world{t: t, lab: l, dir: dir}
	w.write("lb.yaml", lbLocal("192.168.77.3/32"))
	w.write("sticky.yaml", stickyAndExternal)
	w.write("lb-open.yaml", lbLocalOpen)
	// The client reaches the load balancer and external IPs through node-1,
	// and lb-open's load balancer IP through node-2, which has no endpoint.
	for ip, via := range map[string]int{"203.0.113.50": 0, "192.0.2.50": 0, "203.0.113.51": 1} {
		if _, err := l.Client.Run(ctx, "ip", "route", "add", ip+"/32", "via", l.Nodes[via].IP.String()); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.Nodes {
		p, err := l.Start(&n.NS, binary, "run", "--manifests", dir, "--hostname-override", n.NodeName, "--cluster-cidr", "10.244.0.0/16",
			"--iptables-min-sync-period", "100ms", "--state-dir", t.TempDir(), "--proxy-mode", mode)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("svcproxy on %s:\n%s", n.NodeName, p.Output())
			}
		})
	}
	node1, node2 := l.Nodes[0].IP.String(), l.Nodes[1].IP.String()
	if _, err := l.Client.WaitHTTP(ctxFor(t, 10*time.Second), node1+":30500"); err != nil {
		t.Fatal(err)
	}
	// Both nodes' rules are in the kernel (/healthz is ready only then),
	// and their health check node ports are open.
	for _, n := range []string{node1, node2} {
		eventually(t, 10*time.Second, n+" synced", func() error {
			code, err := l.Client.Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+n+":10256/healthz")
			if err != nil || code != "200" {
				return fmt.Errorf("/healthz %s %v", code, err)
			}
			code, err = l.Client.Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+n+":30600/healthz")
			if err != nil || code == "000" {
				return fmt.Errorf("health check node port %s %v", code, err)
			}
			return nil
		})
	}

	t.Run("externalTrafficPolicy Local keeps the client's source address", func(t *testing.T) {
		a, err := l.Client.HTTPGet(ctx, node1+":30500")
		if err != nil || a.Pod != "web-1" || !strings.HasPrefix(a.Remote, l.ClientIP.String()+":") {
			t.Fatalf("%+v %v: want web-1 seeing %s", a, err, l.ClientIP)
		}
	})
	t.Run("a node without local endpoints drops the NodePort", func(t *testing.T) {
		_, err := l.Client.HTTPGet(ctx, node2+":30500")
		if err == nil || !isTimeout(err) {
			t.Fatalf("node-2 NodePort: %v, want a timeout (DROP)", err)
		}
	})
	t.Run("health check node port: 200 where endpoints are local, 503 elsewhere", func(t *testing.T) {
		for _, c := range []struct {
			node  string
			code  int
			local float64
		}{{node1, 200, 1}, {node2, 503, 0}} {
			code, body := healthCheck(t, l.Client, c.node+":30600")
			if code != c.code || body["localEndpoints"] != c.local || body["serviceProxyHealthy"] != true {
				t.Errorf("%s: %d %v, want %d with %v local endpoints", c.node, code, body, c.code, c.local)
			}
		}
	})
	t.Run("loadBalancerSourceRanges: a client outside them is dropped, inside them served", func(t *testing.T) {
		if _, err := l.Client.HTTPGet(ctx, "203.0.113.50:80"); err == nil || !isTimeout(err) {
			t.Fatalf("disallowed source: %v, want a timeout (DROP)", err)
		}
		w.write("lb.yaml", lbLocal(l.ClientIP.String()+"/32"))
		eventually(t, 5*time.Second, "allowed source served", func() error {
			a, err := l.Client.HTTPGet(ctx, "203.0.113.50:80")
			if err != nil {
				return err
			}
			if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, l.ClientIP.String()+":") {
				return fmt.Errorf("%+v: want web-1 seeing the client", a)
			}
			return nil
		})
	})
	t.Run("sessionAffinity ClientIP sticks to one endpoint", func(t *testing.T) {
		first, err := l.Pods[2].HTTPGet(ctx, "10.96.0.41:80")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			a, err := l.Pods[2].HTTPGet(ctx, "10.96.0.41:80")
			if err != nil || a.Pod != first.Pod {
				t.Fatalf("request %d: %+v %v, want always %s", i, a, err, first.Pod)
			}
		}
	})
	// As upstream: the external chain stays on a node without local
	// endpoints, so pods there (an ingress controller calling its own LB
	// IP) and the node itself reach the remote endpoint; only traffic from
	// outside is dropped.
	t.Run("externalTrafficPolicy Local on a node without local endpoints serves its pods and itself", func(t *testing.T) {
		web2 := l.Pods[1]
		for _, addr := range []string{"203.0.113.51:80", node2 + ":30501"} {
			eventually(t, 5*time.Second, "pod on node-2 to "+addr, func() error {
				a, err := web2.HTTPGet(ctx, addr)
				if err != nil {
					return err
				}
				if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, web2.IP.String()+":") {
					return fmt.Errorf("%+v: want web-1 seeing the pod's own address %s", a, web2.IP)
				}
				return nil
			})
		}
		a, err := l.Nodes[1].HTTPGet(ctx, "203.0.113.51:80")
		if err != nil || a.Pod != "web-1" {
			t.Fatalf("node-2 itself to the LB IP: %+v %v, want web-1", a, err)
		}
		for _, addr := range []string{"203.0.113.51:80", node2 + ":30501"} {
			if _, err := l.Client.HTTPGet(ctx, addr); err == nil || !isTimeout(err) {
				t.Errorf("outside client to %s on node-2: %v, want a timeout (DROP)", addr, err)
			}
		}
	})
	t.Run("external IP is served", func(t *testing.T) {
		if _, err := l.Client.HTTPGet(ctx, "192.0.2.50:80"); err != nil {
			t.Fatal(err)
		}
	})
}

func isTimeout(err error) bool {
	return strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "deadline exceeded")
}

func healthCheck(t *testing.T, from *lab.NS, addr string) (int, map[string]any) {
	t.Helper()
	tr := &http.Transport{DialContext: from.DialContext, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("health check %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("health check %s: %v: %s", addr, err, b)
	}
	return resp.StatusCode, body
}

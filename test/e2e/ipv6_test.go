package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

const dualStackWeb = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  ports: [{port: 80, nodePort: 30450}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 80}]
endpoints: [{addresses: ["10.244.0.10"], nodeName: node-1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{port: 80}]
endpoints: [{addresses: ["fd00:10:244::10"], nodeName: node-1}]
`

// A dual-stack Service answers over IPv6 and IPv4, in both modes.
func TestIPv6Services(t *testing.T) {
	modes(t, func(t *testing.T, mode string) {
		w := newWorldCfg(t, lab.Config{Nodes: 1, IPv6: true, Pods: []lab.PodSpec{
			{Name: "web-1", TCP: []int{80}},
			{Name: "client-pod", TCP: []int{8080}},
		}})
		w.mode = mode
		ctx := ctxFor(t, 60*time.Second)
		w.write("web.yaml", dualStackWeb)
		proxy := w.start("--cluster-cidr", "10.244.0.0/16,fd00:10:244::/48")
		v6NodePort := "[" + w.node.IP6.String() + "]:30450"

		t.Run("IPv6 NodePort from outside, masqueraded", func(t *testing.T) {
			a, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), v6NodePort)
			if err != nil {
				t.Fatal(err)
			}
			if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, "[fd00:10:244::1]:") {
				t.Errorf("%+v: want web-1 seeing the node's pod-side IPv6 address", a)
			}
		})
		t.Run("IPv6 cluster IP from a pod keeps its source", func(t *testing.T) {
			a, err := w.lab.Pods[1].HTTPGet(ctx, "[fd00:96::10]:80")
			if err != nil {
				t.Fatal(err)
			}
			if a.Pod != "web-1" || !strings.HasPrefix(a.Remote, "["+w.lab.Pods[1].IP6.String()+"]:") {
				t.Errorf("%+v: want web-1 seeing %s", a, w.lab.Pods[1].IP6)
			}
		})
		t.Run("IPv4 still works beside it", func(t *testing.T) {
			if _, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30450"); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("each family's rules are in its own tables", func(t *testing.T) {
			if mode == "nftables" {
				v6, err := w.node.Run(ctx, "nft", "list", "table", "ip6", "kube-proxy")
				if err != nil || !strings.Contains(v6, "fd00:96::10") || strings.Contains(v6, "10.96.0.10") {
					t.Errorf("ip6 kube-proxy (%v):\n%s", err, v6)
				}
				if strings.Contains(w.nftList(), "fd00:96::10") {
					t.Error("IPv6 address in the ip table")
				}
				return
			}
			v6, err := w.node.Run(ctx, "ip6tables-save", "-t", "nat")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(v6, "-d fd00:96::10/128") || strings.Contains(v6, "10.96.0.10") {
				t.Errorf("ip6tables nat:\n%s", v6)
			}
			if v4 := w.iptablesSave(); strings.Contains(v4, "fd00:96::10") {
				t.Error("IPv6 address in the IPv4 rules")
			}
		})
		t.Run("cleanup removes both families", func(t *testing.T) {
			proxy.Kill() // or it would put its rules back
			if out, err := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			v6, _ := w.node.Run(ctx, "ip6tables-save")
			nft, _ := w.node.Run(ctx, "nft", "list", "ruleset")
			if strings.Contains(v6, "KUBE-") || strings.Contains(nft, "kube-proxy") {
				t.Errorf("IPv6 rules left:\n%s\n%s", v6, nft)
			}
		})
	})
}

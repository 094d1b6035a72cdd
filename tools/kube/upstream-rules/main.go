// Command upstream-rules prints the rules upstream kube-proxy (the version
// this tools module requires) writes for a folder of Service and
// EndpointSlice manifests. In iptables mode it drives upstream's own
// proxier against its fake iptables and prints what iptables-save would;
// nothing touches the kernel. In nftables mode (-mode nftables) upstream's
// proxier has no fake to run against from outside its package, so it
// programs the kernel: run it in a network namespace of its own (ip netns
// exec); it prints `nft list table ip kube-proxy` and deletes the table.
// The parity test and the tracer's tests hold svcproxy against the real
// thing this way, not a description of it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-helpers/node/util/sysctl/testing"
	corev1defaults "k8s.io/kubernetes/pkg/apis/core/v1"
	discoveryv1defaults "k8s.io/kubernetes/pkg/apis/discovery/v1"
	kpconfig "k8s.io/kubernetes/pkg/proxy/apis/config"
	"k8s.io/kubernetes/pkg/proxy/iptables"
	proxyutil "k8s.io/kubernetes/pkg/proxy/util"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"
	iptablestest "k8s.io/kubernetes/pkg/util/iptables/testing"
	"sigs.k8s.io/yaml"
)

func main() {
	dir := flag.String("manifests", "", "folder of Service and EndpointSlice manifests")
	node := flag.String("hostname-override", "node-1", "this node's name")
	nodeIP := flag.String("node-ip", "192.168.77.1", "this node's primary IP")
	clusterCIDR := flag.String("cluster-cidr", "", "the pod CIDR (detect-local-mode ClusterCIDR)")
	masqAll := flag.Bool("masquerade-all", false, "as kube-proxy's")
	localhost := flag.Bool("iptables-localhost-nodeports", true, "as kube-proxy's")
	npAddrs := flag.String("nodeport-addresses", "", "comma-separated CIDRs, as kube-proxy's")
	bit := flag.Int("iptables-masquerade-bit", 14, "as kube-proxy's")
	mode := flag.String("mode", "iptables", "iptables (fake, no kernel) or nftables (programs this network namespace's kernel)")
	flag.Parse()
	run := runIPTables
	if *mode == "nftables" {
		run = runNFTables
	}
	if err := run(*dir, *node, *nodeIP, *clusterCIDR, *npAddrs, *masqAll, *localhost, int32(*bit)); err != nil {
		fmt.Fprintln(os.Stderr, "upstream-rules:", err)
		os.Exit(1)
	}
}

func runIPTables(dir, node, nodeIP, clusterCIDR, npAddrs string, masqAll, localhost bool, bit int32) error {
	svcs, slices, _, err := read(dir)
	if err != nil {
		return err
	}
	cfg, detector := settings(clusterCIDR, npAddrs, masqAll)
	cfg.IPTables = kpconfig.KubeProxyIPTablesConfiguration{MasqueradeBit: &bit, LocalhostNodePorts: &localhost}
	ipt := iptablestest.NewFake()
	ctx := context.Background()
	p, err := iptables.NewProxier(ctx, cfg, corev1.IPv4Protocol, ipt, testing.NewFake(), detector, node, net.ParseIP(nodeIP),
		events.NewFakeRecorder(100), nil, false)
	if err != nil {
		return fmt.Errorf("upstream proxier: %w", err)
	}
	start(p, svcs, slices, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nat bytes.Buffer
		if err := ipt.SaveInto(utiliptables.TableNAT, &nat); err == nil && strings.Contains(nat.String(), "KUBE-SERVICES") {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("upstream proxier wrote no rules in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, t := range []utiliptables.Table{utiliptables.TableFilter, utiliptables.TableNAT} {
		var b bytes.Buffer
		if err := ipt.SaveInto(t, &b); err != nil {
			return err
		}
		os.Stdout.Write(b.Bytes())
	}
	return nil
}

// proxier is what both modes' proxiers have for start.
type proxier interface {
	OnServiceAdd(*corev1.Service)
	OnEndpointSliceAdd(*discoveryv1.EndpointSlice)
	OnServiceCIDRsChanged([]string)
	OnServiceSynced()
	OnEndpointSlicesSynced()
	SyncLoop()
	Sync()
}

// start hands a proxier the objects, as informers would, and starts it.
func start(p proxier, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, cidrs []string) {
	for _, s := range svcs {
		p.OnServiceAdd(s)
	}
	for _, s := range slices {
		p.OnEndpointSliceAdd(s)
	}
	if len(cidrs) > 0 {
		p.OnServiceCIDRsChanged(cidrs)
	}
	p.OnServiceSynced()
	p.OnEndpointSlicesSynced()
	go p.SyncLoop()
	p.Sync()
}

// settings are what both modes' proxiers take from the flags.
func settings(clusterCIDR, npAddrs string, masqAll bool) (*kpconfig.KubeProxyConfiguration, proxyutil.LocalTrafficDetector) {
	cfg := &kpconfig.KubeProxyConfiguration{
		Linux:         kpconfig.KubeProxyLinuxConfiguration{MasqueradeAll: masqAll},
		SyncPeriod:    metav1.Duration{Duration: time.Hour},
		MinSyncPeriod: metav1.Duration{},
	}
	if npAddrs != "" {
		cfg.NodePortAddresses = strings.Split(npAddrs, ",")
	}
	detector := proxyutil.NewNoOpLocalDetector()
	if clusterCIDR != "" {
		detector = proxyutil.NewDetectLocalByCIDR(clusterCIDR)
	}
	return cfg, detector
}

// read decodes every Service and EndpointSlice of the folder's manifests,
// and the CIDRs of its ServiceCIDRs.
func read(dir string) ([]*corev1.Service, []*discoveryv1.EndpointSlice, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, nil, nil, err
	}
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	var cidrs []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw map[string]any
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			b, _ := yaml.Marshal(raw)
			switch raw["kind"] {
			case "Service":
				s := &corev1.Service{}
				if err := yaml.Unmarshal(b, s); err != nil {
					return nil, nil, nil, fmt.Errorf("%s: %w", f, err)
				}
				if s.Namespace == "" {
					s.Namespace = "default"
				}
				// As the API server stores it.
				corev1defaults.SetObjectDefaults_Service(s)
				svcs = append(svcs, s)
			case "EndpointSlice":
				s := &discoveryv1.EndpointSlice{}
				if err := yaml.Unmarshal(b, s); err != nil {
					return nil, nil, nil, fmt.Errorf("%s: %w", f, err)
				}
				if s.Namespace == "" {
					s.Namespace = "default"
				}
				discoveryv1defaults.SetObjectDefaults_EndpointSlice(s)
				slices = append(slices, s)
			case "ServiceCIDR":
				c := &networkingv1.ServiceCIDR{}
				if err := yaml.Unmarshal(b, c); err != nil {
					return nil, nil, nil, fmt.Errorf("%s: %w", f, err)
				}
				cidrs = append(cidrs, c.Spec.CIDRs...)
			}
		}
	}
	return svcs, slices, cidrs, nil
}

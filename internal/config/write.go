package config

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

// KubeProxyConfiguration is c as a config file: the fields svcproxy acts
// on, with c's values (both modes' sections hold them, so the file reads
// the same whichever mode it is later given).
func (c *Config) KubeProxyConfiguration() *kpv1alpha1.KubeProxyConfiguration {
	dur := func(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }
	k := &kpv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		HostnameOverride:   c.HostnameOverride,
		HealthzBindAddress: c.HealthzBindAddress,
		MetricsBindAddress: c.MetricsBindAddress,
		EnableProfiling:    c.EnableProfiling,
		ClusterCIDR:        c.ClusterCIDR,
		Mode:               kpv1alpha1.ProxyMode(c.Mode),
		NodePortAddresses:  c.NodePortAddresses,
		DetectLocalMode:    kpv1alpha1.LocalMode(c.DetectLocalMode),
		DetectLocal:        kpv1alpha1.DetectLocalConfiguration{BridgeInterface: c.PodBridgeInterface, InterfaceNamePrefix: c.PodInterfacePrefix},
		OOMScoreAdj:        c.OOMScoreAdj,
	}
	if len(c.FeatureGates) > 0 {
		k.FeatureGates = map[string]bool(c.FeatureGates)
	}
	k.ClientConnection.Kubeconfig, k.ClientConnection.ContentType = c.Kubeconfig, c.ContentType
	k.ClientConnection.QPS, k.ClientConnection.Burst = c.QPS, c.Burst
	k.IPTables = kpv1alpha1.KubeProxyIPTablesConfiguration{MasqueradeAll: c.MasqueradeAll, MasqueradeBit: ptrTo(c.MasqueradeBit),
		LocalhostNodePorts: ptrTo(c.LocalhostNodePorts), SyncPeriod: dur(c.SyncPeriod), MinSyncPeriod: dur(c.MinSyncPeriod)}
	k.NFTables = kpv1alpha1.KubeProxyNFTablesConfiguration{MasqueradeAll: c.MasqueradeAll, MasqueradeBit: ptrTo(c.NFTablesMasqueradeBit),
		SyncPeriod: dur(c.SyncPeriod), MinSyncPeriod: dur(c.MinSyncPeriod)}
	ct := c.Conntrack
	k.Conntrack = kpv1alpha1.KubeProxyConntrackConfiguration{MaxPerCore: ptrTo(ct.MaxPerCore), Min: ptrTo(ct.Min),
		TCPEstablishedTimeout: ptrTo(dur(ct.TCPEstablishedTimeout)), TCPCloseWaitTimeout: ptrTo(dur(ct.TCPCloseWaitTimeout)),
		TCPBeLiberal: ct.TCPBeLiberal, UDPTimeout: dur(ct.UDPTimeout), UDPStreamTimeout: dur(ct.UDPStreamTimeout)}
	return k
}

// WriteFile writes c as a KubeProxyConfiguration file (--write-config-to).
func (c *Config) WriteFile(path string) error {
	js, err := json.Marshal(c.KubeProxyConfiguration())
	if err != nil {
		return fmt.Errorf("--write-config-to: %w", err)
	}
	// The sections svcproxy has nothing for are left out rather than
	// written empty (an empty logging section reads back as set).
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return fmt.Errorf("--write-config-to: %w", err)
	}
	for _, k := range []string{"logging", "ipvs", "winkernel"} {
		delete(doc, k)
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("--write-config-to: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("--write-config-to: %w", err)
	}
	return nil
}

// Package config owns svcproxy's settings: defaults, kube-proxy's flags and
// its KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1), and
// their validation. Errors name the flag or field at fault.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Config is everything `svcproxy run` needs to know.
type Config struct {
	Kubeconfig         string
	Manifests          string
	HostnameOverride   string
	ClusterCIDR        string
	Mode               string
	MasqueradeAll      bool
	LocalhostNodePorts bool
	NodePortAddresses  []string
	// DetectLocalMode tells pod traffic apart: ClusterCIDR (by
	// --cluster-cidr), NodeCIDR (by the Node's spec.podCIDRs),
	// BridgeInterface (arriving on PodBridgeInterface) or
	// InterfaceNamePrefix (on an interface named PodInterfacePrefix...).
	DetectLocalMode    string
	PodBridgeInterface string
	PodInterfacePrefix string
	// ServiceCIDRs add to the ranges of ServiceCIDR objects (which an API
	// server before v1.33, or a folder of manifests, may lack).
	ServiceCIDRs       []string
	SyncPeriod         time.Duration
	MinSyncPeriod      time.Duration
	MetricsBindAddress string
	HealthzBindAddress string
	// EnableProfiling serves Go's pprof handlers at /debug/pprof/ on the
	// metrics address, as upstream's --profiling does.
	EnableProfiling bool
	// NodePortReservation is range, ports or off: what svcproxy adds to
	// net.ipv4.ip_local_reserved_ports.
	NodePortReservation string
	// NodePortRange is the API server's --service-node-port-range.
	NodePortRange string
	// StateDir keeps what svcproxy changed on the node, to undo it.
	StateDir string
	// QPS and Burst limit requests to the API server.
	QPS   float32
	Burst int32
	// ContentType is what the API client asks the API server for; protobuf
	// decodes with far less garbage than JSON.
	ContentType string
	// Master overrides the kubeconfig's API server address (--master).
	Master string
	// OOMScoreAdj is written to the process's oom_score_adj (nil: left
	// alone).
	OOMScoreAdj *int32
	Conntrack   Conntrack
	// MasqueradeBit is the packet mark bit that asks for masquerading in
	// iptables mode (--iptables-masquerade-bit); NFTablesMasqueradeBit
	// that of nftables mode, which as in kube-proxy only the config file
	// sets.
	MasqueradeBit         int32
	NFTablesMasqueradeBit int32
	// FeatureGates are kube-proxy's, by name (see Enabled).
	FeatureGates FeatureGates
}

// Conntrack are kube-proxy's conntrack settings (--conntrack-*, the config
// file's conntrack section).
type Conntrack struct {
	// MaxPerCore × CPUs (at least Min, at most 1M) is what nf_conntrack_max
	// is raised to; 0 leaves it alone. It is never lowered.
	MaxPerCore, Min int32
	// Timeouts are set when above 0.
	TCPEstablishedTimeout, TCPCloseWaitTimeout time.Duration
	UDPTimeout, UDPStreamTimeout               time.Duration
	// TCPBeLiberal sets nf_conntrack_tcp_be_liberal (then out-of-window
	// packets are not INVALID, and iptables mode drops no INVALID packets).
	TCPBeLiberal bool
}

// Defaults are kube-proxy's defaults.
func Defaults() Config {
	return Config{
		Mode:                "iptables",
		LocalhostNodePorts:  true,
		SyncPeriod:          30 * time.Second,
		MinSyncPeriod:       time.Second,
		MetricsBindAddress:  "127.0.0.1:10249",
		HealthzBindAddress:  "0.0.0.0:10256",
		NodePortReservation: "range",
		NodePortRange:       "30000-32767",
		StateDir:            "/var/lib/svcproxy",
		QPS:                 5,
		Burst:               10,
		ContentType:         "application/vnd.kubernetes.protobuf",
		// As kube-proxy: the OOM killer takes the proxy last.
		OOMScoreAdj:   ptrTo(int32(-999)),
		MasqueradeBit: 14, NFTablesMasqueradeBit: 14,
		Conntrack: Conntrack{MaxPerCore: 32 * 1024, Min: 128 * 1024, TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour},
	}
}

func ptrTo[T any](v T) *T { return &v }

// Normalize fills in what kube-proxy fills in: a bind address given as a
// bare IP gets the default port (10256 for healthz, 10249 for metrics).
func (c *Config) Normalize() {
	for _, b := range []struct {
		addr *string
		port string
	}{{&c.HealthzBindAddress, "10256"}, {&c.MetricsBindAddress, "10249"}} {
		if ip, err := netip.ParseAddr(*b.addr); err == nil {
			*b.addr = net.JoinHostPort(ip.String(), b.port)
		}
	}
}

// modeSupported says what to do about a proxy mode svcproxy does not have.
func modeSupported(mode string) error {
	switch mode {
	case "", "iptables", "nftables":
		return nil
	case "ipvs":
		return fmt.Errorf("%q: svcproxy programs iptables or nftables, not IPVS: write nftables or iptables", mode)
	}
	return fmt.Errorf("%q: must be \"iptables\" or \"nftables\"", mode)
}

// Validate checks the settings; errors name the flag (config field).
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, field string, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", flag, field, fmt.Sprintf(format, a...)))
	}
	if err := modeSupported(c.Mode); err != nil {
		bad("proxy-mode", "mode", "%v", err)
	}
	if c.SyncPeriod <= 0 {
		bad("iptables-sync-period", "iptables.syncPeriod", "%s: must be greater than 0", c.SyncPeriod)
	}
	if c.MinSyncPeriod < 0 || c.MinSyncPeriod > c.SyncPeriod {
		bad("iptables-min-sync-period", "iptables.minSyncPeriod", "%s: must be between 0 and the sync period (%s)", c.MinSyncPeriod, c.SyncPeriod)
	}
	switch c.DetectLocalMode {
	case "", "ClusterCIDR", "NodeCIDR":
	case "BridgeInterface":
		if c.PodBridgeInterface == "" {
			bad("pod-bridge-interface", "detectLocal.bridgeInterface", "required with detect-local-mode BridgeInterface")
		}
	case "InterfaceNamePrefix":
		if c.PodInterfacePrefix == "" {
			bad("pod-interface-name-prefix", "detectLocal.interfaceNamePrefix", "required with detect-local-mode InterfaceNamePrefix")
		}
	default:
		bad("detect-local-mode", "detectLocalMode", "%q: must be ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix", c.DetectLocalMode)
	}
	if c.MasqueradeBit < 0 || c.MasqueradeBit > 31 {
		bad("iptables-masquerade-bit", "iptables.masqueradeBit", "%d: must be between 0 and 31", c.MasqueradeBit)
	}
	if c.NFTablesMasqueradeBit < 0 || c.NFTablesMasqueradeBit > 31 {
		bad("config", "nftables.masqueradeBit", "%d: must be between 0 and 31", c.NFTablesMasqueradeBit)
	}
	if c.OOMScoreAdj != nil && (*c.OOMScoreAdj < -1000 || *c.OOMScoreAdj > 1000) {
		bad("oom-score-adj", "oomScoreAdj", "%d: must be between -1000 and 1000", *c.OOMScoreAdj)
	}
	if c.ClusterCIDR != "" {
		if _, err := ClusterCIDRs(c.ClusterCIDR); err != nil {
			bad("cluster-cidr", "clusterCIDR", "%v", err)
		}
	}
	for _, a := range c.NodePortAddresses {
		if a == "primary" || a == "localhost" || a == "all" {
			continue
		}
		if _, err := netip.ParsePrefix(a); err != nil {
			bad("nodeport-addresses", "nodePortAddresses", "%q: not a CIDR or one of the keywords \"primary\", \"localhost\", \"all\"", a)
		}
	}
	for _, a := range c.ServiceCIDRs {
		if _, err := netip.ParsePrefix(a); err != nil {
			errs = append(errs, fmt.Errorf("--service-cidrs %q: not a CIDR", a))
		}
	}
	for _, b := range []struct{ flag, field, v string }{
		{"metrics-bind-address", "metricsBindAddress", c.MetricsBindAddress},
		{"healthz-bind-address", "healthzBindAddress", c.HealthzBindAddress},
	} {
		if b.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(b.v); err != nil {
			bad(b.flag, b.field, "%q: want IP:PORT", b.v)
		}
	}
	switch c.NodePortReservation {
	case "range", "ports", "off":
	default:
		errs = append(errs, fmt.Errorf("--nodeport-reservation %q: must be range, ports or off", c.NodePortReservation))
	}
	if lo, hi, ok := strings.Cut(c.NodePortRange, "-"); !ok || !validPort(lo) || !validPort(hi) {
		errs = append(errs, fmt.Errorf("--service-node-port-range %q: want FIRST-LAST, such as 30000-32767", c.NodePortRange))
	}
	if c.Kubeconfig != "" && c.Manifests != "" {
		errs = append(errs, errors.New("--kubeconfig and --manifests are alternatives: give one"))
	}
	return errors.Join(errs...)
}

// ClusterCIDRs parses --cluster-cidr: one CIDR, or an IPv4 and an IPv6 CIDR
// separated by a comma (dual-stack). It returns them by family: [IPv4, IPv6].
func ClusterCIDRs(v string) ([2]netip.Prefix, error) {
	var out [2]netip.Prefix
	for _, part := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return out, fmt.Errorf("%q: not a CIDR", part)
		}
		i := 0
		if p.Addr().Is6() {
			i = 1
		}
		if out[i].IsValid() {
			return out, fmt.Errorf("%q: at most one CIDR per family", v)
		}
		out[i] = p.Masked()
	}
	return out, nil
}

func validPort(s string) bool {
	var p int
	_, err := fmt.Sscanf(s, "%d", &p)
	return err == nil && p >= 1 && p <= 65535 && fmt.Sprint(p) == s
}

// LoadFile reads a KubeProxyConfiguration into c. Fields svcproxy does not
// act on are returned by name, so the caller can warn about them once.
// Unknown or repeated fields are read past as kube-proxy reads them
// (leniently), each in warnings.
func LoadFile(path string, c *Config) (unsupported, warnings []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("--config %s: not valid YAML: %w", path, err)
	}
	var kpc kpv1alpha1.KubeProxyConfiguration
	strict, err := sjson.UnmarshalStrict(js, &kpc)
	if err != nil {
		if field, v := badDuration(js); field != "" {
			if _, isNumber := v.(float64); isNumber {
				return nil, nil, fmt.Errorf("--config %s: %s: %v is not a duration: write it with its unit, such as \"%vs\"", path, field, v, v)
			}
			return nil, nil, fmt.Errorf("--config %s: %s: %w", path, field, err)
		}
		return nil, nil, fmt.Errorf("--config %s: %w", path, err)
	}
	for _, e := range strict {
		warnings = append(warnings, fmt.Sprintf("--config %s: %v (read past, as kube-proxy does)", path, e))
	}
	if kpc.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" || kpc.Kind != "KubeProxyConfiguration" {
		return nil, nil, fmt.Errorf("--config %s: apiVersion/kind %q/%q: want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration", path, kpc.APIVersion, kpc.Kind)
	}
	if err := modeSupported(string(kpc.Mode)); err != nil {
		return nil, nil, fmt.Errorf("--config %s: mode: %w", path, err)
	}
	apply(&kpc, c)
	return unsupportedFields(&kpc), warnings, nil
}

// durationFields are the KubeProxyConfiguration fields holding durations,
// whose parse errors do not say which field they are about.
var durationFields = []string{
	"iptables.syncPeriod", "iptables.minSyncPeriod", "ipvs.syncPeriod", "ipvs.minSyncPeriod",
	"nftables.syncPeriod", "nftables.minSyncPeriod", "configSyncPeriod", "conntrack.tcpEstablishedTimeout",
	"conntrack.tcpCloseWaitTimeout", "conntrack.udpTimeout", "conntrack.udpStreamTimeout",
}

// badDuration returns the first duration field whose value does not parse,
// and that value.
func badDuration(js []byte) (string, any) {
	var doc map[string]any
	if json.Unmarshal(js, &doc) != nil {
		return "", nil
	}
	for _, f := range durationFields {
		var v any = doc
		for _, part := range strings.Split(f, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[part]
		}
		if v == nil {
			continue
		}
		s, ok := v.(string)
		if _, err := time.ParseDuration(s); !ok || err != nil {
			return f, v
		}
	}
	return "", nil
}

func apply(k *kpv1alpha1.KubeProxyConfiguration, c *Config) {
	setStr := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	setStr(&c.Kubeconfig, k.ClientConnection.Kubeconfig)
	setStr(&c.HostnameOverride, k.HostnameOverride)
	setStr(&c.ClusterCIDR, k.ClusterCIDR)
	setStr(&c.Mode, string(k.Mode))
	setStr(&c.MetricsBindAddress, k.MetricsBindAddress)
	setStr(&c.HealthzBindAddress, k.HealthzBindAddress)
	if k.EnableProfiling {
		c.EnableProfiling = true
	}
	setStr(&c.ContentType, k.ClientConnection.ContentType)
	if k.ClientConnection.QPS != 0 {
		c.QPS = k.ClientConnection.QPS
	}
	if k.ClientConnection.Burst != 0 {
		c.Burst = k.ClientConnection.Burst
	}
	if k.IPTables.MasqueradeAll {
		c.MasqueradeAll = true
	}
	if k.IPTables.MasqueradeBit != nil {
		c.MasqueradeBit = *k.IPTables.MasqueradeBit
	}
	if k.NFTables.MasqueradeBit != nil {
		c.NFTablesMasqueradeBit = *k.NFTables.MasqueradeBit
	}
	if k.IPTables.LocalhostNodePorts != nil {
		c.LocalhostNodePorts = *k.IPTables.LocalhostNodePorts
	}
	if k.IPTables.SyncPeriod.Duration != 0 {
		c.SyncPeriod = k.IPTables.SyncPeriod.Duration
	}
	if k.IPTables.MinSyncPeriod.Duration != 0 {
		c.MinSyncPeriod = k.IPTables.MinSyncPeriod.Duration
	}
	if len(k.NodePortAddresses) > 0 {
		c.NodePortAddresses = k.NodePortAddresses
	}
	if len(k.FeatureGates) > 0 {
		c.FeatureGates = FeatureGates(k.FeatureGates)
	}
	setStr(&c.DetectLocalMode, string(k.DetectLocalMode))
	setStr(&c.PodBridgeInterface, k.DetectLocal.BridgeInterface)
	setStr(&c.PodInterfacePrefix, k.DetectLocal.InterfaceNamePrefix)
	if k.OOMScoreAdj != nil {
		c.OOMScoreAdj = k.OOMScoreAdj
	}
	ct := &c.Conntrack
	if k.Conntrack.MaxPerCore != nil {
		ct.MaxPerCore = *k.Conntrack.MaxPerCore
	}
	if k.Conntrack.Min != nil {
		ct.Min = *k.Conntrack.Min
	}
	if k.Conntrack.TCPEstablishedTimeout != nil {
		ct.TCPEstablishedTimeout = k.Conntrack.TCPEstablishedTimeout.Duration
	}
	if k.Conntrack.TCPCloseWaitTimeout != nil {
		ct.TCPCloseWaitTimeout = k.Conntrack.TCPCloseWaitTimeout.Duration
	}
	ct.TCPBeLiberal = ct.TCPBeLiberal || k.Conntrack.TCPBeLiberal
	if k.Conntrack.UDPTimeout.Duration != 0 {
		ct.UDPTimeout = k.Conntrack.UDPTimeout.Duration
	}
	if k.Conntrack.UDPStreamTimeout.Duration != 0 {
		ct.UDPStreamTimeout = k.Conntrack.UDPStreamTimeout.Duration
	}
	// In nftables mode the nftables section's settings win, as upstream.
	if k.Mode == "nftables" {
		if k.NFTables.MasqueradeAll {
			c.MasqueradeAll = true
		}
		if k.NFTables.SyncPeriod.Duration != 0 {
			c.SyncPeriod = k.NFTables.SyncPeriod.Duration
		}
		if k.NFTables.MinSyncPeriod.Duration != 0 {
			c.MinSyncPeriod = k.NFTables.MinSyncPeriod.Duration
		}
	}
}

// unsupportedFields names the fields that are set but that svcproxy does
// not act on.
func unsupportedFields(k *kpv1alpha1.KubeProxyConfiguration) []string {
	var out []string
	check := func(name string, v any) {
		if !reflect.ValueOf(v).IsZero() {
			out = append(out, name)
		}
	}
	check("clientConnection.acceptContentTypes", k.ClientConnection.AcceptContentTypes)
	check("logging", k.Logging)
	check("bindAddress", k.BindAddress)
	check("bindAddressHardFail", k.BindAddressHardFail)
	check("showHiddenMetricsForVersion", k.ShowHiddenMetricsForVersion)
	check("ipvs", k.IPVS)
	check("winkernel", k.Winkernel)
	check("configSyncPeriod", k.ConfigSyncPeriod)
	check("portRange", k.PortRange)
	check("windowsRunAsService", k.WindowsRunAsService)
	return out
}

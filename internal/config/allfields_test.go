package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// everyField sets every field of KubeProxyConfiguration v1alpha1; the
// sections of the mode not chosen hold other values, to show which win.
const everyField = `featureGates: {KubeProxyNFTablesLocalhostNodePorts: true}
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  acceptContentTypes: application/json
  contentType: application/vnd.kubernetes.protobuf
  qps: 7
  burst: 14
logging: {format: text, verbosity: 2}
hostnameOverride: node-9
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
bindAddressHardFail: true
enableProfiling: true
showHiddenMetricsForVersion: "1.36"
iptables:
  masqueradeBit: 13
  masqueradeAll: true
  localhostNodePorts: false
  syncPeriod: 31s
  minSyncPeriod: 3s
ipvs:
  syncPeriod: 30s
  minSyncPeriod: 2s
  scheduler: rr
  excludeCIDRs: [10.0.0.0/8]
  strictARP: true
  tcpTimeout: 1s
  tcpFinTimeout: 1s
  udpTimeout: 1s
nftables:
  masqueradeBit: 15
  masqueradeAll: true
  syncPeriod: 32s
  minSyncPeriod: 4s
winkernel:
  networkName: vxlan0
  sourceVip: 10.0.0.1
  enableDSR: true
  rootHnsEndpointName: cbr0
  forwardHealthCheckVip: true
detectLocalMode: InterfaceNamePrefix
detectLocal: {bridgeInterface: cbr0, interfaceNamePrefix: veth}
clusterCIDR: 10.244.0.0/16
nodePortAddresses: [192.168.0.0/16]
oomScoreAdj: -998
conntrack:
  maxPerCore: 1000
  min: 2000
  tcpEstablishedTimeout: 3h
  tcpCloseWaitTimeout: 30m
  tcpBeLiberal: true
  udpTimeout: 25s
  udpStreamTimeout: 100s
configSyncPeriod: 15m
portRange: 30000-32767
windowsRunAsService: true
`

// A config file holding every v1alpha1 field loads: each field is either
// acted on (the settings show it) or named as not acted on; none is fatal.
func TestLoadFileTakesEveryField(t *testing.T) {
	assertSetsEveryField(t, header+"mode: nftables\n"+everyField)
	warned := []string{"bindAddress", "bindAddressHardFail", "clientConnection.acceptContentTypes", "configSyncPeriod",
		"ipvs", "logging", "portRange", "showHiddenMetricsForVersion", "windowsRunAsService", "winkernel"}
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			c := Defaults()
			unsupported, warnings, err := LoadFile(write(t, header+"mode: "+mode+"\n"+everyField), &c)
			if err != nil || len(warnings) > 0 {
				t.Fatal(err, warnings)
			}
			slices.Sort(unsupported)
			if !slices.Equal(unsupported, warned) {
				t.Errorf("named as not acted on: %v\nwant %v", unsupported, warned)
			}
			sync, minSync := 31*time.Second, 3*time.Second
			if mode == "nftables" {
				sync, minSync = 32*time.Second, 4*time.Second
			}
			if c.Mode != mode || c.Kubeconfig != "/var/lib/kube-proxy/kubeconfig.conf" || c.ContentType != "application/vnd.kubernetes.protobuf" ||
				c.QPS != 7 || c.Burst != 14 || c.HostnameOverride != "node-9" || c.HealthzBindAddress != "0.0.0.0:10256" ||
				c.MetricsBindAddress != "127.0.0.1:10249" || !c.FeatureGates.Enabled(LocalhostNodePortsGate) || !c.EnableProfiling || !c.MasqueradeAll || c.LocalhostNodePorts ||
				c.MasqueradeBit != 13 || c.NFTablesMasqueradeBit != 15 || c.SyncPeriod != sync || c.MinSyncPeriod != minSync ||
				c.DetectLocalMode != "InterfaceNamePrefix" || c.PodBridgeInterface != "cbr0" || c.PodInterfacePrefix != "veth" ||
				c.ClusterCIDR != "10.244.0.0/16" || strings.Join(c.NodePortAddresses, ",") != "192.168.0.0/16" ||
				c.OOMScoreAdj == nil || *c.OOMScoreAdj != -998 {
				t.Errorf("settings %+v", c)
			}
			if ct := c.Conntrack; ct.MaxPerCore != 1000 || ct.Min != 2000 || ct.TCPEstablishedTimeout != 3*time.Hour ||
				ct.TCPCloseWaitTimeout != 30*time.Minute || !ct.TCPBeLiberal || ct.UDPTimeout != 25*time.Second ||
				ct.UDPStreamTimeout != 100*time.Second {
				t.Errorf("conntrack %+v", ct)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// assertSetsEveryField fails when the file leaves a field of the upstream
// type at its zero value, so that a field added upstream is noticed here.
func assertSetsEveryField(t *testing.T, file string) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	var k kpv1alpha1.KubeProxyConfiguration
	if strict, err := sjson.UnmarshalStrict(js, &k); err != nil || len(strict) > 0 {
		t.Fatal(err, strict)
	}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := 0; i < v.NumField(); i++ {
			f, sf := v.Field(i), v.Type().Field(i)
			name := path + strings.Split(sf.Tag.Get("json"), ",")[0]
			switch {
			case sf.Anonymous: // TypeMeta
			case f.Kind() == reflect.Struct && strings.HasPrefix(f.Type().PkgPath(), "k8s.io/kube-proxy/"):
				walk(f, name+".")
			case f.IsZero():
				t.Errorf("the test's file does not set %s", name)
			}
		}
	}
	walk(reflect.ValueOf(k), "")
}

// --write-config-to: the settings written as a config file load back as
// the same settings, in both modes.
func TestWrittenConfigLoadsBack(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		c := Defaults()
		c.Mode, c.ClusterCIDR, c.HostnameOverride, c.Kubeconfig = mode, "10.244.0.0/16", "node-3", "/etc/kubeconfig"
		c.MasqueradeAll, c.LocalhostNodePorts, c.EnableProfiling = true, false, true
		c.NodePortAddresses, c.DetectLocalMode, c.PodInterfacePrefix = []string{"localhost", "10.0.0.0/8"}, "InterfaceNamePrefix", "veth"
		c.MasqueradeBit, c.NFTablesMasqueradeBit, c.QPS, c.Burst = 11, 12, 20, 40
		c.SyncPeriod, c.MinSyncPeriod = 45*time.Second, 3*time.Second
		c.FeatureGates = FeatureGates{LocalhostNodePortsGate: true}
		c.Conntrack.TCPBeLiberal, c.Conntrack.UDPTimeout = true, 40*time.Second
		path := filepath.Join(t.TempDir(), "kube-proxy.yaml")
		if err := c.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		back := Defaults()
		unsupported, warnings, err := LoadFile(path, &back)
		if err != nil || len(unsupported) > 0 || len(warnings) > 0 {
			t.Fatalf("%s: %v %v %v", mode, err, unsupported, warnings)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: loaded back\n%+v\nwant\n%+v", mode, back, c)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

func TestLoadFile(t *testing.T) {
	p := write(t, header+`clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 50
  contentType: application/json
hostnameOverride: node-1
clusterCIDR: 10.244.0.0/16
mode: iptables
iptables:
  masqueradeAll: true
  syncPeriod: 10s
  minSyncPeriod: 0s
  localhostNodePorts: false
nodePortAddresses: ["primary"]
enableProfiling: true
ipvs:
  scheduler: rr
conntrack:
  maxPerCore: 32768
oomScoreAdj: -999
detectLocalMode: InterfaceNamePrefix
detectLocal:
  interfaceNamePrefix: veth
`)
	c := Defaults()
	unsupported, warnings, err := LoadFile(p, &c)
	if err != nil || len(warnings) > 0 {
		t.Fatal(err, warnings)
	}
	if c.Kubeconfig != "/var/lib/kube-proxy/kubeconfig.conf" || c.HostnameOverride != "node-1" || c.ClusterCIDR != "10.244.0.0/16" ||
		!c.MasqueradeAll || c.SyncPeriod != 10*time.Second || c.MinSyncPeriod != time.Second || c.LocalhostNodePorts || c.QPS != 50 ||
		len(c.NodePortAddresses) != 1 || !c.EnableProfiling || c.ContentType != "application/json" ||
		c.DetectLocalMode != "InterfaceNamePrefix" || c.PodInterfacePrefix != "veth" {
		t.Errorf("config = %+v", c)
	}
	if got := strings.Join(unsupported, ","); got != "ipvs" {
		t.Errorf("unsupported = %s, want ipvs", got)
	}
	if c.Conntrack.MaxPerCore != 32768 || c.Conntrack.Min != 128*1024 || c.Conntrack.TCPEstablishedTimeout != 24*time.Hour {
		t.Errorf("conntrack = %+v", c.Conntrack)
	}
	if c.OOMScoreAdj == nil || *c.OOMScoreAdj != -999 {
		t.Errorf("oomScoreAdj = %v, want -999", c.OOMScoreAdj)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestLoadFileErrorsNameTheField(t *testing.T) {
	tests := []struct{ body, want string }{
		{header + "iptables:\n  syncPeriod: soon\n", "iptables.syncPeriod"},
		{"apiVersion: v1\nkind: ConfigMap\n", "want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration"},
		{header + "mode: [\n", "not valid YAML"},
		{header + "iptables:\n  syncPeriod: 30\n", `iptables.syncPeriod: 30 is not a duration: write it with its unit, such as "30s"`},
		{header + "mode: ipvs\n", `mode: "ipvs": svcproxy programs iptables or nftables, not IPVS: write nftables or iptables`},
	}
	for _, tt := range tests {
		c := Defaults()
		_, _, err := LoadFile(write(t, tt.body), &c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.body, err, tt.want)
		}
	}
	c := Defaults()
	if _, _, err := LoadFile(write(t, header+"clusterCIDR: nope\n"), &c); err != nil {
		t.Fatal(err)
	}
	c.Mode = "userspace"
	err := c.Validate()
	for _, want := range []string{`--proxy-mode (mode): "userspace"`, `--cluster-cidr (clusterCIDR): "nope": not a CIDR`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestDefaultsKeepMetricsOnLoopback(t *testing.T) {
	d := Defaults()
	if d.MetricsBindAddress != "127.0.0.1:10249" {
		t.Errorf("metrics must listen on 127.0.0.1 by default, not %q", d.MetricsBindAddress)
	}
	if d.NodePortReservation != "range" || d.NodePortRange != "30000-32767" {
		t.Errorf("NodePorts must be reserved by default: %+v", d)
	}
}

// An unknown field is read past with a warning that names it, as kube-proxy
// reads a file leniently; the fields around it still count.
func TestLoadFileReadsPastUnknownFields(t *testing.T) {
	c := Defaults()
	_, warnings, err := LoadFile(write(t, header+"iptables:\n  syncPerod: 10s\n  minSyncPeriod: 2s\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `unknown field "iptables.syncPerod"`) {
		t.Errorf("warnings = %v", warnings)
	}
	if c.MinSyncPeriod != 2*time.Second {
		t.Errorf("minSyncPeriod = %s: the known field next to the unknown one was lost", c.MinSyncPeriod)
	}
}

// Bind addresses given as a bare IP get kube-proxy's default ports.
func TestNormalizeBareIPs(t *testing.T) {
	c := Defaults()
	c.HealthzBindAddress, c.MetricsBindAddress = "0.0.0.0", "::1"
	c.Normalize()
	if c.HealthzBindAddress != "0.0.0.0:10256" || c.MetricsBindAddress != "[::1]:10249" {
		t.Errorf("healthz %s, metrics %s", c.HealthzBindAddress, c.MetricsBindAddress)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

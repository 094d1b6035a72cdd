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
`)
	c := Defaults()
	unsupported, err := LoadFile(p, &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kubeconfig != "/var/lib/kube-proxy/kubeconfig.conf" || c.HostnameOverride != "node-1" || c.ClusterCIDR != "10.244.0.0/16" ||
		!c.MasqueradeAll || c.SyncPeriod != 10*time.Second || c.MinSyncPeriod != time.Second || c.LocalhostNodePorts || c.QPS != 50 ||
		len(c.NodePortAddresses) != 1 || !c.EnableProfiling || c.ContentType != "application/json" {
		t.Errorf("config = %+v", c)
	}
	if got := strings.Join(unsupported, ","); got != "ipvs,oomScoreAdj,conntrack" {
		t.Errorf("unsupported = %s, want ipvs,oomScoreAdj,conntrack", got)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestLoadFileErrorsNameTheField(t *testing.T) {
	tests := []struct{ body, want string }{
		{header + "iptables:\n  syncPerod: 10s\n", `unknown field "iptables.syncPerod"`},
		{header + "iptables:\n  syncPeriod: soon\n", "iptables.syncPeriod"},
		{"apiVersion: v1\nkind: ConfigMap\n", "want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration"},
		{header + "mode: [\n", "not valid YAML"},
	}
	for _, tt := range tests {
		c := Defaults()
		_, err := LoadFile(write(t, tt.body), &c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.body, err, tt.want)
		}
	}
	c := Defaults()
	if _, err := LoadFile(write(t, header+"mode: ipvs\nclusterCIDR: nope\n"), &c); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	for _, want := range []string{`--proxy-mode (mode): "ipvs"`, `--cluster-cidr (clusterCIDR): "nope": not a CIDR`} {
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

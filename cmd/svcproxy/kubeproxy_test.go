package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// kubeProxyFlags are the flags `kube-proxy --help` lists in v1.37.2 (Linux),
// with a value each, as a DaemonSet written for kube-proxy gives them.
// --help, --version, --cleanup and --init-only act and exit: they are
// tested apart.
var kubeProxyFlags = []string{
	"--bind-address=192.168.77.1", "--bind-address-hard-fail", "--cluster-cidr=10.244.0.0/16", "--config-sync-period=15m",
	"--conntrack-max-per-core=32768", "--conntrack-min=131072", "--conntrack-tcp-be-liberal",
	"--conntrack-tcp-timeout-close-wait=1h", "--conntrack-tcp-timeout-established=24h", "--conntrack-udp-timeout=30s",
	"--conntrack-udp-timeout-stream=2m", "--detect-local-mode=NodeCIDR", "--feature-gates=AllAlpha=false",
	"--healthz-bind-address=0.0.0.0", "--hostname-override=node-1", "--iptables-localhost-nodeports=false",
	"--iptables-masquerade-bit=12", "--iptables-min-sync-period=2s", "--iptables-sync-period=20s",
	"--ipvs-exclude-cidrs=10.0.0.0/8", "--ipvs-min-sync-period=1s", "--ipvs-scheduler=rr", "--ipvs-strict-arp",
	"--ipvs-sync-period=30s", "--ipvs-tcp-timeout=0s", "--ipvs-tcpfin-timeout=0s", "--ipvs-udp-timeout=0s",
	"--kube-api-burst=20", "--kube-api-content-type=application/json", "--kube-api-qps=10", "--kubeconfig=/var/lib/kube-proxy/kubeconfig",
	"--log-flush-frequency=5s", "--log-json-info-buffer-size=0", "--log-json-split-stream", "--log-text-info-buffer-size=0",
	"--log-text-split-stream", "--logging-format=text", "--masquerade-all", "--master=https://10.0.0.1:6443",
	"--metrics-bind-address=127.0.0.1:10249", "--nodeport-addresses=primary", "--oom-score-adj=-999",
	"--pod-bridge-interface=cbr0", "--pod-interface-name-prefix=veth", "--profiling", "--proxy-mode=nftables",
	"--show-hidden-metrics-for-version=1.36", "-v=2", "--vmodule=proxier=4", "--write-config-to=/tmp/kp.yaml",
}

// resolved is what run makes of args: its flags, settings and warnings.
func resolved(t *testing.T, args []string) (*runFlags, []string) {
	t.Helper()
	cmd, f := newRunCmdFlags()
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatalf("%v refused: %v", args, err)
	}
	warnings, err := f.resolve(cmd.Flags())
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return f, warnings
}

// Every kube-proxy flag is taken: acted on (the settings show it) or named
// in one warning; none is fatal.
func TestEveryKubeProxyFlagIsTaken(t *testing.T) {
	f, warnings := resolved(t, kubeProxyFlags)
	said := strings.Join(warnings, "\n")
	for _, u := range unactedFlags {
		if !strings.Contains(said, "--"+u.name+" (") {
			t.Errorf("--%s is neither acted on nor named in a warning:\n%s", u.name, said)
		}
	}
	c := f.cfg
	if c.HealthzBindAddress != "0.0.0.0:10256" || c.MetricsBindAddress != "127.0.0.1:10249" || c.Mode != "nftables" ||
		c.ClusterCIDR != "10.244.0.0/16" || c.DetectLocalMode != "NodeCIDR" || !c.MasqueradeAll || c.LocalhostNodePorts ||
		c.SyncPeriod.String() != "20s" || c.MinSyncPeriod.String() != "2s" || c.Master != "https://10.0.0.1:6443" ||
		c.OOMScoreAdj == nil || *c.OOMScoreAdj != -999 || c.QPS != 10 || c.Burst != 20 || c.ContentType != "application/json" ||
		!c.EnableProfiling || c.HostnameOverride != "node-1" || f.verbosity != 2 || c.MasqueradeBit != 12 ||
		c.PodBridgeInterface != "cbr0" || c.PodInterfacePrefix != "veth" {
		t.Errorf("settings %+v", c)
	}
	if ct := c.Conntrack; ct.MaxPerCore != 32768 || ct.Min != 131072 || !ct.TCPBeLiberal || ct.TCPCloseWaitTimeout.String() != "1h0m0s" ||
		ct.TCPEstablishedTimeout.String() != "24h0m0s" || ct.UDPTimeout.String() != "30s" || ct.UDPStreamTimeout.String() != "2m0s" {
		t.Errorf("conntrack settings %+v", ct)
	}
}

// With --config the file wins over the flags that have a field in it, as in
// kube-proxy, and each such flag given is named; --hostname-override still
// applies, and so do svcproxy's own flags.
func TestConfigFileWinsOverFlags(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nclusterCIDR: 10.244.0.0/16\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, warnings := resolved(t, []string{"--config", p, "--proxy-mode", "iptables", "--cluster-cidr", "10.0.0.0/8",
		"--hostname-override", "node-7", "--state-dir", "/tmp/sv", "--detect-local-mode", "NodeCIDR"})
	if f.cfg.Mode != "nftables" || f.cfg.ClusterCIDR != "10.244.0.0/16" || f.cfg.HostnameOverride != "node-7" || f.cfg.StateDir != "/tmp/sv" {
		t.Errorf("settings %+v", f.cfg)
	}
	said := strings.Join(warnings, "\n")
	for _, want := range []string{"--cluster-cidr, --detect-local-mode, --proxy-mode: the --config file wins", `unknown field "bogus"`} {
		if !strings.Contains(said, want) {
			t.Errorf("no warning %q in:\n%s", want, said)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCmd(t, newRunCmd(), "--version")
	if err != nil || !strings.HasPrefix(out, "svcproxy ") {
		t.Fatalf("run --version: %v: %q", err, out)
	}
	for _, c := range []struct {
		cmd  *cobra.Command
		args []string
	}{{newVersionCmd(), nil}, {newRootCmd(), []string{"--version"}}} {
		out, _, err = runCmd(t, c.cmd, c.args...)
		for _, want := range []string{"svcproxy ", "commit: ", "go: go1.", "proxy modes: [iptables nftables]"} {
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("%s %v: %v, output lacks %q: %s", c.cmd.Name(), c.args, err, want, out)
			}
		}
	}
}

// As in kube-proxy, --iptables-masquerade-bit sets iptables mode's mark,
// and nftables mode's comes from the config file (default bit 14).
func TestMasqueradeBitByMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nnftables: {masqueradeBit: 9}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		mark uint32
		warn bool
	}{
		{[]string{"--proxy-mode=iptables", "--iptables-masquerade-bit=12"}, 1 << 12, false},
		{[]string{"--proxy-mode=nftables", "--iptables-masquerade-bit=12"}, 1 << 14, true},
		{[]string{"--proxy-mode=nftables"}, 1 << 14, false},
		{[]string{"--config=" + p}, 1 << 9, false},
	} {
		f, warnings := resolved(t, tt.args)
		o, _ := f.optionsFor(false)
		warned := strings.Contains(strings.Join(warnings, "\n"), "--iptables-masquerade-bit applies to iptables mode only")
		if o.Mark() != tt.mark || warned != tt.warn {
			t.Errorf("%v: mark %#x (warned %v), want %#x (warned %v)", tt.args, o.Mark(), warned, tt.mark, tt.warn)
		}
	}
}

// As upstream, nftables mode answers NodePorts on the node's primary
// addresses unless --nodeport-addresses says otherwise; iptables mode on
// every address.
func TestNFTablesDefaultsNodePortAddressesToPrimary(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		primary bool
	}{
		{[]string{"--proxy-mode=nftables"}, true},
		{[]string{"--proxy-mode=iptables"}, false},
		{[]string{"--proxy-mode=nftables", "--nodeport-addresses=192.168.0.0/16"}, false},
		{[]string{"--proxy-mode=nftables", "--nodeport-addresses=all"}, false},
	} {
		f, _ := resolved(t, tt.args)
		o, err := f.optionsFor(false)
		if err != nil || o.NodePortPrimary != tt.primary {
			t.Errorf("%v: primary %v (%v), want %v", tt.args, o.NodePortPrimary, err, tt.primary)
		}
	}
}

// Feature gates as kube-proxy takes them: KubeProxyNFTablesLocalhostNodePorts
// (or AllAlpha) turns on nftables mode's localhost NodePorts, which serve
// TCP for a family whose loopback --nodeport-addresses lists; the other
// gates make no difference and are named; a malformed one is refused.
func TestFeatureGates(t *testing.T) {
	for _, tt := range []struct {
		args           []string
		reject         bool
		serve4, serve6 bool
	}{
		{[]string{"--proxy-mode=nftables", "--feature-gates=KubeProxyNFTablesLocalhostNodePorts=true", "--nodeport-addresses=localhost,primary"}, true, true, true},
		{[]string{"--proxy-mode=nftables", "--feature-gates=AllAlpha=true", "--nodeport-addresses=127.0.0.1/32"}, true, true, false},
		{[]string{"--proxy-mode=nftables", "--feature-gates=KubeProxyNFTablesLocalhostNodePorts=true"}, true, false, false},
		{[]string{"--proxy-mode=nftables", "--feature-gates=AllAlpha=true,KubeProxyNFTablesLocalhostNodePorts=false", "--nodeport-addresses=localhost"}, false, false, false},
		{[]string{"--proxy-mode=nftables", "--nodeport-addresses=localhost"}, false, false, false},
		// iptables mode: no gate; "localhost" is 127.0.0.0/8, DNATed.
		{[]string{"--proxy-mode=iptables", "--feature-gates=KubeProxyNFTablesLocalhostNodePorts=true", "--nodeport-addresses=localhost"}, false, true, false},
	} {
		f, _ := resolved(t, tt.args)
		o4, err4 := f.optionsFor(false)
		o6, err6 := f.optionsFor(true)
		if err4 != nil || err6 != nil {
			t.Fatalf("%v: %v %v", tt.args, err4, err6)
		}
		if o4.RejectLocalhostNodePorts != tt.reject || o6.RejectLocalhostNodePorts != tt.reject ||
			o4.LocalhostNodePorts != tt.serve4 || o6.LocalhostNodePorts != tt.serve6 {
			t.Errorf("%v: reject %t/%t serve %t/%t, want reject %t serve %t/%t", tt.args, o4.RejectLocalhostNodePorts, o6.RejectLocalhostNodePorts,
				o4.LocalhostNodePorts, o6.LocalhostNodePorts, tt.reject, tt.serve4, tt.serve6)
		}
	}
	_, warnings := resolved(t, []string{"--feature-gates=NFTablesNetlink=false", "--feature-gates=NoSuchGate=true,AllBeta=false"})
	said := strings.Join(warnings, "\n")
	for _, want := range []string{"NFTablesNetlink=false (svcproxy always programs nftables over netlink)", "NoSuchGate (not a gate kube-proxy reads)"} {
		if !strings.Contains(said, want) {
			t.Errorf("no warning %q in:\n%s", want, said)
		}
	}
	cmd, _ := newRunCmdFlags()
	if err := cmd.Flags().Parse([]string{"--feature-gates=KubeProxyNFTablesLocalhostNodePorts"}); err == nil || !strings.Contains(err.Error(), "NAME=true") {
		t.Errorf("a gate without a value: %v, want refused", err)
	}
}

// --write-config-to writes the settings as a config file and exits, as
// kube-proxy's does; the file gives the same settings back.
func TestWriteConfigTo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kube-proxy.yaml")
	if _, _, err := runCmd(t, newRunCmd(), "--write-config-to", p, "--proxy-mode", "nftables", "--cluster-cidr", "10.244.0.0/16", "--nodeport-addresses", "localhost"); err != nil {
		t.Fatal(err)
	}
	f, _ := resolved(t, []string{"--config", p})
	if f.cfg.Mode != "nftables" || f.cfg.ClusterCIDR != "10.244.0.0/16" || len(f.cfg.NodePortAddresses) != 1 || f.cfg.NodePortAddresses[0] != "localhost" {
		t.Errorf("settings from the written file: %+v", f.cfg)
	}
}

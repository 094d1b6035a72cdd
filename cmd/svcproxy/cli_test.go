package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

func runCmd(t *testing.T, cmd *cobra.Command, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestRulesOnBundledManifests(t *testing.T) {
	out, stderr, err := runCmd(t, newRulesCmd(), "--manifests", "../../examples/lab", "--hostname-override", "node-1", "--cluster-cidr", "10.244.0.0/16")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	rs, err := netfilter.ParseIPTables(out)
	if err != nil {
		t.Fatalf("output is not restore input: %v", err)
	}
	if rs.Table("nat").Chain("KUBE-NODEPORTS") == nil || !strings.Contains(out, "--dport 30450 -j KUBE-EXT-") {
		t.Errorf("NodePort 30450 missing from:\n%s", out)
	}
}

func TestRulesReportsBadObjectsAndPrintsTheRest(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile("../../examples/lab/azure-vote-front.yaml")
	os.WriteFile(filepath.Join(dir, "good.yaml"), good, 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}\n"), 0o644)
	out, stderr, err := runCmd(t, newRulesCmd(), "--manifests", dir)
	if err == nil || !strings.Contains(err.Error(), "1 object(s) could not be used") {
		t.Errorf("err = %v, want a non-zero exit naming the count", err)
	}
	if !strings.Contains(stderr, `bad.yaml: Service default/bad: spec.clusterIP: "10.96.0.300" is not an IP address`) {
		t.Errorf("stderr = %q", stderr)
	}
	if !strings.Contains(out, "default/azure-vote-front") {
		t.Error("the good Service's rules are missing")
	}
}

func TestFlagErrorsAreOneLine(t *testing.T) {
	tests := []struct {
		cmd  *cobra.Command
		args []string
		want string
	}{
		{newRulesCmd(), nil, "--manifests is required"},
		{newRulesCmd(), []string{"--manifests", "../../examples/lab", "--cluster-cidr", "10.244.0.0"}, `--cluster-cidr (clusterCIDR): "10.244.0.0": not a CIDR`},
		{newRulesCmd(), []string{"--manifests", "/does/not/exist"}, "read manifests: stat /does/not/exist: no such file"},
		{newRunCmd(), []string{"--manifests", ".", "--proxy-mode", "ipvs"}, `--proxy-mode (mode): "ipvs": svcproxy programs iptables or nftables, not IPVS: write nftables or iptables`},
		{newRunCmd(), []string{"--manifests", ".", "--kubeconfig", "k"}, "--kubeconfig and --manifests are alternatives"},
		{newRunCmd(), []string{"--config", "/does/not/exist"}, "--config: open /does/not/exist"},
		{newRunCmd(), []string{"--manifests", ".", "--iptables-min-sync-period", "1m"}, "--iptables-min-sync-period (iptables.minSyncPeriod): 1m0s: must be between 0 and the sync period (30s)"},
	}
	for _, tt := range tests {
		_, _, err := runCmd(t, tt.cmd, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %v: err = %v, want one line containing %q", tt.cmd.Name(), tt.args, err, tt.want)
		}
	}
}

// Localhost NodePorts (and so route_localnet) only where
// --nodeport-addresses can match 127.0.0.0/8, as upstream.
func TestLocalhostNodePortsNeedALoopbackMatch(t *testing.T) {
	tests := []struct {
		addrs []string
		want  bool
	}{
		{nil, true},
		{[]string{"all"}, true},
		{[]string{"127.0.0.0/8"}, true},
		{[]string{"127.0.0.1/32", "10.0.0.0/8"}, true},
		{[]string{"0.0.0.0/0"}, true},
		{[]string{"fd00::/64"}, true}, // no IPv4 CIDR: every IPv4 address
		{[]string{"10.0.0.0/8"}, false},
		{[]string{"primary"}, false},
	}
	for _, tt := range tests {
		f := newProxyFlags()
		f.cfg.NodePortAddresses = tt.addrs
		o, err := f.options()
		if err != nil {
			t.Fatalf("%v: %v", tt.addrs, err)
		}
		if o.LocalhostNodePorts != tt.want {
			t.Errorf("--nodeport-addresses %v: localhost NodePorts %v, want %v", tt.addrs, o.LocalhostNodePorts, tt.want)
		}
	}
}

// Flag help never shows words from the text as the flag's value (pflag
// takes `quoted` words for the value's name).
func TestHelpShowsNoStrayValueNames(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: backquotes in the help text become the value's name: %q", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

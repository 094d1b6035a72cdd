package e2e

import (
	"errors"
	"flag"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// upstreamRules finds the upstream-rules tool built by `make kube-tools`.
func upstreamRules(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(kubeBinaries(t), "upstream-rules")
	if _, err := os.Stat(bin); err != nil {
		msg := "upstream-rules not built: run make kube-tools"
		if os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Held against upstream kube-proxy v1.37.2 itself (its iptables proxier run
// on its fake iptables by tools/kube/upstream-rules): for every parity case
// and the bundled manifests, svcproxy writes the same chains with the same
// rules, in the same order within each Service's chains. Dispatch chains
// are compared as sets: upstream fills them in map order. What differs on
// purpose is listed in knownDifferences, each with its reason.
func TestRulesMatchUpstream(t *testing.T) {
	tool := upstreamRules(t)
	type testCase struct {
		name string
		dir  string
		opts dataplane.Options
	}
	cases := []testCase{{name: "bundled-manifests", dir: "../../examples/lab", opts: dataplane.Options{LocalhostNodePorts: true}}}
	for _, c := range dptest.Parity() {
		cases = append(cases, testCase{c.Name, writeCase(t, c), c.Opts})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			flags := []string{"--manifests", c.dir, "--hostname-override", "node-1", "--cluster-cidr", dptest.PodCIDR.String(),
				fmt.Sprintf("--iptables-localhost-nodeports=%v", c.opts.LocalhostNodePorts), fmt.Sprintf("--masquerade-all=%v", c.opts.MasqueradeAll),
				fmt.Sprintf("--iptables-masquerade-bit=%d", bits.TrailingZeros32(c.opts.Mark()))}
			// Both select the listed addresses from this host's (not the
			// case's node's): compared like for like all the same.
			var cidrs []string
			for _, p := range c.opts.NodePortCIDRs {
				cidrs = append(cidrs, p.String())
			}
			if len(cidrs) > 0 {
				flags = append(flags, "--nodeport-addresses", strings.Join(cidrs, ","))
			}
			up, err := exec.Command(tool, append(flags, "--node-ip", dptest.NodeIP.String())...).Output()
			if err != nil {
				t.Fatalf("upstream-rules: %v", stderrOf(err))
			}
			ours, err := exec.Command(binary, append([]string{"rules"}, flags...)...).Output()
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
				t.Fatalf("svcproxy rules: %v", stderrOf(err))
			}
			if d := ruleDiff(t, string(up), string(ours)); len(d) > 0 {
				t.Errorf("svcproxy's rules differ from upstream's:\n%s\n\nupstream:\n%s\nsvcproxy:\n%s", strings.Join(d, "\n"), up, ours)
			}
		})
	}
}

func stderrOf(err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%w: %s", err, exit.Stderr)
	}
	return err
}

// writeCase writes a parity case's objects as manifests, with node-1's
// Node object (svcproxy reads the node's IP from it, upstream from a flag).
func writeCase(t *testing.T, c dptest.Case) string {
	t.Helper()
	dir := t.TempDir()
	objs := []any{&corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: dptest.NodeIP.String()}}}}}
	for _, s := range c.Services {
		s := s.DeepCopy()
		s.APIVersion, s.Kind = "v1", "Service"
		objs = append(objs, s)
	}
	for _, s := range c.Slices {
		s := s.DeepCopy()
		s.APIVersion, s.Kind = "discovery.k8s.io/v1", "EndpointSlice"
		objs = append(objs, s)
	}
	for _, s := range c.ServiceCIDRs {
		s := s.DeepCopy()
		s.APIVersion, s.Kind = "networking.k8s.io/v1", "ServiceCIDR"
		objs = append(objs, s)
	}
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		// Empty fields the API types always write (creationTimestamp:
		// null) are refused by svcproxy's strict reading of manifests.
		docs = append(docs, strings.ReplaceAll(string(b), "  creationTimestamp: null\n", ""))
	}
	if err := os.WriteFile(filepath.Join(dir, "case.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// knownDifferences are rules svcproxy writes and upstream does not, or the
// other way round, on purpose ("+" svcproxy only, "-" upstream only), as
// regular expressions over "table chain rule".
var knownDifferences = []struct{ re, why string }{
	{`^[+-] \w+ KUBE-PROXY-CANARY`, "the canary chains: upstream's fake iptables does not run the monitor that creates them"},
	{`^\+ nat KUBE-SERVICES .*(block localhost nodeports|localhost NodePorts answer only this node).* -j RETURN$`,
		"CVE-2020-8558: a neighbour's packet to 127.0.0.1:NodePort is never DNATed (upstream relies on KUBE-FIREWALL, which lets DNATed packets through)"},
	{`^- nat KUBE-SERVICES .*nodeports.* -m addrtype --dst-type LOCAL ! -d 127\.0\.0\.0/8 -j KUBE-NODEPORTS$`, "the same, written as a RETURN rule before the jump"},
	{`^\+ nat KUBE-SERVICES .*nodeports.* -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS$`, "the same"},
	{`^- filter KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP$`,
		"an nfacct counter for a metric svcproxy does not export"},
	{`^\+ filter KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP$`, "the same rule without the counter"},
	{`^- nat KUBE-NODEPORTS .* -d 127\.0\.0\.0/8 --dport \d+ -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-`,
		"an nfacct counter of localhost NodePort packets, for a metric svcproxy does not export; the NodePort rule after it matches them all the same"},
}

var (
	markRe  = regexp.MustCompile(`0x0*([0-9a-f]+)`)
	spaceRe = regexp.MustCompile(`\s+`)
)

// ruleDiff compares two iptables-save texts chain by chain and returns the
// differences not in knownDifferences.
func ruleDiff(t *testing.T, upstream, ours string) []string {
	t.Helper()
	up, err := netfilter.ParseIPTables(upstream)
	if err != nil {
		t.Fatalf("upstream's rules do not parse: %v", err)
	}
	our, err := netfilter.ParseIPTables(ours)
	if err != nil {
		t.Fatalf("svcproxy's rules do not parse: %v", err)
	}
	var diffs []string
	for _, table := range []string{"filter", "nat"} {
		u, o := chains(up, table), chains(our, table)
		names := map[string]bool{}
		for n := range u {
			names[n] = true
		}
		for n := range o {
			names[n] = true
		}
		for _, name := range slices.Sorted(mapsKeys(names)) {
			ur, or := u[name], o[name]
			if !ordered(name) {
				slices.Sort(ur)
				slices.Sort(or)
			}
			for _, d := range lineDiff(ur, or) {
				if line := d[:2] + table + " " + name + " " + d[2:]; !known(line) {
					diffs = append(diffs, line)
				}
			}
		}
	}
	return diffs
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ordered says whether a chain's rule order is upstream's to keep: a
// Service's own chains are; chains filled in map order (dispatch, and the
// built-in chains' jumps) are compared as sets, with nat KUBE-SERVICES'
// NodePort jump checked to come last by the parity tests' tracer.
func ordered(chain string) bool {
	for _, p := range []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-", "KUBE-POSTROUTING", "KUBE-FORWARD", "KUBE-MARK-MASQ"} {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// chains are a table's rules per chain, normalized: one space between
// words, no quotes, marks without leading zeros.
func chains(rs *netfilter.Ruleset, table string) map[string][]string {
	out := map[string][]string{}
	t := rs.Table(table)
	if t == nil {
		return out
	}
	for _, c := range t.Chains {
		out[c.Name] = []string{}
		for _, r := range c.Rules {
			text := strings.ReplaceAll(r.Text, `"`, "")
			text = markRe.ReplaceAllString(text, "0x$1")
			out[c.Name] = append(out[c.Name], strings.TrimSpace(spaceRe.ReplaceAllString(text, " ")))
		}
	}
	return out
}

// lineDiff is a minimal diff of two rule lists: "- " upstream only, "+ "
// svcproxy only, in order.
func lineDiff(a, b []string) []string {
	// Longest common subsequence; chains are short.
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, "+ "+b[j])
			j++
		default:
			out = append(out, "- "+a[i])
			i++
		}
	}
	return out
}

func known(line string) bool {
	for _, k := range knownDifferences {
		if regexp.MustCompile(k.re).MatchString(line) {
			return true
		}
	}
	return false
}

// upstreamNftables runs upstream kube-proxy's nftables proxier (the
// upstream-rules tool) on the manifests in dir, in a network namespace of
// its own, and returns the table it wrote.
func upstreamNftables(t *testing.T, tool, dir string, flags ...string) string {
	t.Helper()
	ns := fmt.Sprintf("svt%d-upnft", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	// Upstream takes NodePort addresses from the host's interfaces: the
	// namespace gets the node's address (on a veth pair; dummy devices are
	// not everywhere).
	for _, c := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "node0", "type", "veth", "peer", "name", "node0p"},
		{"addr", "add", dptest.NodeIP.String() + "/24", "dev", "node0"},
		{"link", "set", "node0", "up"},
		{"link", "set", "node0p", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	args := append([]string{"netns", "exec", ns, tool, "-mode", "nftables", "--manifests", dir}, flags...)
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		t.Fatalf("upstream-rules -mode nftables: %v", stderrOf(err))
	}
	return string(out)
}

// The tracer understands every statement upstream kube-proxy v1.37.2's
// nftables mode writes (direct DNATs from an anonymous numgen map, hairpin
// masquerading through a set, named counters), and upstream's table does to
// each packet of the parity cases what those cases say svcproxy's does.
func TestTraceFollowsUpstreamNftables(t *testing.T) {
	tool := upstreamRules(t)
	for _, c := range dptest.Parity() {
		t.Run(c.Name, func(t *testing.T) {
			dir := writeCase(t, c)
			flags := []string{"--hostname-override", "node-1", "--cluster-cidr", dptest.PodCIDR.String(),
				fmt.Sprintf("--masquerade-all=%v", c.Opts.MasqueradeAll), "--node-ip", dptest.NodeIP.String()}
			var cidrs []string
			for _, p := range c.Opts.NodePortCIDRs {
				cidrs = append(cidrs, p.String())
			}
			if len(cidrs) > 0 {
				flags = append(flags, "--nodeport-addresses", strings.Join(cidrs, ","))
			}
			text := upstreamNftables(t, tool, dir, flags...)
			rs, err := netfilter.ParseNft(text)
			if err != nil {
				t.Fatalf("upstream's table does not parse: %v\n%s", err, text)
			}
			trace := func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
				return netfilter.TraceNft(rs, p, o)
			}
			for _, tc := range c.Traces {
				dptest.CheckTrace(t, trace, dptest.Local, tc.In("nftables"))
			}
			if t.Failed() {
				t.Logf("upstream's table:\n%s", text)
			}
		})
	}
}

// The tracer's nftables fixture is what upstream's proxier writes for
// internal/netfilter/testdata/upstream, compared table object by table
// object (upstream lists chains in map order). -update rewrites it.
func TestUpstreamNftablesFixture(t *testing.T) {
	tool := upstreamRules(t)
	const fixture = "../../internal/netfilter/testdata/kube-proxy-nftables-ruleset.txt"
	got := upstreamNftables(t, tool, "../../internal/netfilter/testdata/upstream", "--hostname-override", "node-1",
		"--cluster-cidr", "10.244.0.0/16", "--node-ip", dptest.NodeIP.String())
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
		for _, p := range []string{fixture, strings.TrimSuffix(fixture, "-ruleset.txt") + ".nft"} {
			if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := nftObjects(t, got), nftObjects(t, string(want)); !slices.Equal(g, w) {
		t.Errorf("upstream's table differs from the fixture (go test -run %s -update rewrites it):\n%s", t.Name(), strings.Join(lineDiff(w, g), "\n"))
	}
}

// nftObjects are a table's sets (with their elements in order) and chains
// (with their rules), one line each, sorted.
func nftObjects(t *testing.T, text string) []string {
	t.Helper()
	rs, err := netfilter.ParseNft(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	var out []string
	for _, tbl := range rs.Tables {
		for name, set := range tbl.Sets {
			var els []string
			for _, e := range set.Elements {
				els = append(els, strings.Join(e.Key, " . ")+" : "+strings.Join(e.Verdict, " "))
			}
			slices.Sort(els)
			out = append(out, "set "+name+" {"+strings.Join(els, ", ")+"}")
		}
		for _, c := range tbl.Chains {
			var rules []string
			for _, r := range c.Rules {
				rules = append(rules, r.Text)
			}
			out = append(out, "chain "+c.Name+" {"+strings.Join(rules, "; ")+"}")
		}
	}
	slices.Sort(out)
	return out
}

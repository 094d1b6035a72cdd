package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/explain"
)

const upstreamDump = "../../internal/explain/testdata/kube-proxy-v1.37-iptables-save.txt"

func TestTraceCommand(t *testing.T) {
	out, _, err := runCmd(t, newTraceCmd(), "--rules", upstreamDump, "--local-ip", "192.168.77.1",
		"--to", "192.168.77.1:31080", "--from", "192.0.2.7", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep explain.TraceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Verdict != "DNAT" || len(rep.Endpoints) != 3 || !rep.Masquerade || rep.Service != "default/web:http" || len(rep.Hops) < 5 {
		t.Errorf("report = %+v", rep)
	}

	text, _, err := runCmd(t, newTraceCmd(), "--rules", upstreamDump, "--to", "192.168.77.1:31080", "--from", "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Service: default/web:http",
		"→ NodePort 31080/tcp of default/web:http",
		"then, 33.3% of the time, to 10.244.2.6:8080:",
		"Result: DNAT to 10.244.1.5:8080 (33.3%), 10.244.2.6:8080 (33.3%), 10.244.3.7:8080 (33.3%); masqueraded",
		"Assumed: no --local-ip given: 192.168.77.1 is taken to be an address of the node the rules came from",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
}

func TestTraceReadsStdin(t *testing.T) {
	f, err := os.Open(upstreamDump)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := newTraceCmd()
	cmd.SetIn(f)
	out, _, err := runCmd(t, cmd, "--rules", "-", "--to", "10.96.60.1:80", "--from", "10.244.1.5")
	if err != nil || !strings.Contains(out, "Result: REJECT by filter KUBE-SERVICES") {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestExplainAndGraphCommands(t *testing.T) {
	out, _, err := runCmd(t, newExplainCmd(), "default/azure-vote-front", "--manifests", "../../examples/lab", "--cluster-cidr", "10.244.0.0/16")
	if err != nil || !strings.Contains(out, "NodePort 30450/tcp on this node's addresses") || !strings.Contains(out, "10.244.0.11:80") {
		t.Errorf("explain: %v\n%s", err, out)
	}
	js, _, err := runCmd(t, newExplainCmd(), "default/azure-vote-front", "--manifests", "../../examples/lab", "-o", "json")
	var rep explain.ServiceReport
	if err != nil || json.Unmarshal([]byte(js), &rep) != nil || rep.Service != "default/azure-vote-front" || len(rep.Ports) == 0 {
		t.Errorf("explain -o json: %v\n%s", err, js)
	}
	dot, _, err := runCmd(t, newGraphCmd(), "default/azure-vote-front", "--manifests", "../../examples/lab")
	if err != nil || !strings.HasPrefix(dot, `digraph "default/azure-vote-front"`) {
		t.Errorf("graph: %v\n%s", err, dot)
	}
}

// graph -o png does not write binary to a terminal.
func TestGraphPNGNotToATerminal(t *testing.T) {
	tty := openTerminal(t)
	cmd := newGraphCmd()
	cmd.SetArgs([]string{"default/azure-vote-front", "--manifests", "../../examples/lab", "-o", "png"})
	cmd.SetOut(tty)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "give --output-file FILE") {
		t.Errorf("err = %v, want a refusal naming --output-file", err)
	}
}

// openTerminal opens a pseudo-terminal's follower end.
func openTerminal(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

func TestTraceExplainErrors(t *testing.T) {
	dir := t.TempDir()
	notDump := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDump, []byte("hello\n"), 0o644)
	nft := filepath.Join(dir, "nft.txt")
	os.WriteFile(nft, []byte("table ip kube-proxy {\n\tchain services {\n"), 0o644)
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"not a dump", func() error {
			_, _, err := runCmd(t, newTraceCmd(), "--rules", notDump, "--to", "1.2.3.4:80")
			return err
		}, "not an iptables-save dump or nft ruleset: line 1"},
		{"bad --to", func() error {
			_, _, err := runCmd(t, newTraceCmd(), "--rules", upstreamDump, "--to", "192.168.77.1")
			return err
		}, `--to "192.168.77.1": want IP:PORT`},
		{"bad --from", func() error {
			_, _, err := runCmd(t, newTraceCmd(), "--rules", upstreamDump, "--to", "1.2.3.4:80", "--from", "nope")
			return err
		}, `--from "nope": not an IP address`},
		{"bad --local-ip", func() error {
			_, _, err := runCmd(t, newTraceCmd(), "--rules", upstreamDump, "--to", "1.2.3.4:80", "--local-ip", "x")
			return err
		}, `--local-ip "x": not an IP address`},
		{"truncated nft dump", func() error {
			_, _, err := runCmd(t, newTraceCmd(), "--rules", nft, "--to", "1.2.3.4:80")
			return err
		}, "not an nft ruleset: table ip kube-proxy is not closed"},
		{"unknown Service", func() error {
			_, _, err := runCmd(t, newExplainCmd(), "default/nope", "--rules", upstreamDump)
			return err
		}, "Service default/nope not found in the rules"},
		{"not ns/name", func() error {
			_, _, err := runCmd(t, newExplainCmd(), "nope", "--rules", upstreamDump)
			return err
		}, `"nope": give the Service as NAMESPACE/NAME`},
		{"missing file", func() error {
			_, _, err := runCmd(t, newExplainCmd(), "default/web", "--rules", filepath.Join(dir, "missing"))
			return err
		}, "read rules: open"},
	}
	for _, tt := range tests {
		err := tt.run()
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line containing %q", tt.name, err, tt.want)
		}
	}
}

func TestTraceNftDump(t *testing.T) {
	out, _, err := runCmd(t, newTraceCmd(), "--rules", "../../internal/netfilter/testdata/kube-proxy-nftables-ruleset.txt",
		"--local-ip", "192.168.77.1", "--to", "192.168.77.1:31443", "--from", "192.0.2.7", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep explain.TraceReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != "DNAT" || len(rep.Endpoints) != 1 || rep.Endpoints[0] != "10.244.1.9:8443" || rep.Masquerade || rep.Service != "default/lb:https" {
		t.Errorf("nft trace = %+v", rep)
	}
}

// trace --manifests takes run's proxy flags in both modes, so a node
// configured any way can be reproduced.
func TestTraceManifestsTakesRunsFlags(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		base := []string{"--manifests", "../../examples/lab", "--hostname-override", "node-1", "--cluster-cidr", "10.244.0.0/16",
			"--proxy-mode", mode, "--local-ip", "192.168.77.1,192.168.88.1"}
		tests := []struct {
			flags    []string
			from, to string
			want     string
		}{
			{[]string{"--masquerade-all"}, "10.244.0.5", "10.96.0.53:53", "; masqueraded"},
			{nil, "10.244.0.5", "10.96.0.53:53", "; source kept"},
			{[]string{"--nodeport-addresses", "192.168.77.0/24"}, "192.0.2.7", "192.168.88.1:30450", "Result: NONE"},
			{[]string{"--nodeport-addresses", "192.168.77.0/24"}, "192.0.2.7", "192.168.77.1:30450", "Result: DNAT to 10.244.0.10:80 (50%), 10.244.0.11:80 (50%); masqueraded"},
			{[]string{"--nodeport-addresses", "10.1.0.0/16"}, "192.0.2.7", "192.168.77.1:30450", "Result: NONE"},
			{[]string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth", "--in-interface", "veth7"}, "10.244.0.5", "10.96.0.53:53", "; source kept"},
			{[]string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth", "--in-interface", "eth0"}, "10.244.0.5", "10.96.0.53:53", "; masqueraded"},
			{[]string{"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0", "--in-interface", "eth0"}, "10.244.0.5", "10.96.0.53:53", "; masqueraded"},
			{[]string{"--service-cidrs", "10.96.0.0/16"}, "10.244.0.5", "10.96.0.99:80", map[string]string{
				"iptables": "Result: NONE", "nftables": "Result: DROP by ip kube-proxy cluster-ips-check"}[mode]},
		}
		for _, tt := range tests {
			proto := "udp"
			if strings.HasSuffix(tt.to, ":30450") || strings.HasSuffix(tt.to, ":80") {
				proto = "tcp"
			}
			args := append(append(slices.Clone(base), tt.flags...), "--from", tt.from, "--to", tt.to, "--proto", proto)
			out, _, err := runCmd(t, newTraceCmd(), args...)
			if err != nil || !strings.Contains(out, tt.want) {
				t.Errorf("%s %v: %v, want %q in:\n%s", mode, tt.flags, err, tt.want, out)
			}
		}
	}
}

// A trace of a UDP Service with the default --proto tcp says what to try.
func TestTraceHintsAtTheOtherProtocol(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		out, _, err := runCmd(t, newTraceCmd(), "--manifests", "../../examples/lab", "--proxy-mode", mode, "--to", "10.96.0.53:53")
		if err != nil {
			t.Fatal(err)
		}
		if want := "Hint: no Service answers tcp on 10.96.0.53:53; kube-system/kube-dns:dns answers udp there: try --proto udp"; !strings.Contains(out, want) {
			t.Errorf("%s: no hint %q:\n%s", mode, want, out)
		}
		out, _, err = runCmd(t, newTraceCmd(), "--manifests", "../../examples/lab", "--proxy-mode", mode, "--to", "10.96.0.53:53", "--proto", "udp")
		if err != nil || strings.Contains(out, "Hint:") {
			t.Errorf("%s: a hint for the right protocol: %v\n%s", mode, err, out)
		}
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// services lists what upstream kube-proxy's rules serve, in either mode.
func TestServicesCommand(t *testing.T) {
	for _, dump := range []string{upstreamDump, "../../internal/netfilter/testdata/kube-proxy-nftables-ruleset.txt"} {
		out, _, err := runCmd(t, newServicesCmd(), "--rules", dump)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"NAME ", "default/web:http ", "10.96.12.34", "80:31080/TCP", "kube-system/kube-dns:dns", "53/UDP",
			"default/empty:http ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", dump, want, out)
			}
		}
		js, _, err := runCmd(t, newServicesCmd(), "--rules", dump, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var rows []serviceRow
		if err := json.Unmarshal([]byte(js), &rows); err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		byName := map[string]serviceRow{}
		for _, r := range rows {
			byName[r.Name] = r
		}
		if r := byName["default/web:http"]; len(r.Endpoints) != 3 || r.Local != -1 || r.Type != "NodePort" || len(r.Chains) == 0 {
			t.Errorf("%s: web = %+v", dump, r)
		}
		// externalTrafficPolicy: Local, one of its two endpoints on this node.
		if r := byName["default/lb:https"]; len(r.Endpoints) != 2 || r.Local != 1 || len(r.External) != 1 {
			t.Errorf("%s: lb = %+v", dump, r)
		}
		if r := byName["default/empty:http"]; len(r.Endpoints) != 0 {
			t.Errorf("%s: empty = %+v", dump, r)
		}
	}
}

// Shells complete Service names from the rules, and the words of fixed-word
// flags (the scripts of svcproxy completion bash|zsh|fish ask __complete).
func TestCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "explain", "--rules", upstreamDump, "default/"}, []string{"default/empty", "default/lb", "default/sticky", "default/web"}},
		{[]string{"__complete", "graph", "--rules", "../../internal/netfilter/testdata/kube-proxy-nftables-ruleset.txt", "kube"}, []string{"kube-system/kube-dns"}},
		{[]string{"__complete", "run", "--proxy-mode", ""}, []string{"iptables", "nftables"}},
		{[]string{"__complete", "services", "-o", ""}, []string{"wide", "json"}},
		{[]string{"__complete", "trace", "--proto", ""}, []string{"tcp", "udp", "sctp"}},
	}
	for _, tt := range tests {
		out, _, err := runCmd(t, newRootCmd(), tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, ":") {
				got = append(got, line)
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%v: completions %q, want %q", tt.args[1:], got, tt.want)
		}
	}
}

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

package doctor

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

type fakeEnv struct {
	save     string
	saveErr  error
	nft      string
	backends map[string]string
	sysctls  map[string]string
	holders  map[int32][]nodeport.Holder
	health   *Health
}

func (f *fakeEnv) Save() (string, error)           { return f.save, f.saveErr }
func (f *fakeEnv) BackendSaves() map[string]string { return f.backends }
func (f *fakeEnv) NftList() (string, error)        { return f.nft, nil }
func (f *fakeEnv) Sysctl(n string) (string, error) {
	if v, ok := f.sysctls[n]; ok {
		return v, nil
	}
	return "", errors.New("no such sysctl")
}
func (f *fakeEnv) Holders(p int32, _ model.Protocol) ([]nodeport.Holder, error) {
	return f.holders[p], nil
}
func (f *fakeEnv) Healthz() (Health, error) {
	if f.health == nil {
		return Health{}, errors.New("connection refused")
	}
	return *f.health, nil
}
func (f *fakeEnv) Now() time.Time { return now }

// healthyNode is a node where everything is right.
func healthyNode(t *testing.T) *fakeEnv {
	save, err := os.ReadFile("../explain/testdata/kube-proxy-v1.37-iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	return &fakeEnv{
		save:     string(save),
		backends: map[string]string{"nft": string(save), "legacy": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"},
		sysctls: map[string]string{
			"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.route_localnet": "1",
			"net.ipv4.ip_local_reserved_ports": "30000-32767",
			"net.netfilter.nf_conntrack_count": "100", "net.netfilter.nf_conntrack_max": "1000",
		},
		holders: map[int32][]nodeport.Holder{},
		health:  &Health{StatusCode: 200, LastUpdated: now.Add(-3 * time.Second)},
	}
}

func status(fs []Finding, check string) Finding {
	for _, f := range fs {
		if f.Check == check {
			return f
		}
	}
	return Finding{}
}

func TestDoctor(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*fakeEnv)
		check   string
		want    Status
		mention string
	}{
		{"healthy proxy", nil, "proxy", OK, "last successful sync 3s ago"},
		{"no proxy", func(e *fakeEnv) { e.health = nil }, "proxy", Warn, "no proxy answers"},
		{"a proxy that never synced", func(e *fakeEnv) { e.health = &Health{StatusCode: 200} }, "proxy", Fail, "never synced"},
		{"a proxy waiting for its API server", func(e *fakeEnv) { e.health = &Health{StatusCode: 503} }, "proxy", Fail, "(health check HTTP 503) but has never synced"},
		{"stalled proxy", func(e *fakeEnv) { e.health = &Health{StatusCode: 503, LastUpdated: now.Add(-5 * time.Minute)} }, "proxy", Fail, "5m0s ago"},
		{"rules present", nil, "rules", OK, "4 Service port chain(s)"},
		{"no rules", func(e *fakeEnv) { e.save = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n" }, "rules", Fail, "no Service rules on this node"},
		{"no rules in either mode", func(e *fakeEnv) { e.save = "" }, "rules", Fail, "no Service rules on this node, in iptables or nftables (is a proxy running?)"},
		{"rules unreadable", func(e *fakeEnv) { e.save, e.saveErr = "", errors.New("iptables-save: Permission denied") }, "rules", Fail, "Permission denied"},
		{"a rogue process on a NodePort", func(e *fakeEnv) {
			e.holders[31080] = []nodeport.Holder{{Pid: 4242, Command: "python3 -m http.server 31080", State: "listening", Local: "0.0.0.0:31080"}}
		}, "nodeports", Fail, "NodePort 31080/tcp (default/web:http) is held by pid 4242 (python3 -m http.server 31080)"},
		{"the proxy holding its own port is fine", func(e *fakeEnv) {
			e.holders[31080] = []nodeport.Holder{{Pid: 1, Command: "/usr/local/bin/svcproxy run --hold-nodeports", State: "listening"}}
		}, "nodeports", OK, "2 NodePort(s)"},
		{"both backends", func(e *fakeEnv) { e.backends["legacy"] = e.save }, "iptables-backends", Fail, "both iptables-legacy and iptables-nft"},
		{"no forwarding", func(e *fakeEnv) { e.sysctls["net.ipv4.ip_forward"] = "0" }, "ip_forward", Fail, "= 0"},
		{"no localhost NodePorts", func(e *fakeEnv) { e.sysctls["net.ipv4.conf.all.route_localnet"] = "0" }, "route_localnet", Warn, "= 0"},
		{"NodePorts not reserved", func(e *fakeEnv) { e.sysctls["net.ipv4.ip_local_reserved_ports"] = "31080" }, "reserved-ports", Warn, "1 NodePort(s) can be handed out"},
		{"conntrack nearly full", func(e *fakeEnv) { e.sysctls["net.netfilter.nf_conntrack_count"] = "950" }, "conntrack", Fail, "95%"},
		{"stale chain", func(e *fakeEnv) {
			e.save = strings.Replace(e.save, ":KUBE-SVC-BJWR5DPVIKTHVKZU - [0:0]", ":KUBE-SVC-BJWR5DPVIKTHVKZU - [0:0]\n:KUBE-SVC-STALESTALESTALE1 - [0:0]", 1)
		}, "stale-chains", Warn, "nat KUBE-SVC-STALESTALESTALE1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := healthyNode(t)
			if tt.mutate != nil {
				tt.mutate(env)
			}
			fs := Run(env, Options{HealthzAddress: "127.0.0.1:10256"})
			f := status(fs, tt.check)
			text := f.Summary + " " + strings.Join(f.Details, " ")
			if f.Status != tt.want || !strings.Contains(text, tt.mention) {
				t.Errorf("%s: %s %q, want %s mentioning %q", tt.check, f.Status, text, tt.want, tt.mention)
			}
			if f.Status != OK && (f.Meaning == "" || f.Action == "") {
				t.Errorf("%s: a problem must say what it means and what to do: %+v", tt.check, f)
			}
			if Failed(fs) != (tt.want == Fail) {
				t.Errorf("Failed() = %v", Failed(fs))
			}
		})
	}
}

func TestDoctorExpectedServices(t *testing.T) {
	env := healthyNode(t)
	st := model.State{Services: []*model.ServicePort{
		{Name: model.ServicePortName{Namespace: "default", Name: "web", Port: "http"}},
		{Name: model.ServicePortName{Namespace: "default", Name: "empty", Port: "http"}},
		{Name: model.ServicePortName{Namespace: "default", Name: "missing"}},
	}}
	f := status(Run(env, Options{Expected: &st}), "rules")
	if f.Status != Fail || len(f.Details) != 1 || f.Details[0] != "default/missing" {
		t.Errorf("rules finding = %+v, want only default/missing reported", f)
	}
}

// nftablesNode is a healthy node in nftables mode: upstream's table, as
// real nft lists it, and no iptables rules.
func nftablesNode(t *testing.T) *fakeEnv {
	nft, err := os.ReadFile("../netfilter/testdata/kube-proxy-nftables-ruleset.txt")
	if err != nil {
		t.Fatal(err)
	}
	env := healthyNode(t)
	// iptables-save prints nothing on a node that never used iptables.
	env.save = ""
	env.backends = map[string]string{"nft": env.save}
	env.nft = string(nft)
	return env
}

// A node in nftables mode (upstream's layout, loaded with real nft into the
// fixture) is checked from its kube-proxy table, not reported as having no
// rules.
func TestDoctorNftablesMode(t *testing.T) {
	env := nftablesNode(t)
	env.holders[31080] = []nodeport.Holder{{Pid: 4242, Command: "python3 -m http.server 31080", State: "listening", Local: "0.0.0.0:31080"}}
	fs := Run(env, Options{})
	if f := status(fs, "rules"); f.Status != OK || !strings.Contains(f.Summary, "nftables mode") {
		t.Errorf("rules: %+v", f)
	}
	env.sysctls["net.ipv4.conf.all.route_localnet"] = "0"
	if f := status(Run(env, Options{}), "route_localnet"); f.Check != "" {
		t.Errorf("nftables mode has no localhost NodePorts, yet route_localnet is checked: %+v", f)
	}
	if f := status(fs, "nodeports"); f.Status != Fail || !strings.Contains(f.Summary+strings.Join(f.Details, " "), "NodePort 31080/tcp (default/web) is held by pid 4242") {
		t.Errorf("nodeports: %+v", f)
	}
	st := model.State{Services: []*model.ServicePort{
		{Name: model.ServicePortName{Namespace: "default", Name: "web", Port: "http"}, Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.12.34"), Port: 80},
		{Name: model.ServicePortName{Namespace: "default", Name: "missing"}, Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.99.99"), Port: 80},
	}}
	if f := status(Run(env, Options{Expected: &st}), "rules"); f.Status != Fail || len(f.Details) != 1 || f.Details[0] != "default/missing" {
		t.Errorf("rules with expectations: %+v, want only default/missing reported", f)
	}
}

// A node with both modes' rules (two proxies, or a switch without cleanup)
// is a failure that names both.
func TestDoctorTwoModes(t *testing.T) {
	nft, err := os.ReadFile("../netfilter/testdata/kube-proxy-nftables-ruleset.txt")
	if err != nil {
		t.Fatal(err)
	}
	env := healthyNode(t)
	if f := status(Run(env, Options{}), "two-modes"); f.Check != "" {
		t.Errorf("one mode reported as two: %+v", f)
	}
	env.nft = string(nft)
	f := status(Run(env, Options{}), "two-modes")
	if f.Status != Fail || !strings.Contains(f.Summary, "KUBE-SERVICES in iptables and table ip kube-proxy in nftables") || f.Action == "" {
		t.Errorf("two-modes: %+v", f)
	}
}

// A kube-proxy table holding maps no rule uses (svcproxy's, when it was
// killed and kube-proxy took the node over) is a warning naming them.
func TestDoctorNftablesLeftovers(t *testing.T) {
	env := nftablesNode(t)
	nft := env.nft
	if f := status(Run(env, Options{}), "leftovers"); f.Status != OK {
		t.Errorf("upstream's own table: %+v", f)
	}
	left := "\tmap endpoints-000 {\n\t\ttypeof numgen random mod 16384 : ip daddr . th dport\n\t\tflags interval\n\t}\n"
	env.nft = strings.Replace(nft, "table ip kube-proxy {\n", "table ip kube-proxy {\n"+left, 1)
	f := status(Run(env, Options{}), "leftovers")
	if f.Status != Warn || len(f.Details) != 1 || f.Details[0] != "ip kube-proxy endpoints-000" || f.Action == "" {
		t.Errorf("leftovers: %+v", f)
	}
}

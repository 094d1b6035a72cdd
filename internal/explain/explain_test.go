package explain

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcproxy/svcproxy/internal/dataplane/nftables"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t *testing.T, name string) *netfilter.Ruleset {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netfilter.ParseIPTables(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

var node = netip.MustParseAddr("192.168.77.1")

// Dumps as upstream kube-proxy leaves them, from two eras of its layout.
func TestTraceUpstreamDumps(t *testing.T) {
	tests := []struct {
		dump, src, dst, proto string
		local                 []string
		want, service         string
		assumption            string
	}{
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "192.0.2.7", dst: "192.168.77.1:31080", proto: "tcp", service: "default/web:http",
			want: "DNAT to 10.244.1.5:8080 (33.3%), 10.244.2.6:8080 (33.3%), 10.244.3.7:8080 (33.3%); masqueraded"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "198.51.100.7", dst: "203.0.113.50:443", proto: "tcp", service: "default/lb:https",
			want: "DNAT to 10.244.1.9:8443 (100%); source kept"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "192.0.2.99", dst: "203.0.113.50:443", proto: "tcp", service: "default/lb:https",
			want: "DROP by filter KUBE-PROXY-FIREWALL"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "10.244.2.6", dst: "203.0.113.50:443", proto: "tcp", service: "default/lb:https",
			want: "DROP by filter KUBE-PROXY-FIREWALL"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "192.0.2.7", dst: "192.168.77.1:31443", proto: "tcp", service: "default/lb:https",
			want: "DNAT to 10.244.1.9:8443 (100%); source kept"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "10.244.2.6", dst: "192.168.77.1:31443", proto: "tcp", service: "default/lb:https",
			want: "DNAT to 10.244.1.9:8443 (50%), 10.244.2.10:8443 (50%); source kept"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "10.244.1.5", dst: "10.96.50.1:80", proto: "tcp", service: "default/sticky",
			want: "DNAT to 10.244.1.20:80 (50%), 10.244.2.21:80 (50%); source kept", assumption: "session affinity"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "10.244.1.5", dst: "10.96.0.10:53", proto: "udp", service: "kube-system/kube-dns:dns",
			want: "DNAT to 10.244.1.2:53 (50%), 10.244.2.3:53 (50%); source kept"},
		{dump: "kube-proxy-v1.37-iptables-save.txt", src: "10.244.1.5", dst: "10.96.60.1:80", proto: "tcp",
			want: "REJECT by filter KUBE-SERVICES"},
		{dump: "kube-proxy-v1.20-iptables-save.txt", src: "192.0.2.7", dst: "192.168.77.1:31080", proto: "tcp", service: "default/web:http",
			want: "DNAT to 10.244.1.5:8080 (33.3%), 10.244.2.6:8080 (33.3%), 10.244.3.7:8080 (33.3%); masqueraded"},
		{dump: "kube-proxy-v1.20-iptables-save.txt", src: "198.51.100.7", dst: "203.0.113.50:443", proto: "tcp", service: "default/lb:https",
			want: "DNAT to 10.244.1.9:8443 (100%); source kept"},
		// v1.20 marks disallowed sources with 0x8000; KUBE-FIREWALL drops
		// them on INPUT, so when the load balancer IP is on the node.
		{dump: "kube-proxy-v1.20-iptables-save.txt", src: "192.0.2.99", dst: "203.0.113.50:443", proto: "tcp", local: []string{"192.168.77.1", "203.0.113.50"},
			service: "default/lb:https", want: "DROP by filter KUBE-FIREWALL"},
		{dump: "kube-proxy-v1.20-iptables-save.txt", src: "10.244.2.6", dst: "10.96.40.4:443", proto: "tcp", service: "default/lb:https",
			want: "DNAT to 10.244.1.9:8443 (50%), 10.244.2.10:8443 (50%); source kept"},
	}
	for _, tt := range tests {
		t.Run(tt.dump+" "+tt.src+" "+tt.dst, func(t *testing.T) {
			rs := load(t, tt.dump)
			idx := NewIndex(rs)
			local := []netip.Addr{node}
			if tt.local != nil {
				local = nil
				for _, l := range tt.local {
					local = append(local, netip.MustParseAddr(l))
				}
			}
			dst := netip.MustParseAddrPort(tt.dst)
			pkt := netfilter.Packet{Src: netip.MustParseAddr(tt.src), Dst: dst.Addr(), DstPort: dst.Port(), Protocol: tt.proto}
			res, err := netfilter.Trace(rs, pkt, netfilter.TraceOptions{LocalAddrs: local})
			if err != nil {
				t.Fatal(err)
			}
			rep := idx.Report(pkt, netfilter.Arriving, res)
			if rep.Summary != tt.want {
				t.Errorf("got  %s\nwant %s", rep.Summary, tt.want)
			}
			if rep.Service != tt.service {
				t.Errorf("service = %q, want %q", rep.Service, tt.service)
			}
			if len(rep.Unknown) > 0 {
				t.Errorf("matches not understood: %v", rep.Unknown)
			}
			if tt.assumption != "" && !strings.Contains(strings.Join(rep.Assumptions, "\n"), tt.assumption) {
				t.Errorf("assumptions %v lack %q", rep.Assumptions, tt.assumption)
			}
			// The JSON form carries the fields scripts rely on.
			var doc map[string]any
			b, _ := json.Marshal(rep)
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"verdict", "endpoints", "masquerade", "hops"} {
				if _, ok := doc[k]; !ok {
					t.Errorf("JSON lacks %q: %s", k, b)
				}
			}
			hops := doc["hops"].([]any)
			first := hops[0].(map[string]any)
			if first["table"] != "nat" || first["chain"] != "PREROUTING" || first["rule"] == "" {
				t.Errorf("first hop = %v", first)
			}
		})
	}
}

func TestExplainAndGraphGolden(t *testing.T) {
	tests := []struct{ dump, service string }{
		{"kube-proxy-v1.37-iptables-save.txt", "default/lb"},
		{"kube-proxy-v1.37-iptables-save.txt", "default/sticky"},
		{"kube-proxy-v1.37-iptables-save.txt", "default/empty"},
		{"kube-proxy-v1.20-iptables-save.txt", "default/web"},
	}
	for _, tt := range tests {
		name := strings.TrimSuffix(tt.dump, "-iptables-save.txt") + "-" + strings.ReplaceAll(tt.service, "/", "-")
		t.Run(name, func(t *testing.T) {
			rs := load(t, tt.dump)
			idx := NewIndex(rs)
			rep, err := idx.Explain(rs, tt.service, []netip.Addr{node})
			if err != nil {
				t.Fatal(err)
			}
			var text, dot bytes.Buffer
			rep.WriteText(&text)
			rep.WriteDOT(&dot, rs, idx)
			golden(t, name+".explain.golden", text.Bytes())
			golden(t, name+".dot.golden", dot.Bytes())
			renders(t, dot.Bytes())
		})
	}
}

func TestExplainUnknownService(t *testing.T) {
	rs := load(t, "kube-proxy-v1.37-iptables-save.txt")
	_, err := NewIndex(rs).Explain(rs, "default/nope", nil)
	if err == nil || err.Error() != "Service default/nope not found in the rules (no rule comment or chain names it)" {
		t.Errorf("err = %v", err)
	}
}

func TestTraceGraphRenders(t *testing.T) {
	rs := load(t, "kube-proxy-v1.37-iptables-save.txt")
	pkt := netfilter.Packet{Src: netip.MustParseAddr("192.0.2.7"), Dst: node, DstPort: 31080, Protocol: "tcp"}
	res, err := netfilter.Trace(rs, pkt, netfilter.TraceOptions{LocalAddrs: []netip.Addr{node}})
	if err != nil {
		t.Fatal(err)
	}
	var dot bytes.Buffer
	NewIndex(rs).Report(pkt, netfilter.Arriving, res).WriteDOT(&dot)
	for _, want := range []string{`"ep 10.244.1.5:8080"`, `"ep 10.244.3.7:8080"`, "NodePort 31080/tcp of default/web:http"} {
		if !strings.Contains(dot.String(), want) {
			t.Errorf("graph lacks %s", want)
		}
	}
	renders(t, dot.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s", path, got)
	}
}

// renders checks that Graphviz accepts the graph. CI installs Graphviz; on a
// machine without it the check is skipped with the reason, except in CI.
func renders(t *testing.T, dot []byte) {
	t.Helper()
	path, err := exec.LookPath("dot")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Graphviz (dot) is not installed; make deps installs it")
		}
		t.Skip("Graphviz (dot) not installed: make deps installs it")
	}
	cmd := exec.Command(path, "-Tsvg")
	cmd.Stdin = bytes.NewReader(dot)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("<svg")) {
		t.Fatalf("dot -Tsvg: %v\n%s", err, out)
	}
}

func TestExplainNftGolden(t *testing.T) {
	rs := loadNft(t)
	idx := NewNftIndex(rs)
	if got := idx.Service("service-SUSTUHLJ-default/web/tcp/http"); got != "default/web:http" {
		t.Errorf("chain resolves to %q", got)
	}
	for _, svc := range []string{"default/lb", "default/empty", "kube-system/kube-dns"} {
		rep, err := idx.ExplainNft(rs, svc, []netip.Addr{node})
		if err != nil {
			t.Fatal(err)
		}
		var text, dot bytes.Buffer
		rep.WriteText(&text)
		rep.WritePathDOT(&dot, idx)
		name := "kube-proxy-nftables-" + strings.ReplaceAll(svc, "/", "-")
		golden(t, name+".explain.golden", text.Bytes())
		renders(t, dot.Bytes())
	}
	if _, err := idx.ExplainNft(rs, "default/nope", nil); err == nil {
		t.Error("unknown Service explained")
	}
}

// svcproxy's own nftables rules read as what they do: the DNAT from the
// endpoints map and the hairpin masquerade in postrouting.
func TestDescribeSvcproxyNftRules(t *testing.T) {
	ep := func(ip string) model.Endpoint {
		return model.Endpoint{IP: netip.MustParseAddr(ip), Port: 80, Ready: true, Serving: true, IsLocal: true}
	}
	st := &model.State{Services: []*model.ServicePort{{
		Name: model.ServicePortName{Namespace: "default", Name: "web"}, Protocol: model.TCP,
		ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Endpoints: []model.Endpoint{ep("10.244.0.10"), ep("10.244.0.11")},
	}}}
	rs, err := netfilter.ParseNft(nftables.Render(st, nftables.Options{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}).List())
	if err != nil {
		t.Fatal(err)
	}
	// A pod reaching itself through its Service.
	res, err := netfilter.TraceNft(rs, netfilter.Packet{Src: netip.MustParseAddr("10.244.0.10"), Dst: netip.MustParseAddr("10.96.0.10"), Protocol: "tcp", DstPort: 80},
		netfilter.TraceOptions{LocalAddrs: []netip.Addr{node}})
	if err != nil {
		t.Fatal(err)
	}
	idx := NewNftIndex(rs)
	var said []string
	for _, p := range res.Paths {
		for _, h := range p.Hops {
			said = append(said, idx.Describe(h))
		}
	}
	all := strings.Join(said, "\n")
	for _, want := range []string{
		"picks an endpoint at random from map endpoints-000 (each has an equal share of this chain's range of numbers) and rewrites the destination to it (DNAT)",
		"marked for masquerade: hairpin (an endpoint reaching itself through its Service)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no hop says %q; hops say:\n%s", want, all)
		}
	}
}

// On a live node the host's address list starts with loopback; NodePorts
// "from outside" must still be traced to the node's primary address.
func TestExplainNodePortsOnThePrimaryAddress(t *testing.T) {
	hostOrder := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("fe80::1"), node, netip.MustParseAddr("fd00::7")}
	rs := load(t, "kube-proxy-v1.37-iptables-save.txt")
	nrs := loadNft(t)
	explainers := map[string]func([]netip.Addr) (*ServiceReport, error){
		"iptables": func(local []netip.Addr) (*ServiceReport, error) { return NewIndex(rs).Explain(rs, "default/lb", local) },
		"nftables": func(local []netip.Addr) (*ServiceReport, error) {
			return NewNftIndex(nrs).ExplainNft(nrs, "default/lb", local)
		},
	}
	for mode, explainer := range explainers {
		t.Run(mode, func(t *testing.T) {
			want, err := explainer([]netip.Addr{node})
			if err != nil {
				t.Fatal(err)
			}
			got, err := explainer(hostOrder)
			if err != nil {
				t.Fatal(err)
			}
			var wantText, gotText bytes.Buffer
			want.WriteText(&wantText)
			got.WriteText(&gotText)
			if gotText.String() != wantText.String() {
				t.Errorf("with loopback first:\n%s\nwant as with the node's address alone:\n%s", gotText.String(), wantText.String())
			}
			if !strings.Contains(gotText.String(), "NodePort") || !strings.Contains(gotText.String(), "DNAT") {
				t.Errorf("no NodePort DNATed:\n%s", gotText.String())
			}
		})
	}
}

func TestNodeAddr(t *testing.T) {
	tests := []struct {
		local []string
		want  string
		ok    bool
	}{
		{[]string{"127.0.0.1", "::1", "10.0.0.5", "fd00::5"}, "10.0.0.5", true},
		{[]string{"::1", "fe80::1", "fd00::5"}, "fd00::5", true},
		{[]string{"127.0.0.1"}, "192.0.2.1", false},
		{nil, "192.0.2.1", false},
	}
	for _, tt := range tests {
		var local []netip.Addr
		for _, s := range tt.local {
			local = append(local, netip.MustParseAddr(s))
		}
		got, ok := NodeAddr(local)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("NodeAddr(%v) = %s, %v; want %s, %v", tt.local, got, ok, tt.want, tt.ok)
		}
	}
}

// loadNft is the nftables fixture: upstream kube-proxy's own table.
func loadNft(t *testing.T) *netfilter.NftRuleset {
	t.Helper()
	data, err := os.ReadFile("../netfilter/testdata/kube-proxy-nftables-ruleset.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netfilter.ParseNft(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

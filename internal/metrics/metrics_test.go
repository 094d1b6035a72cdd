package metrics

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Profiling handlers are served only when asked for (--profiling), next to
// the metrics.
func TestHandlerProfilingOnlyWhenEnabled(t *testing.T) {
	for _, tc := range []struct {
		profiling bool
		path      string
		want      int
	}{
		{false, "/metrics", http.StatusOK},
		{false, "/debug/pprof/heap", http.StatusNotFound},
		{true, "/debug/pprof/heap", http.StatusOK},
		{true, "/metrics", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		New("iptables").Handler(tc.profiling).ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("profiling=%v GET %s: %d, want %d", tc.profiling, tc.path, rec.Code, tc.want)
		}
	}
}

// Sync failures go to the mode's own upstream counter, every series of a
// family's syncer carries ip_family, and pending changes go back to 0 once
// synced.
func TestUpstreamNamesAndLabels(t *testing.T) {
	for mode, wants := range map[string][]string{
		"iptables": {
			`kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family="IPv4"} 1`,
			`kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total{ip_family="IPv4"} 1`,
			`kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv6",table="nat"} 3`,
			`kubeproxy_sync_proxy_rules_iptables_last{ip_family="IPv6",table="nat"} 1`,
		},
		"nftables": {
			`kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv4"} 1`,
			`kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 1`,
		},
	} {
		m := New(mode)
		m.SyncDone("IPv4", false, time.Millisecond, errors.New("refused"))
		m.SyncDone("IPv6", true, 2*time.Millisecond, nil)
		m.SetRules("IPv6", "nat", 3, 1)
		m.CleanupFailed("IPv4")
		m.Queued(2, 5, []string{"IPv4"})
		m.ObserveProgramming("IPv4", 300*time.Millisecond)
		m.SetNoLocalEndpoints("External", "IPv4", 1)
		m.CountHealthCheck("healthz", 503)
		m.ConntrackReconciled("IPv4", 3*time.Millisecond, 2)
		body := scrape(t, m)
		wants = append(wants,
			`kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1`,
			`kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv6"} 1`,
			`kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} 1`,
			`kubeproxy_sync_proxy_rules_endpoint_changes_pending 5`,
			`kubeproxy_sync_proxy_rules_service_changes_total 2`,
			`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.5"} 1`,
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="External"} 1`,
			`kubeproxy_proxy_healthz_total{code="503"} 1`,
			`kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family="IPv4"} 2`,
			`kubeproxy_conntrack_reconciler_sync_duration_seconds_count{ip_family="IPv4"} 1`,
			`kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv4"}`,
			`kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv6"}`)
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %q", mode, want)
			}
		}
		if strings.Contains(body, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`) {
			t.Errorf("%s: a failed sync set the last sync time", mode)
		}
		other := "nftables_sync_failures"
		if mode == "nftables" {
			other = "iptables_"
		}
		if strings.Contains(body, "kubeproxy_sync_proxy_rules_"+other) {
			t.Errorf("%s mode exports the other mode's counters", mode)
		}
		m.Synced()
		if body := scrape(t, m); !strings.Contains(body, "kubeproxy_sync_proxy_rules_endpoint_changes_pending 0") {
			t.Errorf("%s: pending changes not cleared by a sync", mode)
		}
	}
}

// /proxyMode and /configz answer as upstream's metrics server does.
func TestProxyModeAndConfigz(t *testing.T) {
	m := New("nftables")
	m.SetConfig(map[string]string{"mode": "nftables"})
	for path, want := range map[string]string{"/proxyMode": "nftables", "/configz": `{"svcproxy":{"mode":"nftables"}}`} {
		rec := httptest.NewRecorder()
		m.Handler(false).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if got := strings.TrimSpace(rec.Body.String()); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

// /flagz lists every flag, sorted, /statusz the version and mode, and
// /healthz answers ok, as on upstream's metrics port.
func TestZPages(t *testing.T) {
	m := New("iptables")
	m.SetFlags(map[string]string{"proxy-mode": "iptables", "cluster-cidr": "10.244.0.0/16"})
	m.SetVersion("v0.9.0")
	for path, want := range map[string]string{
		"/flagz":   "\ncluster-cidr=10.244.0.0/16\nproxy-mode=iptables\n",
		"/statusz": "Binary version: v0.9.0\nProxy mode: iptables\n",
		"/healthz": "ok",
	} {
		rec := httptest.NewRecorder()
		m.Handler(false).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %q, want %q in it", path, rec.Code, rec.Body.String(), want)
		}
	}
}

// /metrics/slis reports the metrics port's /healthz check, "ping", as
// upstream's component SLIs.
func TestSLIs(t *testing.T) {
	m := New("nftables")
	h := m.Handler(false)
	for range 2 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics/slis", nil))
	for _, want := range []string{`kubernetes_healthcheck{name="ping",type="healthz"} 1`, `kubernetes_healthchecks_total{name="ping",status="success",type="healthz"} 2`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics/slis: no %q in\n%s", want, rec.Body.String())
		}
	}
}

// With the localhost NodePort gate, nftables mode exports upstream's
// listener metrics and the kernel's rejected-packet counts, per protocol.
func TestLocalhostNodePortMetrics(t *testing.T) {
	m := New("nftables")
	m.LocalhostNodePorts([]string{"IPv4"}, func(string) (map[model.Protocol]uint64, error) {
		return map[model.Protocol]uint64{model.UDP: 3, model.SCTP: 0}, nil
	})
	m.SetLocalhostListeners("IPv4", 2)
	m.LocalhostListenerFailed("IPv4")
	body := scrape(t, m)
	for _, want := range []string{
		`kubeproxy_nftables_localhost_nodeport_rejected_packets_total{ip_family="IPv4",protocol="UDP"} 3`,
		`kubeproxy_nftables_localhost_nodeport_rejected_packets_total{ip_family="IPv4",protocol="SCTP"} 0`,
		`kubeproxy_nftables_localhost_nodeport_listeners{ip_family="IPv4"} 2`,
		`kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total{ip_family="IPv4"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q", want)
		}
	}
}

// iptables mode's nfacct counters, read when scraped, under upstream's
// metric names.
func TestNFAcctMetrics(t *testing.T) {
	m := New("iptables")
	m.NFAcct(func(counter string) (uint64, error) {
		return map[string]uint64{"localhost_nps_accepted_pkts": 7, "ct_state_invalid_dropped_pkts": 2}[counter], nil
	})
	body := scrape(t, m)
	for _, want := range []string{"kubeproxy_iptables_localhost_nodeports_accepted_packets_total 7", "kubeproxy_iptables_ct_state_invalid_dropped_packets_total 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q", want)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(false).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// The structured forms of /flagz and /statusz, asked for as upstream's
// clients ask; JSON of another form is refused with 406.
func TestStructuredZPages(t *testing.T) {
	m := New("nftables")
	m.SetFlags(map[string]string{"proxy-mode": "nftables"})
	m.SetVersion("v0.9.0")
	get := func(path, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		m.Handler(false).ServeHTTP(rec, req)
		return rec
	}
	rec := get("/flagz", "application/json;as=Flagz;v=v1beta1;g=config.k8s.io")
	var flagz struct {
		Kind, APIVersion string
		Flags            map[string]string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &flagz); err != nil || flagz.Kind != "Flagz" || flagz.APIVersion != "config.k8s.io/v1beta1" || flagz.Flags["proxy-mode"] != "nftables" {
		t.Errorf("/flagz structured: %v %q", err, rec.Body.String())
	}
	rec = get("/statusz", "application/json;as=Statusz;v=v1alpha1;g=config.k8s.io")
	var statusz struct {
		Kind, APIVersion, BinaryVersion string
		Paths                           []string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &statusz); err != nil || statusz.Kind != "Statusz" || statusz.APIVersion != "config.k8s.io/v1alpha1" ||
		statusz.BinaryVersion != "v0.9.0" || !slices.Contains(statusz.Paths, "/metrics/slis") {
		t.Errorf("/statusz structured: %v %q", err, rec.Body.String())
	}
	if rec := get("/flagz", "text/plain"); !strings.Contains(rec.Body.String(), "proxy-mode=nftables") {
		t.Errorf("/flagz text: %q", rec.Body.String())
	}
	if rec := get("/flagz", "application/json"); rec.Code != http.StatusNotAcceptable {
		t.Errorf("/flagz as bare JSON: %d, want 406", rec.Code)
	}
}

package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// Sync failures go to the mode's own upstream counter.
func TestFailuresCountedUnderTheModesName(t *testing.T) {
	for mode, want := range map[string]string{
		"iptables": "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1",
		"nftables": "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
	} {
		m := New(mode)
		m.ObserveSync(time.Millisecond, errors.New("refused"))
		m.PartialRestoreFailed()
		m.SetRules("nat", 3)
		rec := httptest.NewRecorder()
		m.Handler(false).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		if !strings.Contains(body, want+"\n") {
			t.Errorf("%s: no %q in:\n%s", mode, want, body)
		}
		other := "nftables_sync_failures"
		if mode == "nftables" {
			other = "iptables_"
		}
		if strings.Contains(body, "kubeproxy_sync_proxy_rules_"+other) {
			t.Errorf("%s mode exports the other mode's failure counters", mode)
		}
	}
}

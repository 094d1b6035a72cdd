package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
		New().Handler(tc.profiling).ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("profiling=%v GET %s: %d, want %d", tc.profiling, tc.path, rec.Code, tc.want)
		}
	}
}

package healthcheck

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

type fakeSyncer struct{ last time.Time }

func (f *fakeSyncer) LastSuccess() time.Time { return f.last }

func TestHealthFollowsSyncs(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	sy := &fakeSyncer{}
	s := &Server{Syncer: sy, Timeout: time.Minute, started: now, now: func() time.Time { return now }}
	check := func(want int) map[string]any {
		t.Helper()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != want {
			t.Errorf("status %d, want %d", rec.Code, want)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return body
	}
	check(http.StatusOK) // starting
	now = now.Add(2 * time.Minute)
	check(http.StatusServiceUnavailable) // never synced, too long
	sy.last = now.Add(-10 * time.Second)
	if b := check(http.StatusOK); b["lastUpdated"] == "" || b["nodeHealthy"] != true {
		t.Errorf("body = %v", b)
	}
	now = now.Add(5 * time.Minute) // syncs stalled
	check(http.StatusServiceUnavailable)
}

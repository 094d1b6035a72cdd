package healthcheck

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

type fakeSyncer struct{ last time.Time }

func (f *fakeSyncer) LastSuccess() time.Time { return f.last }

func TestHealthFollowsSyncsAndTheNode(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	sy := &fakeSyncer{}
	s := &Server{Syncer: sy, Timeout: time.Minute, started: now, now: func() time.Time { return now }, Families: []string{"IPv4"}, RequireNode: true}
	check := func(path string, want int) map[string]any {
		t.Helper()
		rec := httptest.NewRecorder()
		s.answer(rec, path == "/healthz")
		if rec.Code != want {
			t.Errorf("%s: status %d, want %d", path, rec.Code, want)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return body
	}
	check("/livez", http.StatusOK)                   // starting: alive
	check("/healthz", http.StatusServiceUnavailable) // but not ready: no rules yet
	sy.last = now.Add(-10 * time.Second)
	check("/healthz", http.StatusServiceUnavailable) // synced, but the Node object is unknown
	s.Synced(&model.State{Node: model.Node{Name: "node-1", Known: true}})
	b := check("/healthz", http.StatusOK)
	if b["healthy"] != true || b["nodeEligible"] != true || b["lastUpdated"] != b["currentTime"] {
		t.Errorf("body = %v", b)
	}
	if st, ok := b["status"].(map[string]any)["IPv4"].(map[string]any); !ok || st["healthy"] != true {
		t.Errorf("per-family status = %v", b["status"])
	}
	if _, ok := check("/livez", http.StatusOK)["nodeEligible"]; ok {
		t.Error("/livez must not say whether the node is eligible (as upstream)")
	}
	s.Synced(&model.State{Node: model.Node{Name: "node-1", Known: true, Leaving: true}})
	if b := check("/healthz", http.StatusServiceUnavailable); b["nodeEligible"] != false {
		t.Errorf("a leaving node: body = %v", b)
	}
	check("/livez", http.StatusOK) // alive all the same
	s.Synced(&model.State{Node: model.Node{Name: "node-1", Known: true}})
	now = now.Add(5 * time.Minute) // syncs stalled
	check("/healthz", http.StatusServiceUnavailable)
	check("/livez", http.StatusServiceUnavailable)
	s.RequireNode = false // standalone: no Node object needed
	s.Synced(&model.State{})
	sy.last = now
	check("/healthz", http.StatusOK)
}

// Package healthcheck serves /healthz and /livez as kube-proxy does: healthy
// while syncs keep succeeding, unhealthy once they stall.
package healthcheck

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/svcproxy/svcproxy/internal/serve"
)

// Syncer reports when rules were last synced successfully.
type Syncer interface {
	LastSuccess() time.Time
}

// Server answers health checks.
type Server struct {
	Syncer Syncer
	// Timeout is how long without a successful sync is still healthy
	// (kube-proxy uses twice the sync period).
	Timeout time.Duration
	Log     *slog.Logger
	started time.Time
	now     func() time.Time
}

type status struct {
	LastUpdated string `json:"lastUpdated"`
	CurrentTime string `json:"currentTime"`
	NodeHealthy bool   `json:"nodeHealthy"`
}

// Healthy reports the verdict and the time of the last successful sync.
func (s *Server) Healthy() (bool, time.Time) {
	now := s.clock()
	last := s.Syncer.LastSuccess()
	if last.IsZero() {
		// Still starting (waiting for the source): healthy for a while.
		return s.started.IsZero() || now.Sub(s.started) <= s.Timeout, last
	}
	return now.Sub(last) <= s.Timeout, last
}

func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// ServeHTTP answers /healthz and /livez with 200 or 503 and a JSON body.
func (s *Server) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	ok, last := s.Healthy()
	st := status{CurrentTime: s.clock().UTC().Format(time.RFC3339Nano), NodeHealthy: ok}
	if !last.IsZero() {
		st.LastUpdated = last.UTC().Format(time.RFC3339Nano)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}

// ListenAndServe serves health checks on addr until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	s.started = s.clock()
	mux := http.NewServeMux()
	mux.Handle("/healthz", s)
	mux.Handle("/livez", s)
	return serve.ListenAndServe(ctx, addr, mux)
}

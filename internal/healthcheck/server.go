// Package healthcheck serves /healthz and /livez as kube-proxy does, and
// the health check node ports of externalTrafficPolicy: Local Services.
package healthcheck

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/serve"
)

// Syncer reports when rules were last synced successfully.
type Syncer interface {
	LastSuccess() time.Time
}

// Server answers health checks, with upstream's JSON:
//
//   - /livez is healthy while syncs keep succeeding (within Timeout), and
//     while the proxy is starting (for Timeout after start): a liveness
//     probe must not kill a proxy that waits for its API server.
//   - /healthz is what load balancers ask: healthy only once the rules are
//     in the kernel (a first sync succeeded), while syncs keep succeeding,
//     and while the node is eligible: its Node object known (when the
//     source is the API server) and not leaving the cluster (being deleted,
//     or tainted ToBeDeletedByClusterAutoscaler).
type Server struct {
	Syncer Syncer
	// Timeout is how long without a successful sync is still healthy
	// (kube-proxy uses twice the sync period).
	Timeout time.Duration
	Log     *slog.Logger
	// Families are the IP families synced, for the per-family status.
	Families []string
	// RequireNode makes /healthz unhealthy until this node's Node object
	// is known, as upstream (which always has an API server).
	RequireNode bool
	// Count, when set, counts each answer ("healthz" or "livez", code).
	Count func(path string, code int)

	mu      sync.Mutex
	node    model.Node
	started time.Time
	now     func() time.Time
}

// health is upstream's answer.
type health struct {
	LastUpdated  time.Time               `json:"lastUpdated"`
	CurrentTime  time.Time               `json:"currentTime"`
	NodeEligible *bool                   `json:"nodeEligible,omitempty"`
	Healthy      bool                    `json:"healthy"`
	Status       map[string]familyHealth `json:"status,omitempty"`
}

type familyHealth struct {
	LastUpdated time.Time `json:"lastUpdated"`
	Healthy     bool      `json:"healthy"`
}

// Synced records the node of a finished sync (an agent observer).
func (s *Server) Synced(st *model.State) {
	s.mu.Lock()
	s.node = st.Node
	s.mu.Unlock()
}

// Healthy is /livez's verdict, and the time of the last successful sync.
func (s *Server) Healthy() (bool, time.Time) {
	now := s.clock()
	last := s.Syncer.LastSuccess()
	if last.IsZero() {
		// Still starting (waiting for the source): alive for a while.
		return s.started.IsZero() || now.Sub(s.started) <= s.Timeout, last
	}
	return now.Sub(last) <= s.Timeout, last
}

// eligible says whether the node should get load balancer traffic.
func (s *Server) eligible() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.node.Leaving && (s.node.Known || !s.RequireNode)
}

func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Server) answer(w http.ResponseWriter, readiness bool) {
	alive, last := s.Healthy()
	now := s.clock()
	h := health{CurrentTime: now, LastUpdated: last, Healthy: alive, Status: map[string]familyHealth{}}
	if readiness {
		eligible := s.eligible()
		h.NodeEligible = &eligible
		h.Healthy = alive && !last.IsZero() && eligible
	}
	for _, f := range s.Families {
		h.Status[f] = familyHealth{LastUpdated: last, Healthy: alive}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	code := http.StatusOK
	if h.Healthy {
		// As upstream: a healthy answer's lastUpdated is now.
		h.LastUpdated = now
	} else {
		code = http.StatusServiceUnavailable
		w.WriteHeader(code)
	}
	if s.Count != nil {
		path := "livez"
		if readiness {
			path = "healthz"
		}
		s.Count(path, code)
	}
	_ = json.NewEncoder(w).Encode(h)
}

// ListenAndServe serves health checks on addr until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	s.started = s.clock()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { s.answer(w, true) })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { s.answer(w, false) })
	return serve.ListenAndServe(ctx, addr, mux)
}

package healthcheck

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Services serves the health check node ports of externalTrafficPolicy:
// Local Services: load balancers ask each node, and only nodes with local
// endpoints answer 200.
type Services struct {
	Log *slog.Logger
	// Proxy, when set, reports whether the proxy itself is healthy.
	Proxy interface{ Healthy() (bool, time.Time) }
	// Addr is the address to listen on (default all).
	Addr string

	mu      sync.Mutex
	servers map[int32]*svcServer
}

type svcServer struct {
	srv   *http.Server
	proxy interface{ Healthy() (bool, time.Time) }
	mu    sync.Mutex
	ns    string
	nm    string
	n     int
}

type svcStatus struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *svcServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var st svcStatus
	st.Service.Namespace, st.Service.Name, st.LocalEndpoints = s.ns, s.nm, s.n
	s.mu.Unlock()
	st.ServiceProxyHealthy = true
	if s.proxy != nil {
		st.ServiceProxyHealthy, _ = s.proxy.Healthy()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A node whose proxy has stalled must not attract load balancer traffic
	// either, as upstream.
	if st.LocalEndpoints == 0 || !st.ServiceProxyHealthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}

// Synced opens, updates and closes the health check servers for a
// finished sync's state (an agent observer).
func (s *Services) Synced(st *model.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.servers == nil {
		s.servers = map[int32]*svcServer{}
	}
	type info struct {
		ns, name string
		local    map[string]bool
	}
	want := map[int32]*info{}
	for i := range st.Services {
		sp := st.Services[i]
		if sp.HealthCheckNodePort == 0 {
			continue
		}
		in := want[sp.HealthCheckNodePort]
		if in == nil {
			in = &info{ns: sp.Name.Namespace, name: sp.Name.Name, local: map[string]bool{}}
			want[sp.HealthCheckNodePort] = in
		}
		// Ready ones only, as upstream counts them: a node whose local
		// endpoints are all terminating still serves its connections
		// (LocalEndpoints falls back to them), but load balancers must
		// move new ones away.
		for _, e := range sp.Endpoints {
			if e.IsLocal && e.Ready {
				in.local[e.IP.String()] = true
			}
		}
	}
	for port, srv := range s.servers {
		if _, ok := want[port]; !ok {
			srv.srv.Close()
			delete(s.servers, port)
			s.Log.Info("closed health check node port", "port", port)
		}
	}
	for port, in := range want {
		srv, ok := s.servers[port]
		if !ok {
			l, err := net.Listen("tcp", net.JoinHostPort(s.Addr, strconv.Itoa(int(port))))
			if err != nil {
				s.Log.Error(fmt.Sprintf("can't open health check node port %d of %s/%s", port, in.ns, in.name), "err", err)
				continue
			}
			srv = &svcServer{proxy: s.Proxy}
			srv.srv = &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.srv.Serve(l) }()
			s.servers[port] = srv
			s.Log.Info("serving health check node port", "service", in.ns+"/"+in.name, "port", port)
		}
		srv.mu.Lock()
		srv.ns, srv.nm, srv.n = in.ns, in.name, len(in.local)
		srv.mu.Unlock()
	}
}

// Close stops every server.
func (s *Services) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, srv := range s.servers {
		srv.srv.Close()
		delete(s.servers, port)
	}
}

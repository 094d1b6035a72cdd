// Package localnodeport serves TCP NodePorts on loopback (127.0.0.1 or ::1)
// in nftables mode, where no rule can: a packet DNATed from loopback to a
// pod would leave the node with a loopback source, which the kernel drops
// unless route_localnet is set, and setting it reopens CVE-2020-8558. So,
// as upstream kube-proxy does behind KubeProxyNFTablesLocalhostNodePorts,
// svcproxy listens on the NodePort itself and copies each connection to
// one of the Service's endpoints.
package localnodeport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// dialTimeout bounds the connection to an endpoint.
const dialTimeout = 5 * time.Second

// Metrics are told how many listeners there are and when one cannot be
// opened (kubeproxy_nftables_localhost_nodeport_listeners and
// ..._listener_creation_failures_total).
type Metrics interface {
	SetLocalhostListeners(ipFamily string, n int)
	LocalhostListenerFailed(ipFamily string)
}

// Proxy keeps one listener per TCP NodePort with endpoints, on one
// family's loopback address. It is an agent observer: each finished sync
// gives it the state the rules were written for.
type Proxy struct {
	// V6 picks ::1 instead of 127.0.0.1, and the family's Services.
	V6      bool
	Log     *slog.Logger
	Metrics Metrics
	// Addr overrides the loopback address (tests).
	Addr netip.Addr

	mu     sync.Mutex
	active map[int32]*listener
	ctx    context.Context
	stop   context.CancelFunc
}

// Spec is what one listener serves.
type Spec struct {
	Service  model.ServicePortName
	NodePort int32
	// Endpoints are "ip:port"; the listener picks one per connection.
	Endpoints []string
	// Affinity pins the connections of the last while to the endpoint
	// first picked (sessionAffinity: ClientIP: every localhost client has
	// the same address); 0 for none.
	Affinity time.Duration
}

// Specs are the listeners st asks for: a TCP NodePort of the family with
// endpoints to send external traffic to (the local ones with
// externalTrafficPolicy: Local, as upstream).
func Specs(st *model.State, v6 bool) []Spec {
	var out []Spec
	for i := range st.Services {
		sp := st.Services[i]
		if sp.NodePort == 0 || sp.Protocol != model.TCP || sp.ClusterIP.Is6() != v6 {
			continue
		}
		p := sp.Plan(st.Node)
		eps := p.Cluster
		if p.ExternalLocal {
			eps = p.Local
		}
		if len(eps) == 0 {
			continue
		}
		s := Spec{Service: sp.Name, NodePort: sp.NodePort, Affinity: time.Duration(sp.AffinitySeconds) * time.Second}
		for _, ep := range eps {
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(ep.IP, uint16(ep.Port)).String())
		}
		out = append(out, s)
	}
	return out
}

// Synced makes the listeners match a finished sync.
func (p *Proxy) Synced(st *model.State) { p.Sync(Specs(st, p.V6)) }

func (p *Proxy) family() string { return dataplane.FamilyName(p.V6) }

func (p *Proxy) addr() netip.Addr {
	switch {
	case p.Addr.IsValid():
		return p.Addr
	case p.V6:
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// Sync opens a listener for each spec that has none, updates the
// endpoints of the others, and closes those of NodePorts gone. A port
// that cannot be opened is logged and counted and tried again next sync.
func (p *Proxy) Sync(specs []Spec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == nil {
		p.active = map[int32]*listener{}
		p.ctx, p.stop = context.WithCancel(context.Background())
	}
	want := map[int32]Spec{}
	for _, s := range specs {
		want[s.NodePort] = s
	}
	for port, l := range p.active {
		if _, ok := want[port]; !ok {
			l.close()
			delete(p.active, port)
			p.Log.Debug("localhost NodePort listener closed", "nodePort", port, "family", p.family())
		}
	}
	for port, s := range want {
		if l, ok := p.active[port]; ok {
			l.update(s)
			continue
		}
		l, err := p.open(s)
		if err != nil {
			p.Log.Error("can't serve localhost NodePort", "service", s.Service.String(), "nodePort", port, "err", err)
			if p.Metrics != nil {
				p.Metrics.LocalhostListenerFailed(p.family())
			}
			continue
		}
		p.active[port] = l
		p.Log.Debug("localhost NodePort listener opened", "service", s.Service.String(), "address", l.ln.Addr().String(), "endpoints", len(s.Endpoints))
	}
	if p.Metrics != nil {
		p.Metrics.SetLocalhostListeners(p.family(), len(p.active))
	}
}

// Serves reports whether a listener holds this NodePort (the NodePort
// guard leaves such a port alone: the socket is svcproxy's own).
func (p *Proxy) Serves(port int32, proto model.Protocol) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.active[port]
	return ok && proto == model.TCP
}

// Close closes every listener and the connections they carry.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, l := range p.active {
		l.close()
		delete(p.active, port)
	}
	if p.stop != nil {
		p.stop()
	}
	if p.Metrics != nil {
		p.Metrics.SetLocalhostListeners(p.family(), 0)
	}
}

func (p *Proxy) open(s Spec) (*listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	addr := net.JoinHostPort(p.addr().String(), strconv.Itoa(int(s.NodePort)))
	ln, err := lc.Listen(p.ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(p.ctx)
	l := &listener{ln: ln, cancel: cancel, log: p.Log.With("nodePort", s.NodePort, "family", p.family())}
	l.update(s)
	go l.accept(ctx)
	return l, nil
}

// listener serves one NodePort.
type listener struct {
	ln     net.Listener
	cancel context.CancelFunc
	log    *slog.Logger

	mu        sync.Mutex
	endpoints []string
	affinity  time.Duration
	pinned    string
	pinnedAt  time.Time
}

func (l *listener) update(s Spec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endpoints = s.Endpoints
	if l.affinity != s.Affinity {
		l.affinity, l.pinned = s.Affinity, ""
	}
}

// pick chooses the endpoint of a new connection: at random, or the pinned
// one while affinity holds (renewed by each connection, as the rules'
// affinity sets are).
func (l *listener) pick() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.endpoints) == 0 {
		return ""
	}
	now := time.Now()
	if l.affinity > 0 && l.pinned != "" && now.Sub(l.pinnedAt) <= l.affinity {
		for _, ep := range l.endpoints {
			if ep == l.pinned {
				l.pinnedAt = now
				return ep
			}
		}
	}
	ep := l.endpoints[rand.IntN(len(l.endpoints))]
	if l.affinity > 0 {
		l.pinned, l.pinnedAt = ep, now
	}
	return ep
}

func (l *listener) accept(ctx context.Context) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Debug("accept on localhost NodePort", "err", err)
			continue
		}
		go l.serve(ctx, c)
	}
}

// serve copies one connection both ways until both sides are done, or the
// listener closes.
func (l *listener) serve(ctx context.Context, client net.Conn) {
	defer client.Close()
	ep := l.pick()
	if ep == "" {
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	d.SetMultipathTCP(false)
	backend, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		l.log.Debug("localhost NodePort: endpoint unreachable", "endpoint", ep, "err", err)
		return
	}
	defer backend.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		client.Close()
		backend.Close()
	}()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil && ctx.Err() == nil {
			l.log.Debug("localhost NodePort: copy", "endpoint", ep, "err", err)
		}
		// Pass the half-close on, so request/response protocols end.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(backend, client)
	go pipe(client, backend)
	wg.Wait()
}

func (l *listener) close() {
	l.cancel()
	_ = l.ln.Close()
}

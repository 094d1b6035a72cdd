// Package nodeport protects NodePorts on the node: it finds ports another
// process holds and, when asked, holds them itself. It only ever runs after
// the rules serving a port are committed, so a socket it opens never hides a
// port whose traffic is not yet steered to the pods.
package nodeport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Guard checks (and optionally holds) the NodePorts of the synced state.
type Guard struct {
	Log *slog.Logger
	// Hold keeps a listening socket open on every NodePort, as kube-proxy
	// did before v1.24, so no other process can take it.
	Hold bool
	// Metrics, when set, gets the number of holders of each NodePort.
	Metrics interface {
		SetNodePortConflict(port int32, protocol string, holders int)
	}
	// Served, when set, reports the NodePorts svcproxy itself listens on
	// (localhost NodePorts in nftables mode): the guard leaves them alone,
	// as that socket is no stranger's and already keeps them from being
	// taken.
	Served func(port int32, proto model.Protocol) bool
	// Events, when set, is told about each new conflict (as a Kubernetes
	// Event on the Service).
	Events interface {
		NodePortConflict(svc model.ServicePortName, message string)
	}

	// ProbeEvery, when set, makes a sync probe only the NodePorts it adds
	// (and those in conflict), and Run probe every one at this interval,
	// whether syncs come or not. Probing 2,700 NodePorts on every sync
	// took a quarter of svcproxy's CPU under a stream of endpoint changes.
	ProbeEvery time.Duration

	mu        sync.Mutex
	want      map[key]model.ServicePortName // the last synced state's
	gen       uint64                        // and its Gen
	held      map[key]io.Closer
	conflicts map[key]string // port -> error text, as last reported
	// probed are the NodePorts probed since the last time all were.
	probed map[key]bool
}

type key struct {
	port  int32
	proto model.Protocol
}

func (k key) String() string { return fmt.Sprintf(":%d/%s", k.port, k.proto) }

// Conflict is a NodePort another process holds.
type Conflict struct {
	Service model.ServicePortName
	Port    int32
	Proto   model.Protocol
	Err     error
	// Holders are the processes found holding the port.
	Holders []Holder
}

// Message says what is wrong in one sentence, naming the culprits.
func (c Conflict) Message() string {
	msg := fmt.Sprintf("NodePort %d/%s of %s is held by another process", c.Port, c.Proto, c.Service)
	if len(c.Holders) == 0 {
		return msg + " (not found in /proc: another user's, or gone)"
	}
	parts := make([]string, len(c.Holders))
	for i, h := range c.Holders {
		parts[i] = h.String()
	}
	return msg + ": " + strings.Join(parts, "; ")
}

// Synced checks the NodePorts of a finished sync (an agent observer).
func (g *Guard) Synced(st *model.State) { g.Update(st) }

// Update checks the NodePorts of st: every one, or with ProbeEvery the
// ones new since the last check of all. Conflicts are logged when they
// appear and when they clear; the ones found are also returned.
func (g *Guard) Update(st *model.State) []Conflict {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The same State again (a periodic sync), or one in which only
	// endpoints changed (model.Delta), has the last one's NodePorts.
	if _, same := st.ChangedSince(g.gen); !same || g.want == nil {
		g.want = map[key]model.ServicePortName{}
		for i := range st.Services {
			sp := st.Services[i]
			if sp.NodePort != 0 && (sp.Protocol == model.TCP || sp.Protocol == model.UDP) && (g.Served == nil || !g.Served(sp.NodePort, sp.Protocol)) {
				g.want[key{sp.NodePort, sp.Protocol}] = sp.Name
			}
		}
	}
	g.gen = st.Gen
	return g.check(g.ProbeEvery == 0)
}

// Run checks every NodePort of the last synced state each ProbeEvery,
// until ctx ends (with ProbeEvery 0, it returns at once).
func (g *Guard) Run(ctx context.Context) {
	if g.ProbeEvery <= 0 {
		return
	}
	t := time.NewTicker(g.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		if g.want != nil {
			g.check(true)
		}
		g.mu.Unlock()
	}
}

// check probes (or holds) the NodePorts of g.want: all, or those not
// probed since the last time all were and those in conflict.
func (g *Guard) check(all bool) []Conflict {
	want := g.want
	if g.held == nil {
		g.held, g.conflicts = map[key]io.Closer{}, map[key]string{}
	}
	for k, c := range g.held {
		if _, ok := want[k]; !ok || !g.Hold {
			c.Close()
			delete(g.held, k)
			g.Log.Debug("released node port", "port", k.String())
		}
	}
	if all || g.probed == nil {
		g.probed = map[key]bool{}
	}
	keys := make([]key, 0, len(want))
	for k := range want {
		if _, conflict := g.conflicts[k]; g.Hold || !g.probed[k] || conflict {
			keys = append(keys, k)
		}
	}
	for k := range g.probed {
		if _, ok := want[k]; !ok {
			delete(g.probed, k)
		}
	}
	slices.SortFunc(keys, func(a, b key) int { return int(a.port - b.port) })

	var out []Conflict
	for _, k := range keys {
		name := want[k]
		if _, ok := g.held[k]; ok {
			continue
		}
		var sock io.Closer
		var err error
		if g.Hold {
			sock, err = open(k)
		} else {
			err = probe(k)
			g.probed[k] = true
		}
		if err != nil {
			c := Conflict{Service: name, Port: k.port, Proto: k.proto, Err: err}
			c.Holders, _ = Holders(k.port, k.proto)
			out = append(out, c)
			g.report(k, c)
			continue
		}
		if _, was := g.conflicts[k]; was {
			delete(g.conflicts, k)
			g.Log.Info("node port is free again", "service", name.String(), "nodePort", k.port, "protocol", string(k.proto))
			if g.Metrics != nil {
				g.Metrics.SetNodePortConflict(k.port, string(k.proto), 0)
			}
		}
		if g.Hold {
			g.held[k] = sock
			g.Log.Debug("holding node port", "service", name.String(), "port", k.String())
		}
	}
	for k := range g.conflicts {
		if _, ok := want[k]; !ok {
			delete(g.conflicts, k)
			if g.Metrics != nil {
				g.Metrics.SetNodePortConflict(k.port, string(k.proto), 0)
			}
		}
	}
	return out
}

// report publishes a conflict: the metric on every sync, the log line and
// the Event only when it is new or has changed.
func (g *Guard) report(k key, c Conflict) {
	if g.Metrics != nil {
		g.Metrics.SetNodePortConflict(k.port, string(k.proto), max(1, len(c.Holders)))
	}
	sig := c.Err.Error() + " " + fmt.Sprint(c.Holders)
	if g.conflicts[k] == sig {
		return
	}
	g.conflicts[k] = sig
	attrs := []any{"service", c.Service.String(), "nodePort", k.port, "protocol", string(k.proto),
		"rules", "installed; traffic to the port still reaches the pods"}
	for _, h := range c.Holders {
		attrs = append(attrs, "pid", h.Pid, "command", h.Command, "socket", h.State+" "+h.Local)
	}
	// The words are kube-proxy's, so that operators' searches still find
	// them; unlike kube-proxy, the rules stay installed.
	g.Log.Error(fmt.Sprintf("can't open \"nodePort for %s\" (%s), skipping this nodePort: %v", c.Service, k, c.Err), attrs...)
	if g.Events != nil {
		g.Events.NodePortConflict(c.Service, c.Message()+"; its rules are installed and traffic still reaches the pods")
	}
}

// Close releases every held port.
func (g *Guard) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, c := range g.held {
		c.Close()
		delete(g.held, k)
	}
}

// open binds the port as a plain TCP or UDP socket. Not MPTCP, which Go's
// listeners use by default: it took half again as long per port, and every
// NodePort is probed every few seconds.
func open(k key) (io.Closer, error) {
	addr := ":" + strconv.Itoa(int(k.port))
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	if k.proto == model.UDP {
		return lc.ListenPacket(context.Background(), "udp", addr)
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// probe reports whether the port can be bound as open would bind it (every
// address, both families, SO_REUSEADDR): a listener or a socket bound
// without SO_REUSEADDR on any address makes it fail. It is the same test
// as open, in four system calls instead of Go's listener's dozen, without
// the poller: every NodePort is probed after every sync.
func probe(k key) error {
	typ := syscall.SOCK_STREAM
	if k.proto == model.UDP {
		typ = syscall.SOCK_DGRAM
	}
	v6 := true
	fd, err := syscall.Socket(syscall.AF_INET6, typ|syscall.SOCK_CLOEXEC, 0)
	if errors.Is(err, syscall.EAFNOSUPPORT) {
		v6 = false
		fd, err = syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{Port: int(k.port)}
	if v6 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
		sa = &syscall.SockaddrInet6{Port: int(k.port)}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return &net.OpError{Op: "listen", Net: string(k.proto), Addr: &net.TCPAddr{Port: int(k.port)}, Err: os.NewSyscallError("bind", err)}
	}
	return nil
}

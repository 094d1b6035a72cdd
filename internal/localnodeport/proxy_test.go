package localnodeport

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// backend answers every connection with its name and then echoes one line.
func backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, line)
			}()
		}
	}()
	return ln.Addr().String()
}

// freePort is a port nothing listens on now.
func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// ask connects to the NodePort on loopback and returns who answered and
// the echo of a line, or the error.
func ask(port int32) (string, error) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(port)), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	io.WriteString(c, "ping\n")
	echo, err := r.ReadString('\n')
	if err != nil || echo != "ping\n" {
		return "", io.ErrUnexpectedEOF
	}
	return name[:len(name)-1], nil
}

type countingMetrics struct {
	mu        sync.Mutex
	listeners map[string]int
	failures  int
}

func (m *countingMetrics) SetLocalhostListeners(f string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listeners == nil {
		m.listeners = map[string]int{}
	}
	m.listeners[f] = n
}

func (m *countingMetrics) LocalhostListenerFailed(string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures++
}

func TestListenerFollowsSyncs(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	port := freePort(t)
	m := &countingMetrics{}
	p := &Proxy{Log: slog.New(slog.DiscardHandler), Metrics: m}
	defer p.Close()
	svc := model.ServicePortName{Namespace: "default", Name: "web"}

	p.Sync([]Spec{{Service: svc, NodePort: port, Endpoints: []string{a}}})
	if got, err := ask(port); err != nil || got != "a" {
		t.Fatalf("first sync: answered by %q (%v), want a", got, err)
	}
	if m.listeners["IPv4"] != 1 || !p.Serves(port, model.TCP) || p.Serves(port, model.UDP) {
		t.Errorf("listeners metric %v, serves tcp %t udp %t: want 1, true, false", m.listeners, p.Serves(port, model.TCP), p.Serves(port, model.UDP))
	}

	// The endpoints change under the same listener.
	p.Sync([]Spec{{Service: svc, NodePort: port, Endpoints: []string{b}}})
	if got, err := ask(port); err != nil || got != "b" {
		t.Fatalf("after the endpoints moved: answered by %q (%v), want b", got, err)
	}

	// Without affinity both endpoints get connections.
	p.Sync([]Spec{{Service: svc, NodePort: port, Endpoints: []string{a, b}}})
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		got, err := ask(port)
		if err != nil {
			t.Fatal(err)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Errorf("40 connections without affinity all went to %v", seen)
	}

	// With ClientIP affinity every localhost connection goes to one.
	p.Sync([]Spec{{Service: svc, NodePort: port, Endpoints: []string{a, b}, Affinity: time.Hour}})
	first, _ := ask(port)
	for i := 0; i < 20; i++ {
		if got, err := ask(port); err != nil || got != first {
			t.Fatalf("connection %d with affinity went to %q (%v), the first to %q", i, got, err, first)
		}
	}

	// The NodePort gone: its port is closed.
	p.Sync(nil)
	if _, err := ask(port); err == nil {
		t.Error("the NodePort is gone but its listener still answers")
	}
	if m.listeners["IPv4"] != 0 {
		t.Errorf("listeners metric %d after the NodePort went, want 0", m.listeners["IPv4"])
	}
}

// A port another process holds is counted and logged, the other NodePorts
// are still served, and the next sync after it is freed serves it.
func TestTakenPortIsRetried(t *testing.T) {
	a := backend(t, "a")
	taken, free := freePort(t), freePort(t)
	holder, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(taken)))
	if err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{}
	p := &Proxy{Log: slog.New(slog.DiscardHandler), Metrics: m}
	defer p.Close()
	specs := []Spec{{NodePort: taken, Endpoints: []string{a}}, {NodePort: free, Endpoints: []string{a}}}
	p.Sync(specs)
	if m.failures != 1 || m.listeners["IPv4"] != 1 {
		t.Errorf("failures %d, listeners %d: want 1 and 1", m.failures, m.listeners["IPv4"])
	}
	if got, err := ask(free); err != nil || got != "a" {
		t.Errorf("the free NodePort: %q (%v)", got, err)
	}
	holder.Close()
	p.Sync(specs)
	if got, err := ask(taken); err != nil || got != "a" {
		t.Errorf("once freed, the NodePort: %q (%v)", got, err)
	}
}

// Specs: TCP NodePorts of the family with endpoints for external traffic.
func TestSpecs(t *testing.T) {
	ep := func(ip string, local bool) model.Endpoint {
		return model.Endpoint{IP: netip.MustParseAddr(ip), Port: 8080, Ready: true, Serving: true, IsLocal: local}
	}
	svc := func(name string, proto model.Protocol, nodePort int32, eps ...model.Endpoint) *model.ServicePort {
		return &model.ServicePort{Name: model.ServicePortName{Namespace: "default", Name: name}, Protocol: proto,
			ClusterIP: netip.MustParseAddr("10.96.0.1"), Port: 80, NodePort: nodePort, Endpoints: eps}
	}
	local := svc("local", model.TCP, 30003, ep("10.244.0.5", true), ep("10.244.1.5", false))
	local.ExternalPolicyLocal = true
	v6 := svc("v6", model.TCP, 30005, ep("fd00::5", true))
	v6.ClusterIP = netip.MustParseAddr("fd00:96::1")
	st := &model.State{Services: []*model.ServicePort{
		svc("web", model.TCP, 30001, ep("10.244.0.4", true), ep("10.244.1.4", false)),
		svc("dns", model.UDP, 30002, ep("10.244.0.6", true)),
		local,
		svc("empty", model.TCP, 30004),
		svc("clusterip", model.TCP, 0, ep("10.244.0.7", true)),
		v6,
	}}
	got := map[int32][]string{}
	for _, s := range Specs(st, false) {
		got[s.NodePort] = s.Endpoints
	}
	want := map[int32][]string{30001: {"10.244.0.4:8080", "10.244.1.4:8080"}, 30003: {"10.244.0.5:8080"}}
	if len(got) != len(want) || !slices.Equal(got[30001], want[30001]) || !slices.Equal(got[30003], want[30003]) {
		t.Errorf("IPv4 specs %v, want %v", got, want)
	}
	if s := Specs(st, true); len(s) != 1 || s[0].Endpoints[0] != "[fd00::5]:8080" {
		t.Errorf("IPv6 specs %+v, want the v6 Service alone", s)
	}
}

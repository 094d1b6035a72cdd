package nodeport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func stateWith(port int32) *model.State { return stateWithProto(port, model.TCP) }

func stateWithProto(port int32, proto model.Protocol) *model.State {
	return &model.State{Services: []*model.ServicePort{{
		Name:     model.ServicePortName{Namespace: "default", Name: "web"},
		Protocol: proto, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: port,
	}}}
}

// A socket on a NodePort is found on the next sync, on any address, TCP
// or UDP, listening or only bound, and named once; so is its going away.
func TestGuardNamesConflictsOnce(t *testing.T) {
	for _, tt := range []struct {
		proto     model.Protocol
		host      string
		boundOnly bool // a TCP socket bound without SO_REUSEADDR, not listening
	}{{model.TCP, "", false}, {model.TCP, "127.0.0.1", false}, {model.TCP, "127.0.0.1", true}, {model.UDP, "", false}, {model.UDP, "127.0.0.1", false}} {
		t.Run(fmt.Sprintf("%s/%s/bound-only=%v", tt.proto, tt.host, tt.boundOnly), func(t *testing.T) {
			port := freePort(t)
			var logs bytes.Buffer
			g := &Guard{Log: slog.New(slog.NewTextHandler(&logs, nil))}
			st := stateWithProto(port, tt.proto)
			if c := g.Update(st); len(c) != 0 {
				t.Fatalf("conflicts on a free port: %v", c)
			}
			addr := net.JoinHostPort(tt.host, itoa(port))
			var rogue io.Closer
			var err error
			switch {
			case tt.boundOnly:
				rogue, err = bindOnly(tt.host, port)
			case tt.proto == model.UDP:
				rogue, err = net.ListenPacket("udp", addr)
			default:
				rogue, err = net.Listen("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rogue.Close()
			c := g.Update(st)
			if len(c) != 1 || c[0].Service.String() != "default/web" || !strings.Contains(c[0].Err.Error(), "address already in use") {
				t.Fatalf("conflicts = %v", c)
			}
			g.Update(st)
			if n := strings.Count(logs.String(), "can't open"); n != 1 {
				t.Errorf("conflict logged %d times over two syncs, want once", n)
			}
			rogue.Close()
			if c := g.Update(st); len(c) != 0 {
				t.Errorf("conflicts after the rogue left: %v", c)
			}
			if !strings.Contains(logs.String(), "node port is free again") {
				t.Error("the end of a conflict is not logged")
			}
		})
	}
}

// BenchmarkGuardUpdate is a check of all 2,700 NodePorts (as the lab's
// 10k Services have), all free: what Run does every ProbeEvery.
func BenchmarkGuardUpdate(b *testing.B) {
	st := &model.State{}
	for i := range 2700 {
		st.Services = append(st.Services, stateWith(int32(40000 + i)).Services[0])
	}
	g := &Guard{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for b.Loop() {
		g.Update(st)
	}
}

func TestGuardHoldsAndReleases(t *testing.T) {
	port := freePort(t)
	g := &Guard{Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), Hold: true}
	defer g.Close()
	g.Update(stateWith(port))
	if l, err := net.Listen("tcp", net.JoinHostPort("", itoa(port))); err == nil {
		l.Close()
		t.Fatal("another process could take a held node port")
	}
	g.Update(&model.State{})
	l, err := net.Listen("tcp", net.JoinHostPort("", itoa(port)))
	if err != nil {
		t.Fatalf("port still held after its Service went away: %v", err)
	}
	l.Close()
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// bindOnly binds a TCP socket without listening on it.
func bindOnly(host string, port int32) (io.Closer, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(port), Addr: netip.MustParseAddr(host).As4()}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "bound"), nil
}

// With ProbeEvery, a sync checks only the NodePorts new since the last
// check of all: a port taken meanwhile is found by Run's next check, a new
// NodePort at once.
func TestGuardProbesAllOnlyEvery(t *testing.T) {
	taken, added := freePort(t), freePort(t)
	g := &Guard{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ProbeEvery: 300 * time.Millisecond}
	if c := g.Update(stateWith(taken)); len(c) != 0 {
		t.Fatalf("conflicts on a free port: %v", c)
	}
	for _, port := range []int32{taken, added} {
		l, err := net.Listen("tcp", ":"+itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	both := stateWith(taken)
	both.Services = append(both.Services, stateWith(added).Services...)
	both.Services[1].Name.Name = "api"
	c := g.Update(both)
	if len(c) != 1 || c[0].Port != added {
		t.Fatalf("a sync: conflicts %v, want the new NodePort %d alone", c, added)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		n := len(g.conflicts)
		g.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run's checks found %d conflicts, want both", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package nodeport

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

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

func stateWith(port int32) *model.State {
	return &model.State{Services: []model.ServicePort{{
		Name:     model.ServicePortName{Namespace: "default", Name: "web"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: port,
	}}}
}

func TestGuardNamesConflictsOnce(t *testing.T) {
	port := freePort(t)
	rogue, err := net.Listen("tcp", net.JoinHostPort("", itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	var logs bytes.Buffer
	g := &Guard{Log: slog.New(slog.NewTextHandler(&logs, nil))}
	c := g.Update(stateWith(port))
	if len(c) != 1 || c[0].Service.String() != "default/web" || !strings.Contains(c[0].Err.Error(), "address already in use") {
		t.Fatalf("conflicts = %v", c)
	}
	g.Update(stateWith(port))
	if n := strings.Count(logs.String(), "can't open"); n != 1 {
		t.Errorf("conflict logged %d times over two syncs, want once", n)
	}
	rogue.Close()
	if c := g.Update(stateWith(port)); len(c) != 0 {
		t.Errorf("conflicts after the rogue left: %v", c)
	}
	if !strings.Contains(logs.String(), "node port is free again") {
		t.Error("the end of a conflict is not logged")
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

// Package dptest holds what the dataplanes' tests share: endpoints to build
// states from, golden files, and behaviour stated through the packet tracer.
// Only tests import it.
package dptest

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Ep is a ready endpoint on this node (node-1).
func Ep(ip string, port int32) model.Endpoint {
	return model.Endpoint{IP: netip.MustParseAddr(ip), Port: port, NodeName: "node-1", IsLocal: true, Ready: true, Serving: true}
}

// Remote is a ready endpoint on another node.
func Remote(ip string, port int32) model.Endpoint {
	e := Ep(ip, port)
	e.NodeName, e.IsLocal = "node-2", false
	return e
}

// Golden compares got with the file at path, or with -update writes it.
func Golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("rendered rules differ from %s (run go test -update after checking):\n%s", path, got)
	}
}

// TraceCase states what must happen to one packet.
type TraceCase struct {
	Name  string
	Dir   netfilter.Direction
	Src   string
	Proto string
	Dst   string // ip:port
	Want  string // netfilter.Result.Summary()
	// Iface is the interface the packet arrives on ("": unknown).
	Iface string
}

// Via is tc arriving on interface iface.
func (tc TraceCase) Via(iface string) TraceCase {
	tc.Iface = iface
	return tc
}

// T is a TraceCase.
func T(name string, dir netfilter.Direction, src, proto, dst, want string) TraceCase {
	return TraceCase{Name: name, Dir: dir, Src: src, Proto: proto, Dst: dst, Want: want}
}

// Tracer follows a packet through one parsed ruleset.
type Tracer func(netfilter.Packet, netfilter.TraceOptions) (*netfilter.Result, error)

// CheckTrace traces tc's packet on a node with the given addresses and
// compares the outcome with tc.Want.
func CheckTrace(t *testing.T, trace Tracer, local []netip.Addr, tc TraceCase) {
	t.Helper()
	dst := netip.MustParseAddrPort(tc.Dst)
	res, err := trace(netfilter.Packet{Src: netip.MustParseAddr(tc.Src), Dst: dst.Addr(), Protocol: tc.Proto, DstPort: dst.Port(), InInterface: tc.Iface},
		netfilter.TraceOptions{Direction: tc.Dir, LocalAddrs: local})
	if err != nil {
		t.Fatalf("%s: %v", tc.Name, err)
	}
	if len(res.Unknown) > 0 {
		t.Errorf("%s: tracer did not understand: %v", tc.Name, res.Unknown)
	}
	if got := res.Summary(); got != tc.Want {
		t.Errorf("%s: %s %s -> %s\n got: %s\nwant: %s", tc.Name, tc.Proto, tc.Src, tc.Dst, got, tc.Want)
	}
}

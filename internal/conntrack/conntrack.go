// Package conntrack removes stale UDP conntrack entries. UDP has no
// connection end, so after an endpoint goes away, a client that keeps
// sending from the same source port would keep hitting the old endpoint (the
// DNS case: kubernetes #19029, #125467). After each sync, entries whose
// replies come from an endpoint (address and port) the Service no longer
// uses, or that were created while a Service had no endpoints, are deleted
// through netlink. The port matters: when a Service's targetPort changes,
// the pod stays but the flow must move to its new port (kubernetes #130542).
package conntrack

import (
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// Flow selects conntrack entries: UDP, to OrigDst (any when invalid) port
// OrigDstPort, whose reply comes from ReplySrc (any when invalid) and from
// none of Except.
type Flow struct {
	OrigDst     netip.Addr
	OrigDstPort uint16
	ReplySrc    netip.AddrPort
	Except      []netip.AddrPort
	// IPv6 is the family of the flow.
	IPv6 bool
}

// MatchConntrackFlow makes a Flow a netlink filter; netlink's own filter
// cannot select on the reply's source port.
func (f Flow) MatchConntrackFlow(c *netlink.ConntrackFlow) bool {
	if c.Forward.Protocol != unix.IPPROTO_UDP || c.Forward.DstPort != f.OrigDstPort {
		return false
	}
	if f.OrigDst.IsValid() && addr(c.Forward.DstIP) != f.OrigDst {
		return false
	}
	reply := netip.AddrPortFrom(addr(c.Reverse.SrcIP), c.Reverse.SrcPort)
	if f.ReplySrc.IsValid() && reply != f.ReplySrc {
		return false
	}
	return !slices.Contains(f.Except, reply)
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

type spKey struct {
	name  model.ServicePortName
	proto model.Protocol
	v6    bool
}

// Stale returns the entries to delete after going from prev to cur.
func Stale(prev, cur *model.State) []Flow {
	before := map[spKey]*model.ServicePort{}
	if prev != nil {
		for i := range prev.Services {
			sp := prev.Services[i]
			if sp.Protocol == model.UDP {
				before[spKey{sp.Name, sp.Protocol, sp.ClusterIP.Is6()}] = sp
			}
		}
	}
	var out []Flow
	seen := map[spKey]bool{}
	for i := range cur.Services {
		sp := cur.Services[i]
		if sp.Protocol != model.UDP {
			continue
		}
		k := spKey{sp.Name, sp.Protocol, sp.ClusterIP.Is6()}
		seen[k] = true
		old, existed := before[k]
		if existed && model.SameEndpoints(old.Endpoints, sp.Endpoints) {
			continue // States share an unchanged list: nothing went
		}
		now := usedEndpoints(sp)
		var was map[netip.AddrPort]bool
		if existed {
			was = usedEndpoints(old)
		}
		if len(was) == 0 {
			if len(now) > 0 {
				// Entries made while traffic was rejected would keep the
				// client's flow going nowhere. Those already DNATed to a
				// current endpoint stay: at start (no state before) they
				// are live flows another proxy, or this one before a
				// restart, sent where they still may go.
				except := slices.SortedFunc(maps.Keys(now), netip.AddrPort.Compare)
				for _, f := range frontends(sp, netip.AddrPort{}) {
					f.Except = except
					out = append(out, f)
				}
			}
			continue
		}
		for ep := range was {
			if !now[ep] {
				out = append(out, frontends(old, ep)...)
			}
		}
	}
	for k, old := range before {
		if !seen[k] {
			for ep := range usedEndpoints(old) {
				out = append(out, frontends(old, ep)...)
			}
		}
	}
	return out
}

func usedEndpoints(sp *model.ServicePort) map[netip.AddrPort]bool {
	m := map[netip.AddrPort]bool{}
	for _, eps := range [][]model.Endpoint{sp.ClusterEndpoints(), sp.LocalEndpoints()} {
		for _, e := range eps {
			m[netip.AddrPortFrom(e.IP, uint16(e.Port))] = true
		}
	}
	return m
}

// frontends are the flows to every address and port the Service answers on,
// with replies from ep (any when invalid).
func frontends(sp *model.ServicePort, ep netip.AddrPort) []Flow {
	port, v6 := uint16(sp.Port), sp.ClusterIP.Is6()
	out := []Flow{{OrigDst: sp.ClusterIP, OrigDstPort: port, ReplySrc: ep, IPv6: v6}}
	for _, ip := range append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...) {
		out = append(out, Flow{OrigDst: ip, OrigDstPort: port, ReplySrc: ep, IPv6: v6})
	}
	if sp.NodePort != 0 {
		out = append(out, Flow{OrigDstPort: uint16(sp.NodePort), ReplySrc: ep, IPv6: v6})
	}
	return out
}

// Cleaner deletes stale entries after each sync.
type Cleaner struct {
	Log *slog.Logger
	// Metrics, when set, gets each family's round of deletions.
	Metrics interface {
		ConntrackReconciled(ipFamily string, took time.Duration, deleted int)
	}
	prev *model.State
}

// Synced is called with each state once its rules are in the kernel.
func (c *Cleaner) Synced(st *model.State) {
	flows := Stale(c.prev, st)
	c.prev = st
	if len(flows) == 0 {
		return
	}
	for _, family := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		c.delete(family, flows)
	}
}

// delete removes the flows of one family.
func (c *Cleaner) delete(family netlink.InetFamily, flows []Flow) {
	var filters []netlink.CustomConntrackFilter
	for _, f := range flows {
		if f.IPv6 == (family == unix.AF_INET6) {
			filters = append(filters, f)
		}
	}
	if len(filters) == 0 {
		return
	}
	start := time.Now()
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, filters...)
	if c.Metrics != nil {
		c.Metrics.ConntrackReconciled(dataplane.FamilyName(family == unix.AF_INET6), time.Since(start), int(n))
	}
	if err != nil {
		c.Log.Error("deleting stale UDP conntrack entries", "err", err)
		return
	}
	if n > 0 {
		c.Log.Info("deleted stale UDP conntrack entries", "entries", n)
	}
}

package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/model"
)

// read lists the table as the kernel holds it: chain names, affinity sets,
// and the elements of the dispatch maps. A table svcproxy cannot sync in
// place is marked foreign and replaced whole by the next sync (see apply):
// upstream kube-proxy's or one svcproxy handed over (neither has svcproxy's
// hairpin set), or one left by an older svcproxy whose base chains or set
// definitions differ from this one's (the kernel changes neither in place),
// or whose endpoints maps hold ranges of another size or grouping.
func (s *Syncer) read() (*kernelState, error) {
	if s.fake != nil {
		return s.readFake()
	}
	ks := newKernelState()
	t := s.table()
	if _, err := s.conn.read.ListTableOfFamily(TableName, t.Family); err != nil {
		if notFound(err) {
			return ks, nil
		}
		return nil, fmt.Errorf("list table: %w", err)
	}
	chains, err := s.conn.read.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	want := fixed(&model.State{}, s.Options)
	foreign := func() (*kernelState, error) {
		// Nothing of it is kept: what it holds is not read.
		ks = newKernelState()
		ks.read, ks.foreign = false, true
		return ks, nil
	}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		if c.Hooknum != nil && !slices.ContainsFunc(want.Base, func(b BaseChain) bool { return sameBaseChain(c, b) }) {
			return foreign()
		}
		ks.chains[c.Name] = true
	}
	sets, err := s.conn.read.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	// Range numbers in the kernel that no chain of this process has (left
	// by an earlier one) are not handed out until this sync deleted them.
	inUse := map[uint32]bool{}
	defer s.ranges.Reserve(inUse)
	emitter := &netlinkEmitter{table: t, v6: s.Options.IPv6}
	hairpin := false
	for _, st := range sets {
		hairpin = hairpin || st.Name == setHairpin
		if def, ok := ours(want, st.Name); ok && !sameSet(st, emitter.setFor(def)) {
			return foreign()
		}
	}
	if !hairpin {
		// Upstream's table, or svcproxy's handed over (see Release).
		return foreign()
	}
	for _, st := range sets {
		if strings.HasPrefix(st.Name, affinitySetPrefix) {
			ks.affinity[st.Name] = true
			continue
		}
		if st.Name == setNodePortIPs {
			ks.nodePortIPs = true
			continue
		}
		if st.Name == mapLocalhostReject {
			ks.localhostReject = true
		}
		if st.Anonymous {
			continue
		}
		each := func(f func(*gnft.SetElement)) error {
			return s.conn.send.eachSetElement(t.Family, TableName, st.Name, f)
		}
		switch {
		case st.Name == setHairpin:
			err = each(func(e *gnft.SetElement) {
				if a, ok := netip.AddrFromSlice(e.Key[:len(e.Key)/2]); ok {
					ks.hairpin.add(a, 0)
				}
			})
		case isEndpointMap(st.Name):
			var els []gnft.SetElement
			if err = each(func(e *gnft.SetElement) { els = append(els, *e) }); err == nil {
				for first, r := range readRanges(els, s.Options.IPv6) {
					id := first >> rangeBits
					if r.last>>rangeBits != id || endpointMap(id) != st.Name {
						// An older svcproxy's ranges (of another size, or
						// in other maps): its Service chains are replaced
						// whole, ranges with them.
						return foreign()
					}
					ks.setRange(first, r)
					inUse[id] = true
				}
				ks.endpointMaps[st.Name] = true
			}
		default:
			m := map[string]string{}
			err = each(func(e *gnft.SetElement) {
				v := ""
				if st.IsMap {
					v = verdictOf(e.VerdictData).String()
				}
				m[string(e.Key)] = v
			})
			ks.elements[st.Name] = m
		}
		if err != nil {
			return nil, err
		}
	}
	objs, err := s.conn.read.GetObjects(t)
	if err != nil {
		return nil, fmt.Errorf("list counters: %w", err)
	}
	for _, o := range objs {
		if c, ok := o.(*gnft.CounterObj); ok && c.Table.Name == TableName {
			ks.counters[c.Name] = true
		}
	}
	return ks, nil
}

// readFake is read for a fake table: only a table not yet made can be read
// (tests start from one and then sync partially).
func (s *Syncer) readFake() (*kernelState, error) {
	if s.fake.Table != nil {
		return nil, errors.New("a full sync cannot read a fake table back")
	}
	return newKernelState(), nil
}

// readRanges turns an endpoints map as the kernel lists it (each range a
// first value with its endpoint, and an end marker after its last) into
// ranges by first value.
func readRanges(els []gnft.SetElement, v6 bool) map[uint32]kernelRange {
	var ends []uint32
	for _, e := range els {
		if e.IntervalEnd && len(e.Key) == 4 {
			ends = append(ends, binary.BigEndian.Uint32(e.Key))
		}
	}
	slices.Sort(ends)
	out := map[uint32]kernelRange{}
	alen := addrLen(v6)
	for _, e := range els {
		if e.IntervalEnd || len(e.Key) != 4 || len(e.Val) < alen+2 {
			continue
		}
		first := binary.BigEndian.Uint32(e.Key)
		i, _ := slices.BinarySearch(ends, first+1)
		last := uint32(1<<32 - 1)
		if i < len(ends) {
			last = ends[i] - 1
		}
		a, _ := netip.AddrFromSlice(e.Val[:alen])
		out[first] = newKernelRange(last, netip.AddrPortFrom(a, binary.BigEndian.Uint16(e.Val[alen:alen+2])))
	}
	return out
}

// sameBaseChain says whether kernel chain c is base chain b as this
// svcproxy writes it.
func sameBaseChain(c *gnft.Chain, b BaseChain) bool {
	return c.Name == b.Name && c.Type == gnft.ChainType(b.Type) && c.Priority != nil && int(*c.Priority) == b.Priority
}

// ours is the definition this svcproxy gives the named set or map of the
// table, if the name is one of its own.
func ours(want *Ruleset, name string) (Set, bool) {
	if isEndpointMap(name) {
		return endpointMapSet(name), true
	}
	i := slices.IndexFunc(want.Sets, func(s Set) bool { return s.Name == name })
	if i < 0 {
		return Set{}, false
	}
	return want.Sets[i], true
}

// sameSet says whether the kernel's set k has the definition the kernel
// compares when a set is added again (its flags; the key type where
// google/nftables reads it back, which it does not for verdict maps); with
// another, adding it fails.
func sameSet(k, w *gnft.Set) bool {
	if k.IsMap != w.IsMap || k.Interval != w.Interval || k.Concatenation != w.Concatenation || k.HasTimeout != w.HasTimeout {
		return false
	}
	return w.DataType == gnft.TypeVerdict || k.KeyType.Name == w.KeyType.Name
}

func notFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist))
}

// Present reports whether the IPv4 table still dispatches: its nat
// prerouting hook chain exists and jumps to the services chain. An error
// other than "not found" counts as present: there is nothing to resync into.
func Present(context.Context) bool {
	c, err := gnft.New()
	if err != nil {
		return true
	}
	t := &gnft.Table{Name: TableName, Family: gnft.TableFamilyIPv4}
	rules, err := c.GetRules(t, &gnft.Chain{Name: "nat-prerouting", Table: t})
	if notFound(err) {
		return false
	}
	return err != nil || len(rules) > 0
}

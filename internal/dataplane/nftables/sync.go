package nftables

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gnft "github.com/google/nftables"
	"sigs.k8s.io/knftables"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
)

// DefaultChunkServices is how many Service ports one transaction of a large
// sync carries at first. Small transactions get the first Services
// answering within a second, and what a transaction carries is in memory
// until its commit. Every commit makes the kernel validate the whole table
// again: with endpoints in maps (few chains and rules) that stays cheap at
// 10k Services × 10 endpoints (transactions of 250 took 2.0 s and 80 MB of
// live heap at the peak, growing ones from 250 to 1,000 or 2,000 2.3 s and
// 95–108 MB), but at 100k, 400 commits of 250 each validated a table of up
// to 100k Services. So once the table holds more than chunkGrowth times a
// transaction, a transaction carries a chunkGrowth-th of what the table
// holds: the commits stay few (a logarithm of the size) and each one's
// validation is paid for by as many Services.
const DefaultChunkServices = 250

const chunkGrowth = 8

// maxChunkServices caps that growth: what a transaction carries is in
// memory until its commit (at 100k, transactions of up to 12,500 Service
// ports took the peak RSS from 610 to 900 MB). At 100k Services × 10
// endpoints, a cap of 2,000 applied them in 16.5 s, 4,000 in 15.6 s and
// 8,000 in 14.9 s; from manifests the peak RSS stayed within 40 MiB, but
// from the API server (informer caches, list pages) 4,000 peaked at
// 727–872 MiB in four runs against 691–770 in five, and 800 is the
// budget. (Measured before commits overlapped the next transaction's
// building, which holds two transactions at once: 700–794 MiB at 2,000.)
const maxChunkServices = 2000

// staleChainDelay is how long a flushed chain waits before it is deleted:
// kernels before 6.2 release a chain's last reference (a map element or an
// anonymous vmap) lazily after the transaction that removed it.
const staleChainDelay = time.Second

// Syncer applies desired states to one family's kube-proxy table.
type Syncer struct {
	Options Options
	// ChunkServices: see DefaultChunkServices (0: the default).
	ChunkServices int
	// FullSyncPeriod is how often a sync re-reads the table and rewrites
	// every chain; in between only changed Services are rewritten (0:
	// every sync is full).
	FullSyncPeriod time.Duration
	// Metrics, when set, gets every sync.
	Metrics dataplane.SyncerMetrics
	// NetNS, when not 0, is a file descriptor of the network namespace to
	// program (tests); otherwise the process's own.
	NetNS int

	// conn is the Syncer's way to the kernel; spare a second write path,
	// so that a large sync builds its next transaction while the kernel
	// commits the last (see apply).
	conn, spare *conns
	kernel      *kernelState
	lastFull    time.Time
	forceFull   atomic.Bool
	cache       map[string]*cachedPort
	cacheOpts   *Options
	// node is the last State's node: its address decides what a
	// firewall allows, and its pod range may tell pods, so the cache holds
	// only while they stay.
	node model.Node
	// recreated is set once this process has recreated the base chains
	// (so that a changed hook or priority takes effect).
	recreated bool
	stale     map[string]time.Time
	// seed keys the model fingerprints of the render cache.
	seed maphash.Seed
	// one hands the emitter one element at a time without allocating a
	// slice for each (the emitter copies what it is given).
	one [1]Element
	// ranges number the Service chains' ranges in the endpoints map.
	ranges Ranges
	// fake, when set, takes the transactions instead of the kernel
	// (tests: whole sequences of syncs without root).
	fake     *knftables.Fake
	fakeSent []string
	// last is the State of the last sync, done or not (see Release).
	last *model.State
	// synced is the Gen of the last State synced without error, items
	// what its plan made and itemAt where each of its Service ports is in
	// items (-1: the other family's). A State that differs from it only
	// in some endpoints (model.Delta) is planned from them: a sync then
	// looks at the ports that changed, not at all 10k.
	synced uint64
	items  []syncItem
	itemAt []int
}

// cachedPort is a Service port as last rendered: while the model holds the
// same Service port (spSum: its fingerprint) and the table holds what it
// rendered to, a partial sync neither renders it again nor keeps its rules
// in memory.
type cachedPort struct {
	spSum         uint64
	sum, chainSum uint64
	rules         int
	// eps are the endpoints spSum saw and epSum their fingerprint: the
	// next State mostly shares the list (States are read-only), and then
	// it need not be hashed again.
	eps   []model.Endpoint
	epSum uint64
}

// syncItem is one Service port of a sync. A sync renders it when it gets to
// it (unless cached) and keeps only its sums once it is written, so that a
// full sync of 10k Services never holds all their rules at once.
type syncItem struct {
	key string
	sp  *model.ServicePort
	at  int // sp's index in the State
	// c is the cache entry: the sums, filled in when rendered.
	c      *cachedPort
	cached bool
	// settled is set when the kernel holds the port as the last sync
	// left it, which the State left as it was: apply skips it unread.
	settled bool
}

// ForceFull makes the next sync a full one.
func (s *Syncer) ForceFull() { s.forceFull.Store(true) }

func (s *Syncer) table() *gnft.Table {
	f := gnft.TableFamilyIPv4
	if s.Options.IPv6 {
		f = gnft.TableFamilyIPv6
	}
	return &gnft.Table{Name: TableName, Family: f}
}

// Sync makes the table match st.
func (s *Syncer) Sync(ctx context.Context, st *model.State) (err error) {
	start := time.Now()
	full := s.forceFull.Swap(false) || s.kernel == nil || s.FullSyncPeriod == 0 || time.Since(s.lastFull) >= s.FullSyncPeriod
	if s.Metrics != nil {
		defer func() { s.Metrics.SyncDone(s.Family(), full, time.Since(start), err) }()
	}
	if err := s.connect(); err != nil {
		return err
	}
	s.last = st
	rs, items, delta := s.plan(st, full)
	s.synced, s.items = 0, nil // until this sync is done
	staleGone := s.deleteStale()
	var ks *kernelState
	if full {
		// The table is read afresh: the old record can go first, so that
		// the two are not in memory at once.
		s.kernel = nil
		var err error
		if ks, err = s.read(); err != nil {
			s.kernel = nil
			return fmt.Errorf("read the %s table: %w", s.tableFamily(), err)
		}
	} else {
		ks = s.kernel
	}
	if err := s.apply(ctx, rs, items, ks, delta); err != nil {
		// What the kernel holds is no longer known exactly: read it again
		// (the full sync also finds the chains to retire anew).
		s.kernel, s.stale = nil, nil
		return err
	}
	s.kernel = ks
	if full {
		s.lastFull = time.Now()
		// The ranges an earlier process left are deleted by now.
		s.ranges.Reserve(nil)
	}
	// Ranges of chains the table no longer has (deleted with their
	// elements gone before) are free again. Chains go only in a full
	// sync, with a Service port or once stale.
	if !delta || staleGone {
		s.ranges.Keep(func(c string) bool { return ks.chains[c] })
	}
	s.synced, s.items = st.Gen, items
	return nil
}

// plan renders the table's fixed part and lists the Service ports, marking
// those that did not change since the last sync (unless full) as cached.
// delta is set when it planned from the last sync's items (see synced).
func (s *Syncer) plan(st *model.State, full bool) (rs *Ruleset, items []syncItem, delta bool) {
	sameOpts := s.cacheOpts != nil && sameOptions(*s.cacheOpts, s.Options)
	if changed, ok := st.ChangedSince(s.synced); ok && !full && sameOpts && s.kernel != nil {
		// The State synced last again (a periodic sync), or one that
		// follows it.
		return fixed(st, s.Options), s.planDelta(st, changed), true
	}
	if full || !sameOpts || !slices.Equal(s.node.IPs, st.Node.IPs) || !slices.Equal(s.node.PodCIDRs, st.Node.PodCIDRs) {
		s.cache = nil
	}
	s.node = st.Node
	if s.seed == (maphash.Seed{}) {
		s.seed = maphash.MakeSeed()
	}
	next := make(map[string]*cachedPort, len(st.Services))
	items = make([]syncItem, 0, len(st.Services))
	s.itemAt = slices.Grow(s.itemAt[:0], len(st.Services))
	for i := range st.Services {
		sp := st.Services[i]
		if sp.ClusterIP.Is6() != s.Options.IPv6 {
			s.itemAt = append(s.itemAt, -1)
			continue
		}
		it := syncItem{key: sp.Name.String() + "/" + string(sp.Protocol), sp: sp, at: i}
		s.check(&it, s.cache[it.key])
		next[it.key] = it.c
		s.itemAt = append(s.itemAt, len(items))
		items = append(items, it)
	}
	s.cache = next
	opts := s.Options
	s.cacheOpts = &opts
	return fixed(st, s.Options), items, false
}

// planDelta is plan for a State that differs from the last one synced
// only in the endpoints of the ports at the indices changed: the last
// sync's items point into st, the changed ones are checked again, the
// rest settled.
func (s *Syncer) planDelta(st *model.State, changed []int) []syncItem {
	items := s.items
	for j := range items {
		items[j].sp, items[j].settled = st.Services[items[j].at], true
	}
	for _, i := range changed {
		j := s.itemAt[i]
		if j < 0 {
			continue
		}
		it := &items[j]
		it.settled = false
		s.check(it, it.c)
		s.cache[it.key] = it.c
	}
	return items
}

// check fills in it.c and it.cached, given the cache entry c of the
// port's last sync (nil: none): the entry stays while the port's
// fingerprint and what the kernel holds for it are the same.
func (s *Syncer) check(it *syncItem, c *cachedPort) {
	sp := it.sp
	var epSum uint64
	if c != nil && model.SameEndpoints(c.eps, sp.Endpoints) {
		epSum = c.epSum
	} else {
		epSum = model.EndpointsFingerprint(s.seed, sp.Endpoints)
	}
	spSum := sp.FingerprintWith(s.seed, epSum)
	it.cached = c != nil && c.spSum == spSum && s.kernel != nil && s.kernel.services[it.key].sum == c.sum
	if !it.cached {
		c = &cachedPort{spSum: spSum, eps: sp.Endpoints, epSum: epSum}
	}
	it.c = c
}

func (s *Syncer) tableFamily() string { return ipWord(s.Options.IPv6) }

// Family is "IPv4" or "IPv6".
func (s *Syncer) Family() string { return dataplane.FamilyName(s.Options.IPv6) }

// apply sends the transactions that take the table from ks to rs and the
// Service ports in items, and updates ks to match.
func (s *Syncer) apply(ctx context.Context, rs *Ruleset, items []syncItem, ks *kernelState, delta bool) error {
	per := s.ChunkServices
	if per <= 0 {
		per = DefaultChunkServices
	}
	b := s.newEmitter()
	if ks.foreign {
		// Another proxy's table (a takeover from upstream kube-proxy):
		// deleted and written anew in one transaction, so that no Service
		// is without rules at any moment. Its base chains' priorities and
		// its maps' types cannot be changed in place.
		b.deleteTable()
		ks.foreign = false
		per = math.MaxInt
	}
	fixedSum := fixedFingerprint(rs)
	if ks.fixed != fixedSum {
		s.writeFixed(b, rs, ks)
	}
	sets := map[string]Set{}
	for _, st := range rs.Sets {
		sets[st.Name] = st
	}
	for m := range ks.endpointMaps {
		sets[m] = endpointMapSet(m)
	}
	inChunk := 0
	// A transaction is committed while the next one is built, on the
	// other write path: at 100k Services the first sync's 50 commits took
	// 12.8 s of 16.6 s, nearly all the rest building what came next. One
	// commit is in flight at most, and a transaction is sent only once
	// the one before it was accepted.
	paths := [2]*conns{s.conn, s.spare}
	var inflight chan error
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight = nil
		return err
	}
	defer func() { _ = wait() }()
	commit := func(what string, last bool) error {
		n := b.ops()
		if err := ctx.Err(); err != nil {
			b.discard()
			return err
		}
		if err := wait(); err != nil {
			b.discard() // built on what the kernel refused
			return err
		}
		if n == 0 {
			return nil
		}
		tx, done := b, make(chan error, 1)
		go func() {
			if err := tx.commit(); err != nil {
				done <- fmt.Errorf("apply %s (%d operations): %w", what, n, err)
				return
			}
			done <- nil
		}()
		inflight, inChunk = done, 0
		if last {
			return wait()
		}
		paths[0], paths[1] = paths[1], paths[0]
		b = s.emitterOn(paths[0])
		return nil
	}
	for i := range items {
		it := &items[i]
		if it.settled {
			continue
		}
		rec, had := ks.services[it.key]
		if it.cached && had && rec.sum == it.c.sum {
			continue
		}
		svc := servicePort(it.sp, s.node, s.Options, &s.ranges)
		svc.fingerprint(rs.IPv6)
		it.c.sum, it.c.chainSum, it.c.rules = svc.sum, svc.chainSum, svc.rules
		if had && rec.sum == svc.sum {
			continue
		}
		// Endpoints maps first, then chains (their rules use the maps),
		// then elements (map elements jump to the chains).
		for _, e := range svc.Elements {
			if isEndpointMap(e.Set) && !ks.endpointMaps[e.Set] {
				sets[e.Set] = endpointMapSet(e.Set)
				b.addSet(sets[e.Set])
				ks.endpointMaps[e.Set] = true
			}
		}
		if !had || rec.chainSum != svc.chainSum {
			s.writeService(b, &svc, ks, rec)
		}
		s.writeElements(b, &svc, sets, ks, rec)
		inChunk++
		if inChunk >= per {
			if err := commit("Services", false); err != nil {
				return err
			}
			per = max(per, min(len(ks.services)/chunkGrowth, maxChunkServices))
		}
	}
	// Services gone (the plan's cache has every Service port of this
	// sync): their elements, chains and affinity sets. A delta's State has
	// the last one's ports.
	if !delta {
		for key, rec := range ks.services {
			if s.cache[key] == nil {
				for _, c := range rec.chains {
					s.retire(b, c, ks)
				}
				for _, a := range rec.sets {
					s.retireSet(a)
				}
				s.release(b, rec.elements, nil, sets, ks)
				s.sweepBlocks(b, rec.blocks, nil, ks)
				s.releaseHairpin(b, rec.hairpin, sets, ks)
				delete(ks.services, key)
			}
		}
	}
	s.removeOrphans(b, ks, sets)
	if err := commit("removals", true); err != nil {
		return err
	}
	ks.fixed = fixedSum
	return nil
}

// removeOrphans queues the removal of elements, chains and affinity sets
// in the kernel that no Service owns: left by an earlier process or a
// failed sync. Only a full sync, which read the table, can find them.
func (s *Syncer) removeOrphans(b emitter, ks *kernelState, sets map[string]Set) {
	if !ks.read {
		return
	}
	ks.read = false
	var gone []string
	ownedBlocks := map[uint32]bool{}
	for _, rec := range ks.services {
		for _, block := range rec.blocks {
			ownedBlocks[block] = true
		}
	}
	var unowned []uint32
	for block := range ks.blocks {
		if !ownedBlocks[block] {
			unowned = append(unowned, block)
		}
	}
	s.sweepBlocks(b, unowned, nil, ks)
	for _, a := range ks.hairpin.unclaimed() {
		s.deleteHairpin(b, a, sets)
	}
	for set, els := range ks.elements {
		if _, ok := sets[set]; ok && set != setNodePortIPs {
			for k := range els {
				if ks.wanted[set+"\x00"+k] == 0 {
					gone = append(gone, set+"\x00"+k)
				}
			}
		}
	}
	s.release(b, gone, nil, sets, ks)
	owned := map[string]bool{}
	for _, rec := range ks.services {
		for _, c := range rec.chains {
			owned[c] = true
		}
		for _, a := range rec.sets {
			owned[a] = true
		}
	}
	for c := range ks.chains {
		if isServiceChain(c) && !owned[c] {
			if _, waiting := s.stale[c]; !waiting {
				s.retire(b, c, ks)
			}
		}
	}
	for a := range ks.affinity {
		if !owned[a] {
			b.deleteSet(Set{Name: a})
			delete(ks.affinity, a)
		}
	}
}

// newEmitter starts a transaction: on the kernel, or on the fake in tests.
func (s *Syncer) newEmitter() emitter { return s.emitterOn(s.conn) }

// emitterOn starts a transaction on c (ignored with the fake).
func (s *Syncer) emitterOn(c *conns) emitter {
	if s.fake != nil {
		return newFakeEmitter(s.fake, s.Options.IPv6, &s.fakeSent)
	}
	return &netlinkEmitter{conn: c, table: s.table(), v6: s.Options.IPv6}
}

// connect opens the netlink sockets (not with a fake).
func (s *Syncer) connect() error {
	if s.conn != nil || s.fake != nil {
		return nil
	}
	c, err := newConns(s.NetNS)
	if err != nil {
		return err
	}
	spare, err := newWritePath(s.NetNS)
	if err != nil {
		c.send.nl.Close()
		c.read.CloseLasting()
		return err
	}
	s.conn, s.spare = c, spare
	return nil
}

// writeFixed (re)writes the table, its hooks, fixed chains and sets.
func (s *Syncer) writeFixed(b emitter, rs *Ruleset, ks *kernelState) {
	b.addTable()
	for _, bc := range rs.Base {
		if !s.recreated && ks.chains[bc.Name] {
			// A base chain's hook and priority cannot be changed in place.
			b.deleteChain(bc.Name)
		}
		b.addBaseChain(bc)
		b.flushChain(bc.Name)
		ks.chains[bc.Name] = true
	}
	s.recreated = true
	wantNodePortIPs := false
	for _, st := range rs.Sets {
		b.addSet(st)
		if st.Name == setNodePortIPs {
			wantNodePortIPs = true
			b.flushSet(st)
			if len(st.Elements) > 0 {
				b.addElements(st, st.Elements)
			}
		}
	}
	s.addCounters(b, rs, ks)
	for _, c := range rs.Fixed {
		b.addChain(c.Name)
		b.flushChain(c.Name)
		ks.chains[c.Name] = true
		delete(s.stale, c.Name)
	}
	for _, c := range rs.Fixed {
		b.addRules(c.Name, c.Rules)
	}
	for _, bc := range rs.Base {
		b.addRules(bc.Name, bc.Rules)
	}
	// The services chain, just rewritten, no longer uses it.
	if ks.nodePortIPs && !wantNodePortIPs {
		b.deleteSet(Set{Name: setNodePortIPs})
	}
	ks.nodePortIPs = wantNodePortIPs
	s.retireLocalhostRejects(b, rs, ks)
}

// addCounters adds the named counters, before the rules that use them.
func (s *Syncer) addCounters(b emitter, rs *Ruleset, ks *kernelState) {
	for _, c := range rs.Counters {
		delete(s.stale, c)
		if !ks.counters[c] {
			b.addCounter(c)
			ks.counters[c] = true
		}
	}
}

// retireLocalhostRejects retires the localhost NodePort reject chains no
// longer wanted (a protocol now served, or the gate turned off) with their
// counters. Without any, the reject map goes too (the
// nodeport-endpoints-check chain, just rewritten, no longer looks into
// it), with its elements.
func (s *Syncer) retireLocalhostRejects(b emitter, rs *Ruleset, ks *kernelState) {
	want, fixed := map[string]bool{}, map[string]bool{}
	for _, c := range rs.Counters {
		want[c] = true
	}
	for _, c := range rs.Fixed {
		fixed[c.Name] = true
	}
	for c := range ks.chains {
		if strings.HasPrefix(c, localhostRejectChainPre) && !fixed[c] {
			s.retire(b, c, ks)
		}
	}
	for c := range ks.counters {
		if !want[c] {
			s.retireLater(c)
		}
	}
	wantMap := len(rs.Counters) > 0
	if ks.localhostReject && !wantMap {
		b.deleteSet(Set{Name: mapLocalhostReject, IsMap: true})
		delete(ks.elements, mapLocalhostReject)
	}
	ks.localhostReject = wantMap
}

func hookOf(h string) gnft.ChainHook {
	switch h {
	case "prerouting":
		return *gnft.ChainHookPrerouting
	case "input":
		return *gnft.ChainHookInput
	case "forward":
		return *gnft.ChainHookForward
	case "output":
		return *gnft.ChainHookOutput
	default:
		return *gnft.ChainHookPostrouting
	}
}

// writeService rewrites a Service's chains and affinity sets; the record's
// sum and elements are writeElements' to set, which always follows.
func (s *Syncer) writeService(b emitter, svc *Service, ks *kernelState, old serviceRecord) {
	rec := serviceRecord{chainSum: svc.chainSum}
	for _, a := range svc.AffinitySets {
		b.addSet(a)
		ks.affinity[a.Name] = true
		rec.sets = append(rec.sets, a.Name)
	}
	for _, c := range svc.Chains {
		b.addChain(c.Name)
		if ks.chains[c.Name] {
			b.flushChain(c.Name)
		}
		ks.chains[c.Name] = true
		delete(s.stale, c.Name)
		rec.chains = append(rec.chains, c.Name)
	}
	for _, c := range svc.Chains {
		b.addRules(c.Name, c.Rules)
	}
	// Chains the Service no longer needs (an endpoint gone).
	keep := map[string]bool{}
	for _, c := range rec.chains {
		keep[c] = true
	}
	for _, c := range old.chains {
		if !keep[c] {
			s.retire(b, c, ks)
		}
	}
	for _, a := range old.sets {
		if !slices.Contains(rec.sets, a) {
			s.retireSet(a)
		}
	}
	ks.services[svc.Key] = rec
}

// writeElements adds the Service's map elements that the table lacks or
// holds with another value, and lets go of the ones it no longer has. All
// deletions come first: a range of the endpoints map ends where the next
// one starts, and an end marker deleted after being added again would take
// the new range's end with it.
func (s *Syncer) writeElements(b emitter, svc *Service, sets map[string]Set, ks *kernelState, old serviceRecord) {
	rec := ks.services[svc.Key]
	rec.sum = svc.sum
	rec.elements, rec.blocks = rec.elements[:0:0], rec.blocks[:0:0]
	hairpins := 0
	for _, e := range svc.Elements {
		if e.Set == setHairpin {
			hairpins++
		}
	}
	rec.hairpin = make(packedAddrs, 0, hairpins*addrLen(s.Options.IPv6))
	// An element to add: svc.Elements[i], and its key and value as the
	// kernel state records them. Kept small, as a first sync at 100k makes
	// a million.
	type change struct {
		i    int
		k, v string
	}
	adds := make([]change, 0, len(svc.Elements))
	desired := map[uint32]kernelRange{} // the endpoints maps' elements
	for i, e := range svc.Elements {
		st := sets[e.Set]
		if e.Set == setHairpin {
			rec.hairpin, _ = e.Addr.AppendBinary(rec.hairpin)
			if ks.hairpin.add(e.Addr, 1) {
				adds = append(adds, change{i: i})
			}
			continue
		}
		if st.Endpoints {
			r := rangeOf(e.Element)
			desired[e.Slots[0]] = r
			if block := e.Slots[0] >> rangeBits; !slices.Contains(rec.blocks, block) {
				rec.blocks = append(rec.blocks, block)
			}
			if cur, ok := ks.rangeAt(e.Slots[0]); !ok || cur != r {
				adds = append(adds, change{i: i})
			}
			continue
		}
		k := string(elementKey(st.Keys, e.Element))
		ref := e.Set + "\x00" + k
		rec.elements = append(rec.elements, ref)
		ks.wanted[ref]++
		v := kernelValue(st, e.Element)
		cur, ok := ks.elements[e.Set][k]
		if ok && cur == v {
			continue
		}
		if ok {
			deleteElement(b, st, k, ks, s.Options.IPv6)
		}
		adds = append(adds, change{i, k, v})
	}
	// Whatever else the kernel holds in this Service's blocks of the
	// endpoints maps, now or before (a range that changed, one left by an
	// earlier process or unknown after a failed sync, or of a chain it no
	// longer has), goes before any range is added there.
	s.sweepBlocks(b, append(slices.Clone(rec.blocks), old.blocks...), desired, ks)
	for _, block := range rec.blocks {
		// Room for the block's ranges at once: grown one by one, its slice
		// would take up to twice what they need.
		n := 0
		for first := range desired {
			if first>>rangeBits == block {
				n++
			}
		}
		if rs := ks.blocks[block]; cap(rs) < n {
			ks.blocks[block] = slices.Grow(rs, n-len(rs))
		}
	}
	s.release(b, old.elements, rec.elements, sets, ks)
	s.releaseHairpin(b, old.hairpin, sets, ks)
	for _, a := range adds {
		e := &svc.Elements[a.i]
		st := sets[e.Set]
		s.one[0] = e.Element
		b.addElements(st, s.one[:])
		if st.Name == setHairpin {
			continue // recorded above
		}
		if st.Endpoints {
			ks.setRange(e.Slots[0], rangeOf(e.Element))
			continue
		}
		if ks.elements[st.Name] == nil {
			ks.elements[st.Name] = map[string]string{}
		}
		ks.elements[st.Name][a.k] = a.v
	}
	ks.services[svc.Key] = rec
}

// releaseHairpin drops one claim on each address and deletes from the
// hairpin set those nobody wants any more.
func (s *Syncer) releaseHairpin(b emitter, addrs packedAddrs, sets map[string]Set, ks *kernelState) {
	addrs.each(s.Options.IPv6, func(a netip.Addr) {
		if ks.hairpin.release(a) {
			s.deleteHairpin(b, a, sets)
		}
	})
}

func (s *Syncer) deleteHairpin(b emitter, a netip.Addr, sets map[string]Set) {
	b.deleteElements(sets[setHairpin], []Element{{Addr: a}})
}

// sweepBlocks deletes the ranges the kernel holds in these blocks of the
// endpoints maps unless keep has them as they are.
func (s *Syncer) sweepBlocks(b emitter, blocks []uint32, keep map[uint32]kernelRange, ks *kernelState) {
	for _, block := range blocks {
		for _, r := range slices.Clone(ks.blocks[block]) {
			if keep[r.first] != r.kernelRange() {
				b.deleteElements(endpointMapSet(endpointMap(block)), []Element{{Slots: [2]uint32{r.first, r.last}}})
				ks.unsetRange(r.first)
			}
		}
	}
}

// release drops one claim on each of refs ("set\x00key") except those in
// keep, and deletes the elements nobody claims any more.
func (s *Syncer) release(b emitter, refs, keep []string, sets map[string]Set, ks *kernelState) {
	kept := map[string]bool{}
	for _, r := range keep {
		kept[r] = true
	}
	for _, ref := range refs {
		if kept[ref] {
			// Claimed again by the same Service above.
			ks.wanted[ref]--
			continue
		}
		if ks.wanted[ref] > 0 {
			ks.wanted[ref]--
		}
		if ks.wanted[ref] > 0 {
			continue
		}
		delete(ks.wanted, ref)
		set, k, _ := strings.Cut(ref, "\x00")
		if _, ok := ks.elements[set][k]; !ok {
			continue
		}
		deleteElement(b, sets[set], k, ks, s.Options.IPv6)
	}
}

// deleteElement queues the deletion of the element with key k from a set
// or map other than the endpoints maps and the hairpin set, and records it.
func deleteElement(b emitter, st Set, k string, ks *kernelState, v6 bool) {
	b.deleteElements(st, []Element{decodeKey(st.Keys, []byte(k), v6)})
	delete(ks.elements[st.Name], k)
}

// retire empties a chain now and deletes it in a later sync.
func (s *Syncer) retire(b emitter, c string, ks *kernelState) {
	if !ks.chains[c] {
		return
	}
	b.flushChain(c)
	s.retireLater(c)
}

// retireSet deletes an affinity set in a later sync, with the endpoint
// chain whose rule used it (emptied now).
func (s *Syncer) retireSet(name string) { s.retireLater(name) }

func (s *Syncer) retireLater(name string) {
	if s.stale == nil {
		s.stale = map[string]time.Time{}
	}
	s.stale[name] = time.Now()
}

// FollowUp is how soon the chains this syncer just emptied may be deleted:
// the sync loop then syncs again, so that they do not linger until the next
// periodic sync (see proxy.FollowUp). 0 when there are none. Chains whose
// deletion already failed (the kernel still held a reference) wait for the
// next sync that comes anyway.
func (s *Syncer) FollowUp() time.Duration {
	var soonest time.Duration
	for _, t := range s.stale {
		age := time.Since(t)
		if age >= 2*staleChainDelay {
			continue
		}
		// A little past the delay, so that the chain is due by then.
		d := max(staleChainDelay-age, 0) + 100*time.Millisecond
		if soonest == 0 || d < soonest {
			soonest = d
		}
	}
	return soonest
}

// deleteStale deletes the chains retired long enough ago, in a transaction
// of its own: if the kernel still holds a reference, the chain waits for
// the next sync and nothing else fails. It reports whether it deleted
// any.
func (s *Syncer) deleteStale() bool {
	if len(s.stale) == 0 || s.kernel == nil {
		return false
	}
	b := s.newEmitter()
	var gone []string
	for c, t := range s.stale {
		if time.Since(t) >= staleChainDelay {
			switch {
			case strings.HasPrefix(c, affinitySetPrefix):
				b.deleteSet(Set{Name: c})
			case s.kernel.counters[c]:
				b.deleteCounter(c)
			default:
				b.deleteChain(c)
			}
			gone = append(gone, c)
		}
	}
	if len(gone) == 0 {
		return false
	}
	if err := b.commit(); err != nil {
		// Kept in s.stale, they are tried again at the next sync.
		if s.Metrics != nil {
			s.Metrics.CleanupFailed(s.Family())
		}
		return false
	}
	for _, c := range gone {
		delete(s.stale, c)
		delete(s.kernel.chains, c)
		delete(s.kernel.affinity, c)
		delete(s.kernel.counters, c)
	}
	return true
}

// Cleanup deletes the table. It reports whether there was one.
func (s *Syncer) Cleanup(context.Context) (bool, error) {
	if err := s.connect(); err != nil {
		return false, err
	}
	if s.fake != nil {
		if s.fake.Table == nil {
			return false, nil
		}
	} else if _, err := s.conn.read.ListTableOfFamily(TableName, s.table().Family); notFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look for table %s %s: %w", s.tableFamily(), TableName, err)
	}
	b := s.newEmitter()
	b.deleteTable()
	if err := b.commit(); err != nil {
		return false, fmt.Errorf("delete table %s %s: %w", s.tableFamily(), TableName, err)
	}
	s.kernel = nil
	return true, nil
}

func sameOptions(a, b Options) bool { return reflect.DeepEqual(a, b) }

package nftables

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
)

// fakeSyncer syncs into knftables' Fake instead of the kernel.
func fakeSyncer(opts Options) *Syncer {
	return &Syncer{Options: opts, fake: knftables.NewFake(family(opts.IPv6), TableName), FullSyncPeriod: time.Hour}
}

// freshDump is what rendering st anew puts in a table, with the syncer's
// numbering of the endpoint ranges.
func freshDump(t *testing.T, s *Syncer, st *model.State) string {
	t.Helper()
	f := knftables.NewFake(family(s.Options.IPv6), TableName)
	tx := f.NewTransaction()
	renderWith(st, s.Options, &s.ranges).Transaction(tx)
	if err := f.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	return f.Dump()
}

// dumpDiff compares a synced table's dump with a fresh one and returns the
// lines that differ, leaving out what a sync keeps on purpose: the chains,
// affinity sets and counters it retired (emptied now, deleted a second
// later), and endpoints maps (kept while the table is, as their range
// numbers are).
func dumpDiff(s *Syncer, synced, fresh string) []string {
	inFresh := map[string]bool{}
	for _, l := range strings.Split(fresh, "\n") {
		inFresh[l] = true
	}
	var diff []string
	seen := map[string]bool{}
	for _, l := range strings.Split(synced, "\n") {
		seen[l] = true
		if inFresh[l] {
			continue
		}
		if f := strings.Fields(l); len(f) >= 5 && f[0] == "add" {
			_, retired := s.stale[f[4]]
			if retired && (f[1] == "chain" || f[1] == "set" || f[1] == "counter") || f[1] == "map" && strings.HasPrefix(f[4], endpointMapPrefix) {
				continue
			}
		}
		diff = append(diff, "+ "+l)
	}
	for l := range inFresh {
		if !seen[l] {
			diff = append(diff, "- "+l)
		}
	}
	slices.Sort(diff)
	return diff
}

// Without root: every behaviour state synced after the one before it
// (partial syncs, forwards and backwards) leaves the table as a fresh
// render of that state.
func TestPartialSyncsEndAsAFreshRender(t *testing.T) {
	var cases []dptest.Case
	for _, c := range dptest.Behaviours() {
		if !c.Opts.IPv6 {
			cases = append(cases, c)
		}
	}
	s := fakeSyncer(cases[0].Opts)
	for i := 0; i < 2*len(cases); i++ {
		c := cases[i%len(cases)]
		if i >= len(cases) {
			c = cases[2*len(cases)-1-i]
		}
		st := c.State(t)
		s.Options = c.Opts
		if err := s.Sync(context.Background(), &st); err != nil {
			t.Fatalf("step %d (%s): %v", i, c.Name, err)
		}
		if d := dumpDiff(s, s.fake.Dump(), freshDump(t, s, &st)); len(d) > 0 {
			t.Fatalf("step %d (%s): the synced table differs from a fresh render (+ synced, - fresh):\n%s", i, c.Name, strings.Join(d, "\n"))
		}
	}
}

// An endpoint change is a change of map and set elements only: the kernel
// commits those without validating the table again.
func TestEndpointChangeSendsElementsOnly(t *testing.T) {
	s := fakeSyncer(Options{ClusterCIDR: podCIDR})
	steps := []model.State{
		{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80)), dns(dptest.Ep("10.244.0.20", 53))}},
		{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.12", 80)), dns(dptest.Ep("10.244.0.20", 53))}},
		{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.12", 80), dptest.Remote("10.244.1.13", 80)), dns(dptest.Ep("10.244.0.20", 53))}},
		{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.12", 8080)), dns(dptest.Ep("10.244.0.20", 53))}},
	}
	for i, st := range steps {
		s.fakeSent = nil
		if err := s.Sync(context.Background(), &st); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if d := dumpDiff(s, s.fake.Dump(), freshDump(t, s, &st)); len(d) > 0 {
			t.Fatalf("step %d: the synced table differs from a fresh render (+ synced, - fresh):\n%s", i, strings.Join(d, "\n"))
		}
		if i == 0 {
			continue
		}
		if len(s.fakeSent) == 0 {
			t.Errorf("step %d: an endpoint change sent nothing", i)
		}
		for _, op := range s.fakeSent {
			if !strings.HasPrefix(op, "add element") && !strings.HasPrefix(op, "delete element") {
				t.Errorf("step %d: an endpoint change sent %q, not only element operations", i, op)
			}
		}
	}
}

// States a Builder made one after another say which ports' endpoints
// changed (model.Delta): a sync planned from that alone leaves the table
// as a fresh render, as the ports' rules and chains change shape (no
// endpoints, endpoints again, another port), and after a State that does
// not follow the one synced last; the same State synced again sends
// nothing.
func TestDeltaSyncsEndAsAFreshRender(t *testing.T) {
	s := fakeSyncer(Options{ClusterCIDR: podCIDR})
	webs := [][]model.Endpoint{
		{dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80)},
		{dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.12", 80)},
		nil,
		{dptest.Remote("10.244.1.13", 80)},
		{dptest.Ep("10.244.0.12", 8080)},
		{dptest.Ep("10.244.0.12", 8080), dptest.Ep("10.244.0.14", 8080)},
	}
	dnsEps := []model.Endpoint{dptest.Ep("10.244.0.20", 53)}
	var prev *model.State
	for i, eps := range webs {
		st := &model.State{Services: []*model.ServicePort{web(eps...), dns(dnsEps...)}, Gen: uint64(i + 1)}
		st.Services[1].Endpoints = dnsEps
		if prev != nil {
			st.Since = &model.Delta{Gen: prev.Gen, Changed: []int{0}}
			st.Services[1] = prev.Services[1]
		}
		if i == 4 {
			// Not the State after the last one synced: planned in full.
			st.Gen, st.Since.Gen = 10, 9
		}
		if err := s.Sync(context.Background(), st); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if s.synced != st.Gen {
			t.Errorf("step %d: synced %d, want %d", i, s.synced, st.Gen)
		}
		if d := dumpDiff(s, s.fake.Dump(), freshDump(t, s, st)); len(d) > 0 {
			t.Fatalf("step %d: the synced table differs from a fresh render (+ synced, - fresh):\n%s", i, strings.Join(d, "\n"))
		}
		// The same State again (a periodic sync) has nothing to send.
		s.fakeSent = nil
		if err := s.Sync(context.Background(), st); err != nil || len(s.fakeSent) > 0 {
			t.Errorf("step %d: syncing the same State again sent %q (err %v)", i, s.fakeSent, err)
		}
		prev = st
	}
}

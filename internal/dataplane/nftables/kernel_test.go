package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcproxy/svcproxy/internal/dataplane/dptest"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

var nsCount atomic.Int32

// goldenCase is a state of the shared behaviour table, for the kernel.
type goldenCase struct {
	name  string
	state model.State
	opts  Options
}

func goldenCases(t *testing.T) []goldenCase {
	var out []goldenCase
	for _, c := range dptest.Behaviours() {
		out = append(out, goldenCase{c.Name, c.State(t), c.Opts})
	}
	return out
}

// kernelNS makes a throwaway network namespace and returns an fd for it and
// a function that runs a command inside it.
func kernelNS(t *testing.T) (int, func(args ...string) (string, error)) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
			t.Fatal("real-kernel tests need root")
		}
		t.Skip("real-kernel tests need root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("SVCPROXY_E2E_REQUIRED") != "" {
			t.Fatal("nft is not installed (make deps)")
		}
		t.Skip("nft is not installed")
	}
	name := fmt.Sprintf("svpnft%d-%d-%s", os.Getpid()%100000, nsCount.Add(1), strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	run := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
		return string(out), err
	}
	return fd, run
}

// listed parses what the kernel holds, as nft lists it.
func listed(t *testing.T, run func(...string) (string, error), v6 bool) *netfilter.NftRuleset {
	t.Helper()
	out, err := run("nft", "list", "table", ipWord(v6), TableName)
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	rs, err := netfilter.ParseNft(out)
	if err != nil {
		t.Fatalf("parse nft list output: %v\n%s", err, out)
	}
	return rs
}

// sameTable compares two parsed tables: chains with their rules (in order)
// and set elements (in any order). retiredOK allows extra empty chains:
// chains a sync retired, which are deleted by a sync a second later (and
// extra sets: affinity sets retired with them).
func sameTable(want, got *netfilter.NftTable, retiredOK bool) []string {
	var diffs []string
	for _, c := range want.Chains {
		g := got.Chain(c.Name)
		if g == nil {
			diffs = append(diffs, "missing chain "+c.Name)
			continue
		}
		if c.Hook != g.Hook || c.Priority != g.Priority {
			diffs = append(diffs, fmt.Sprintf("chain %s: hook %s %d, kernel has %s %d", c.Name, c.Hook, c.Priority, g.Hook, g.Priority))
		}
		for i := 0; i < len(c.Rules) || i < len(g.Rules); i++ {
			var a, b string
			if i < len(c.Rules) {
				a = c.Rules[i].Text
			}
			if i < len(g.Rules) {
				b = g.Rules[i].Text
			}
			if a != b {
				diffs = append(diffs, fmt.Sprintf("chain %s rule %d:\n  rendered %s\n  kernel   %s", c.Name, i, a, b))
			}
		}
	}
	for _, c := range got.Chains {
		if want.Chain(c.Name) == nil && (len(c.Rules) > 0 || !retiredOK) {
			diffs = append(diffs, fmt.Sprintf("extra chain %s (%d rules)", c.Name, len(c.Rules)))
		}
	}
	for name, s := range want.Sets {
		g := got.Sets[name]
		if g == nil {
			diffs = append(diffs, "missing set "+name)
			continue
		}
		if a, b := elementSet(s), elementSet(g); a != b {
			diffs = append(diffs, fmt.Sprintf("set %s:\n  rendered %s\n  kernel   %s", name, a, b))
		}
	}
	for name := range got.Sets {
		if want.Sets[name] == nil && !retiredOK {
			diffs = append(diffs, "extra set "+name)
		}
	}
	return diffs
}

func elementSet(s *netfilter.NftSet) string {
	var out []string
	for _, e := range s.Elements {
		out = append(out, strings.Join(e.Key, " . ")+" : "+strings.Join(e.Verdict, " "))
	}
	sort.Strings(out)
	// The rendered listing names an element once per Service that wants
	// it (two on one address); the kernel holds it once.
	return strings.Join(slices.Compact(out), ", ")
}

// What svcproxy renders is what the kernel holds after the apply layer has
// sent it over netlink: the goldens, the tracer and `svcproxy rules` all
// describe the real table. Then the partial path: every change between
// the golden states, applied incrementally, ends where a fresh full sync
// would.
func TestKernelHoldsTheRenderedRuleset(t *testing.T) {
	fd, run := kernelNS(t)
	ctx := context.Background()
	syncers := map[bool]*Syncer{}
	cases := goldenCases(t)
	// Forwards, then backwards: every step is a partial sync from the
	// previous state (Services, endpoints and node options change).
	for i := 0; i < 2*len(cases); i++ {
		tc := cases[i%len(cases)]
		if i >= len(cases) {
			tc = cases[2*len(cases)-1-i]
		}
		v6 := tc.opts.IPv6
		s := syncers[v6]
		if s == nil {
			s = &Syncer{NetNS: fd, FullSyncPeriod: time.Hour}
			syncers[v6] = s
		}
		s.Options = tc.opts
		if err := s.Sync(ctx, &tc.state); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// Rendered with the syncer's numbering of the endpoint ranges,
		// which depends on the Services it has seen.
		want, err := netfilter.ParseNft(renderWith(&tc.state, tc.opts, &s.ranges).List())
		if err != nil {
			t.Fatal(err)
		}
		if d := sameTable(want.Tables[0], listed(t, run, v6).Tables[0], true); len(d) > 0 {
			t.Errorf("step %d, %s: the kernel differs from the rendered ruleset:\n%s", i, tc.name, strings.Join(d, "\n"))
		}
		// What a full sync (another process's, here) reads back is what
		// the syncer recorded it wrote: map verdicts, endpoint ranges,
		// hairpin addresses and chains.
		if d := sameRecord(readBack(t, fd, tc.opts), s.kernel); len(d) > 0 {
			t.Errorf("step %d, %s: the table read back differs from the syncer's record:\n%s", i, tc.name, strings.Join(d, "\n"))
		}
	}
	// The syncer asks for a sync when its retired chains are due, and that
	// sync deletes them.
	s := syncers[false]
	tc := cases[0]
	s.Options = tc.opts
	if s.FollowUp() <= 0 {
		t.Fatal("no follow-up sync asked for with chains retired")
	}
	// As the sync loop does: sync again when asked (chains retired at
	// different times fall due one after another).
	for i := 0; s.FollowUp() > 0; i++ {
		if wait := s.FollowUp(); i == 3 || wait > staleChainDelay+200*time.Millisecond {
			t.Fatalf("follow-up %d in %s", i, wait)
		}
		time.Sleep(s.FollowUp())
		if err := s.Sync(ctx, &tc.state); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := netfilter.ParseNft(renderWith(&tc.state, tc.opts, &s.ranges).List())
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], false); len(d) > 0 {
		t.Errorf("retired chains must be gone after the follow-up sync:\n%s", strings.Join(d, "\n"))
	}
}

// A transaction the kernel refuses changes nothing: the previous rules stay
// whole, the error says what failed, and the next sync (a full one, as the
// table is no longer known) repairs the table.
func TestFailedTransactionChangesNothing(t *testing.T) {
	fd, run := kernelNS(t)
	ctx := context.Background()
	opts := Options{ClusterCIDR: podCIDR}
	a := model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80)), dns(dptest.Ep("10.244.0.20", 53))}}
	s := &Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour}
	if err := s.Sync(ctx, &a); err != nil {
		t.Fatal(err)
	}
	before := listed(t, run, false)
	// Someone removes an element behind svcproxy's back; the next partial
	// sync deletes it too (the Service is gone) and the kernel refuses.
	if out, err := run("nft", "delete", "element", "ip", TableName, "service-ips", "{ 10.96.0.53 . udp . 53 }"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b := model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.12", 80))}}
	err := s.Sync(ctx, &b)
	if err == nil {
		t.Fatal("the partial sync succeeded though the kernel must refuse it")
	}
	t.Logf("refused: %v", err)
	// The error names what the kernel refused.
	if !strings.Contains(err.Error(), "delete element 10.96.0.53 . udp . 53 from map service-ips: no such file or directory") {
		t.Errorf("the error does not name the refused operation: %v", err)
	}
	after := listed(t, run, false)
	webChain := "service-" + portBase(a.Services[0])
	if got, want := ruleTexts(after.Tables[0], webChain), ruleTexts(before.Tables[0], webChain); got != want {
		t.Errorf("the refused transaction changed %s:\nbefore %s\nafter  %s", webChain, want, got)
	}
	if err := s.Sync(ctx, &b); err != nil {
		t.Fatalf("the sync after a failure must repair the table: %v", err)
	}
	want, _ := netfilter.ParseNft(Render(&b, opts).List())
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
		t.Errorf("after the repair:\n%s", strings.Join(d, "\n"))
	}
}

// A large sync goes to the kernel in several transactions, each built
// while the one before it is committed. What they add up to is the
// rendered ruleset; and when the kernel refuses one, the error names what
// it refused, the transactions before it stay, none after it is sent, and
// the next sync repairs the table.
func TestTransactionsOfALargeSync(t *testing.T) {
	fd, run := kernelNS(t)
	ctx := context.Background()
	opts := Options{ClusterCIDR: podCIDR}
	a := model.Synthetic(12, 2)
	s := &Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour, ChunkServices: 2}
	if err := s.Sync(ctx, a); err != nil {
		t.Fatal(err)
	}
	want, _ := netfilter.ParseNft(renderWith(a, opts, &s.ranges).List())
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
		t.Fatalf("six transactions of two Services:\n%s", strings.Join(d, "\n"))
	}

	// Every Service moves to another cluster IP: its old service-ips
	// element is deleted in its own transaction. Someone deleted the fifth
	// one's already, so the third transaction is refused.
	b := &model.State{Gen: a.Gen}
	for i, sp := range a.Services {
		moved := *sp
		moved.ClusterIP = netip.AddrFrom4([4]byte{10, 97, 0, byte(i)})
		b.Services = append(b.Services, &moved)
	}
	old := func(i int) string { return a.Services[i].ClusterIP.String() + " . tcp . 80 " }
	moved := func(i int) string { return b.Services[i].ClusterIP.String() + " . tcp . 80 " }
	if out, err := run("nft", "delete", "element", "ip", TableName, "service-ips", "{ "+old(4)+"}"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	err := s.Sync(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "delete element "+a.Services[4].ClusterIP.String()+" . tcp . 80 from map service-ips") {
		t.Fatalf("the sync's error %v does not name the element the kernel could not delete", err)
	}
	ips, err := run("nft", "list", "map", "ip", TableName, "service-ips")
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.Services {
		switch committed := i < 4; {
		case committed && (!strings.Contains(ips, moved(i)) || strings.Contains(ips, old(i))):
			t.Errorf("Service %d, in a transaction before the refused one, is not at its new cluster IP:\n%s", i, ips)
		case !committed && (strings.Contains(ips, moved(i)) || i != 4 && !strings.Contains(ips, old(i))):
			t.Errorf("Service %d, in or after the refused transaction, changed:\n%s", i, ips)
		}
	}

	if err := s.Sync(ctx, b); err != nil {
		t.Fatalf("the sync after a failure must repair the table: %v", err)
	}
	want, _ = netfilter.ParseNft(renderWith(b, opts, &s.ranges).List())
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
		t.Errorf("after the repair:\n%s", strings.Join(d, "\n"))
	}
}

func ruleTexts(t *netfilter.NftTable, chain string) string {
	c := t.Chain(chain)
	if c == nil {
		return "(no chain)"
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Text)
	}
	return strings.Join(out, "; ")
}

// Endpoint changes are element changes in the endpoints map; ranges that
// stay keep their place while their neighbours change, and a new process
// (other range numbers) replaces what an earlier one left without a trace.
func TestEndpointRangesThroughChangesAndRestarts(t *testing.T) {
	fd, run := kernelNS(t)
	ctx := context.Background()
	opts := Options{ClusterCIDR: podCIDR}
	three := web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80), dptest.Ep("10.244.0.12", 80))
	lastReplaced := web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80), dptest.Ep("10.244.0.13", 80))
	steps := []struct {
		name    string
		state   model.State
		restart bool
	}{
		{"three endpoints", model.State{Services: []*model.ServicePort{three, dns(dptest.Ep("10.244.0.20", 53))}}, false},
		{"the last one replaced", model.State{Services: []*model.ServicePort{lastReplaced, dns(dptest.Ep("10.244.0.20", 53))}}, false},
		{"one left", model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.11", 80)), dns(dptest.Ep("10.244.0.20", 53))}}, false},
		{"its port changed", model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.11", 8080)), dns(dptest.Ep("10.244.0.20", 53))}}, false},
		{"a new process, dns first", model.State{Services: []*model.ServicePort{dns(dptest.Ep("10.244.0.21", 53)), web(dptest.Ep("10.244.0.11", 80), dptest.Ep("10.244.0.14", 80))}}, true},
		{"web gone", model.State{Services: []*model.ServicePort{dns(dptest.Ep("10.244.0.21", 53))}}, false},
	}
	var s *Syncer
	for _, st := range steps {
		if s == nil || st.restart {
			s = &Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour}
			if st.restart {
				// The earlier process numbered its ranges from 1 too.
				s.ranges.For("someone-else")
			}
		}
		if err := s.Sync(ctx, &st.state); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want, err := netfilter.ParseNft(renderWith(&st.state, opts, &s.ranges).List())
		if err != nil {
			t.Fatal(err)
		}
		if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
			t.Errorf("%s: the kernel differs from the rendered ruleset:\n%s", st.name, strings.Join(d, "\n"))
		}
	}
}

// A table an older svcproxy left, whose endpoints maps hold ranges of
// another size (65,536 numbers, 64 to a map), is replaced whole by the
// next process: its ranges cannot be swept by this layout's blocks.
func TestOlderEndpointRangesAreReplaced(t *testing.T) {
	fd, run := kernelNS(t)
	ctx := context.Background()
	opts := Options{ClusterCIDR: podCIDR}
	st := model.State{Services: []*model.ServicePort{web(dptest.Ep("10.244.0.10", 80), dptest.Ep("10.244.0.11", 80)), dns(dptest.Ep("10.244.0.20", 53))}}
	if err := (&Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour}).Sync(ctx, &st); err != nil {
		t.Fatal(err)
	}
	// Range 1 of the older layout: numbers 65536 to 131071, in map 000.
	if out, err := run("nft", "add", "element", "ip", TableName, endpointMap(0), "{ 65536-131071 : 10.244.0.99 . 80 }"); err != nil {
		t.Fatalf("add an older range: %v\n%s", err, out)
	}
	if ks := readBack(t, fd, opts); !ks.foreign {
		t.Fatal("a table with an older range is read as this layout's")
	}
	s := &Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour}
	if err := s.Sync(ctx, &st); err != nil {
		t.Fatalf("the next process's sync: %v", err)
	}
	want, err := netfilter.ParseNft(renderWith(&st, opts, &s.ranges).List())
	if err != nil {
		t.Fatal(err)
	}
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
		t.Errorf("the kernel differs from the rendered ruleset:\n%s", strings.Join(d, "\n"))
	}
}

// A transaction's element additions go in messages of at most 32 KiB: a
// Service of 3,000 endpoints (6,000 set elements, some 300 KiB) reaches
// the kernel whole, and the table reads back as the syncer recorded it.
// (A Service past the 16,384 numbers of a range: see
// TestMoreEndpointsThanARange.)
func TestLargeServicesReachTheKernelWhole(t *testing.T) {
	fd, run := kernelNS(t)
	opts := Options{ClusterCIDR: podCIDR}
	s := &Syncer{Options: opts, NetNS: fd, FullSyncPeriod: time.Hour}
	const n = 3000
	st := model.State{Services: []*model.ServicePort{web(manyEndpoints(n)...), dns(dptest.Ep("10.244.0.20", 53))}}
	if err := s.Sync(context.Background(), &st); err != nil {
		t.Fatal(err)
	}
	text := renderWith(&st, opts, &s.ranges).List()
	for _, e := range st.Services[0].Endpoints {
		if !strings.Contains(text, e.IP.String()+" . 80") && !strings.Contains(text, "to "+e.IP.String()+":80") {
			t.Fatalf("%s gets no traffic", e.IP)
		}
	}
	want, err := netfilter.ParseNft(text)
	if err != nil {
		t.Fatal(err)
	}
	if d := sameTable(want.Tables[0], listed(t, run, false).Tables[0], true); len(d) > 0 {
		t.Errorf("the kernel differs from the rendered ruleset (%d lines):\n%s", len(d), strings.Join(d[:min(len(d), 10)], "\n"))
	}
	if d := sameRecord(readBack(t, fd, opts), s.kernel); len(d) > 0 {
		t.Errorf("the table read back differs from the syncer's record:\n%s", strings.Join(d, "\n"))
	}
}

// readBack reads the table as a full sync of a new process would.
func readBack(t *testing.T, fd int, opts Options) *kernelState {
	t.Helper()
	r := &Syncer{NetNS: fd, Options: opts}
	c, err := newConns(fd)
	if err != nil {
		t.Fatal(err)
	}
	r.conn = c
	ks, err := r.read()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// sameRecord lists where two records of the table differ, claims aside.
func sameRecord(got, want *kernelState) []string {
	var d []string
	diff := func(what string, g, w any) {
		if !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s: read %v, recorded %v", what, g, w))
		}
	}
	sets := map[string]bool{}
	for s := range got.elements {
		sets[s] = true
	}
	for s := range want.elements {
		sets[s] = true
	}
	for s := range sets {
		if len(got.elements[s])+len(want.elements[s]) > 0 {
			diff("elements of "+s, got.elements[s], want.elements[s])
		}
	}
	ranges := func(ks *kernelState) map[uint32][]blockRange {
		out := map[uint32][]blockRange{}
		for b, rs := range ks.blocks {
			if len(rs) > 0 {
				out[b] = slices.Clip(rs)
			}
		}
		return out
	}
	diff("endpoint ranges", ranges(got), ranges(want))
	diff("hairpin addresses", got.hairpin.all(), want.hairpin.all())
	diff("chains", got.chains, want.chains)
	return d
}

// Saving a node's ruleset and loading it back is an everyday operator
// action: for every golden and parity state, what the kernel lists after
// a sync loads into a fresh namespace with nft -f, and lists the same
// there.
func TestKernelListingLoadsBack(t *testing.T) {
	states := goldenCases(t)
	for _, c := range dptest.Parity() {
		states = append(states, goldenCase{"parity-" + c.Name, c.State(t), c.Opts})
	}
	for _, tc := range states {
		t.Run(tc.name, func(t *testing.T) {
			fd, run := kernelNS(t)
			s := &Syncer{NetNS: fd, Options: tc.opts}
			if err := s.Sync(context.Background(), &tc.state); err != nil {
				t.Fatal(err)
			}
			saved, err := run("nft", "list", "ruleset")
			if err != nil {
				t.Fatalf("nft list ruleset: %v: %s", err, saved)
			}
			_, fresh := kernelNS(t)
			f := filepath.Join(t.TempDir(), "ruleset.nft")
			if err := os.WriteFile(f, []byte(saved), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := fresh("nft", "-f", f); err != nil {
				t.Fatalf("nft -f of the listing fails: %v\n%s\nlisting:\n%s", err, out, saved)
			}
			again, err := fresh("nft", "list", "ruleset")
			if err != nil || again != saved {
				t.Errorf("loaded back, the ruleset lists differently (%v):\n%s\nwas:\n%s", err, again, saved)
			}
		})
	}
}

// Stopping, svcproxy hands its table over (Release): for every golden and
// parity state, the handed-over table holds nothing upstream kube-proxy
// does not know (it could not remove it), still sends every packet where
// the rendered table does, and the next svcproxy replaces it with its own.
func TestReleaseHandsTheTableOver(t *testing.T) {
	cases := append(dptest.Behaviours(), dptest.Parity()...)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			fd, run := kernelNS(t)
			ctx := context.Background()
			st := c.State(t)
			if err := (&Syncer{NetNS: fd, Options: c.Opts}).Sync(ctx, &st); err != nil {
				t.Fatal(err)
			}
			s := &Syncer{NetNS: fd, Options: c.Opts}
			if err := s.Sync(ctx, &st); err != nil {
				t.Fatal(err)
			}
			if err := s.Release(ctx); err != nil {
				t.Fatal(err)
			}
			handed := listed(t, run, c.Opts.IPv6)
			for _, set := range handed.Tables[0].Sets {
				if isEndpointMap(set.Name) || set.Name == setHairpin {
					t.Errorf("handed over with svcproxy's %s", set.Name)
				}
			}
			trace := func(p netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
				return netfilter.TraceNft(handed, p, o)
			}
			for _, tc := range c.Traces {
				dptest.CheckTrace(t, trace, dptest.Local, tc.In("nftables"))
			}
			next := &Syncer{NetNS: fd, Options: c.Opts}
			if err := next.Sync(ctx, &st); err != nil {
				t.Fatal(err)
			}
			want, err := netfilter.ParseNft(renderWith(&st, c.Opts, &next.ranges).List())
			if err != nil {
				t.Fatal(err)
			}
			if d := sameTable(want.Tables[0], listed(t, run, c.Opts.IPv6).Tables[0], false); len(d) > 0 {
				t.Errorf("the next svcproxy left the handed-over table differing from its own:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

package e2e

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/lab"
	"github.com/svcproxy/svcproxy/internal/model"
)

// corrupting breaks the restore input after a given line, standing in for
// anything that makes the kernel refuse a transaction (a missing module, a
// racing writer).
type corrupting struct {
	iptables.Exec
	after string
}

func (c corrupting) Restore(ctx context.Context, input []byte) error {
	broken := strings.Replace(string(input), c.after, c.after+"-A KUBE-SERVICES -j NO-SUCH-CHAIN\n", 1)
	return c.Exec.Restore(ctx, []byte(broken))
}

func TestFailedApplyKeepsPreviousRules(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
	ctx := ctxFor(t, 30*time.Second)
	inNode := iptables.Exec{Prefix: []string{"ip", "netns", "exec", w.node.Name}}
	svc := func(ip string) model.State {
		return model.State{Services: []*model.ServicePort{{
			Name:     model.ServicePortName{Namespace: "default", Name: "web"},
			Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30450,
			Endpoints: []model.Endpoint{{IP: netip.MustParseAddr(ip), Port: 80, Ready: true}},
		}}}
	}
	good := &iptables.Syncer{Runner: inNode, Options: iptables.Options{LocalhostNodePorts: true}}
	first := svc("10.244.0.10")
	if err := good.Sync(ctx, &first); err != nil {
		t.Fatal(err)
	}
	before := w.iptablesSave()
	nodePort := w.node.IP.String() + ":30450"
	if a, err := w.lab.Client.HTTPGet(ctx, nodePort); err != nil || a.Pod != "web-1" {
		t.Fatalf("before: %v %v", a, err)
	}

	bad := &iptables.Syncer{Runner: corrupting{Exec: inNode, after: "*nat\n"}, Options: good.Options}
	second := svc("10.244.0.11")
	err := bad.Sync(ctx, &second)
	var rerr *iptables.RestoreError
	if !errors.As(err, &rerr) {
		t.Fatalf("sync with a broken transaction: %v, want a RestoreError", err)
	}
	if _, line := rerr.Line(); line != "-A KUBE-SERVICES -j NO-SUCH-CHAIN" {
		t.Errorf("error names line %q, want the offending one; error: %v", line, err)
	}
	if after := w.iptablesSave(); stripCounters(after) != stripCounters(before) {
		t.Errorf("a failed restore changed the kernel's rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if a, err := w.lab.Client.HTTPGet(ctx, nodePort); err != nil || a.Pod != "web-1" {
		t.Fatalf("after the failed apply the previous rules must still serve: %v %v", a, err)
	}
	if err := good.Sync(ctx, &second); err != nil {
		t.Fatal(err)
	}
	if a, err := w.lab.Client.HTTPGet(ctx, nodePort); err != nil || a.Pod != "web-2" {
		t.Fatalf("the next good sync: %v %v", a, err)
	}
}

// stripCounters drops the comment lines iptables-save stamps with the time.
func stripCounters(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// A sync split into transactions (here one Service each) programs every
// Service on the real kernel, and a later sync removes what went away.
func TestChunkedApply(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}}, lab.PodSpec{Name: "web-2", TCP: []int{80}})
	ctx := ctxFor(t, 30*time.Second)
	sp := func(name string, ip string, nodePort int32, ep string) *model.ServicePort {
		return &model.ServicePort{
			Name: model.ServicePortName{Namespace: "default", Name: name}, Protocol: model.TCP,
			ClusterIP: netip.MustParseAddr(ip), Port: 80, NodePort: nodePort,
			Endpoints: []model.Endpoint{{IP: netip.MustParseAddr(ep), Port: 80, Ready: true}},
		}
	}
	s := &iptables.Syncer{Runner: iptables.Exec{Prefix: []string{"ip", "netns", "exec", w.node.Name}}, Options: iptables.Options{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, ChunkServices: 1}
	st := model.State{Services: []*model.ServicePort{sp("a", "10.96.0.1", 30001, "10.244.0.10"), sp("b", "10.96.0.2", 30002, "10.244.0.11"), sp("c", "10.96.0.3", 30003, "10.244.0.10")}}
	if n := len(iptables.ComposeChunks(iptables.Render(&st, s.Options), nil, 1)); n != 5 {
		t.Fatalf("%d transactions, want 5", n)
	}
	if err := s.Sync(ctx, &st); err != nil {
		t.Fatal(err)
	}
	for port, pod := range map[string]string{"30001": "web-1", "30002": "web-2", "30003": "web-1"} {
		if a, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":"+port); err != nil || a.Pod != pod {
			t.Errorf("NodePort %s: %+v %v, want %s", port, a, err, pod)
		}
	}
	st.Services = st.Services[:2]
	if err := s.Sync(ctx, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := w.lab.Client.HTTPGet(ctx, w.node.IP.String()+":30003"); err == nil {
		t.Error("removed Service still answers")
	}
	if rules := w.iptablesSave(); strings.Contains(rules, "default/c") {
		t.Error("chains of the removed Service left behind")
	}
}

// After a series of partial syncs (endpoints added and removed, Services
// added, removed and emptied), the kernel holds exactly the rules a full
// sync of the final state writes.
func TestPartialSyncsMatchAFullSync(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	ctx := ctxFor(t, 60*time.Second)
	saveOf := func(ns string) []string {
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save").Output()
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, ":KUBE") {
				rules = append(rules, l)
			}
		}
		slices.Sort(rules)
		return rules
	}
	netns := func(name string) iptables.Exec {
		_ = exec.Command("ip", "netns", "del", name).Run()
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		return iptables.Exec{Prefix: []string{"ip", "netns", "exec", name}}
	}
	opts := iptables.Options{ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"), LocalhostNodePorts: true}
	partial := &iptables.Syncer{Runner: netns("svpartial"), Options: opts, FullSyncPeriod: time.Hour, ChunkServices: 7}
	st := model.Synthetic(40, 3)
	if err := partial.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	steps := []func(){
		func() { st.Services[3].Endpoints = st.Services[3].Endpoints[1:] },
		func() { st.Services[5].Endpoints = nil }, // now rejected
		func() { st.Services = append(st.Services[:10], st.Services[11:]...) },
		func() { st.Services = append(st.Services, model.Synthetic(45, 2).Services[44]) },
		func() { st.Services[5].Endpoints = model.Synthetic(1, 2).Services[0].Endpoints },
		func() { st.Services[7].NodePort = 31999 },
		func() { // many at once: more than a chunk
			for i := 12; i < 30; i++ {
				st.Services[i].Endpoints = st.Services[i].Endpoints[:1]
			}
		},
	}
	for i, step := range steps {
		step()
		if err := partial.Sync(ctx, st); err != nil {
			t.Fatalf("partial sync %d: %v", i, err)
		}
	}
	full := &iptables.Syncer{Runner: netns("svfull"), Options: opts}
	if err := full.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, want := saveOf("svpartial"), saveOf("svfull")
	if !slices.Equal(got, want) {
		for _, l := range got {
			if !slices.Contains(want, l) {
				t.Errorf("only after partial syncs: %s", l)
			}
		}
		for _, l := range want {
			if !slices.Contains(got, l) {
				t.Errorf("missing after partial syncs: %s", l)
			}
		}
	}
}

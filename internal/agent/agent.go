// Package agent runs svcproxy on one node. It wires a source to the model,
// the sync loop and the dataplane of the chosen mode, starts the servers
// (health, metrics) and the canary watch, and hands every finished sync to
// the observers that act on it (observers.go). cmd/ parses flags into a
// Config; everything that happens on the node starts here.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/config"
	"github.com/svcproxy/svcproxy/internal/conntrack"
	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/modes"
	"github.com/svcproxy/svcproxy/internal/healthcheck"
	"github.com/svcproxy/svcproxy/internal/localnodeport"
	"github.com/svcproxy/svcproxy/internal/metrics"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
	"github.com/svcproxy/svcproxy/internal/proxy"
	"github.com/svcproxy/svcproxy/internal/source"
	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// Config is what an agent runs with.
type Config struct {
	// Settings are the validated flags and config file.
	Settings config.Config
	Mode     dataplane.Mode
	Node     model.Node
	// Options gives each IP family's rule options.
	Options func(v6 bool) (dataplane.Options, error)
	Source  source.Source
	// Input adjusts every snapshot before it is built (objects that flags
	// add, such as --service-cidrs); nil leaves them as they are.
	Input func(model.Input) model.Input
	// HoldNodePorts keeps a listening socket on every NodePort.
	HoldNodePorts bool
	Log           *slog.Logger
	// Flags (every flag with its value) and Version are what the metrics
	// server's /flagz and /statusz show.
	Flags   map[string]string
	Version string
}

// FullSyncPeriod is how often a sync reads the kernel's rules and rewrites
// every Service, as upstream does (its FullSyncPeriod). The syncs every
// sync period in between are partial: they rewrite what changed, which when
// nothing did is nothing. A full rewrite every sync period would cost a 10k
// Service node 14 s of iptables-restore, or 2 s and a doubled record in
// nftables mode, twice a minute. Failures and flushed tables (the canary
// check) still make the next sync full.
const FullSyncPeriod = time.Hour

// Agent is svcproxy running on one node.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	dataplane dataplane.Families
	runner    *proxy.Runner
	metrics   *metrics.Metrics
	health    *healthcheck.Server // nil without --healthz-bind-address
	services  *healthcheck.Services
	guard     *nodeport.Guard
	latency   *programmingLatency
	ports     *portReservation
	// localhost serve TCP NodePorts on loopback, per family (nftables
	// mode with upstream's KubeProxyNFTablesLocalhostNodePorts gate).
	localhost []*localnodeport.Proxy
	observers []Observer
	newest    newestInput
}

// New builds an agent; nothing on the node changes before Run.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Mode.Check(); err != nil {
		return nil, err
	}
	log := cfg.Log
	a := &Agent{cfg: cfg, log: log, metrics: metrics.New(cfg.Mode.Name)}
	// nf_conntrack_tcp_be_liberal as it will be once prepare set it.
	liberal := cfg.Settings.Conntrack.TCPBeLiberal
	if v, err := sysctl.Get("net.netfilter.nf_conntrack_tcp_be_liberal"); err == nil && v != "0" {
		liberal = true
	}
	// Upstream's nfacct counters: made now, as the rules that count in
	// them need them to exist (an nfacct object changes nothing else).
	nfacct := false
	if cfg.Mode.EnsureNFAcct != nil {
		if err := cfg.Mode.EnsureNFAcct(); err != nil {
			log.Warn("no nfacct counters: the localhost NodePort and INVALID drop metrics stay absent", "err", err)
		} else {
			nfacct = true
			a.metrics.NFAcct(cfg.Mode.NFAcctPackets)
		}
	}
	options := func(v6 bool) (dataplane.Options, error) {
		o, err := cfg.Options(v6)
		o.ConntrackTCPLiberal, o.NFAcct = liberal, nfacct
		return o, err
	}
	fs, err := cfg.Mode.Families(options, dataplane.SyncerConfig{Metrics: dataplane.SyncLog{SyncerMetrics: a.metrics, Log: log}, FullSyncPeriod: FullSyncPeriod}, log)
	if err != nil {
		return nil, err
	}
	a.dataplane = fs
	s := &cfg.Settings
	a.runner = &proxy.Runner{
		Dataplane: dataplane.WithHostAddrs{Families: fs}, Log: log,
		MinSyncPeriod: s.MinSyncPeriod, SyncPeriod: s.SyncPeriod,
		OnSynced: a.synced, Pull: a.pull(),
	}
	if s.HealthzBindAddress != "" {
		// Only the API server has this node's Node object to be eligible by.
		a.health = &healthcheck.Server{Timeout: 2 * s.SyncPeriod, Log: log, Syncer: a.runner, Families: a.families(),
			RequireNode: s.Manifests == "", Count: a.metrics.CountHealthCheck}
	}
	a.services = &healthcheck.Services{Log: log}
	if a.health != nil {
		a.services.Proxy = a.health
	}
	a.guard = &nodeport.Guard{Log: log, Hold: cfg.HoldNodePorts, Metrics: a.metrics, Served: a.servesLocalhost,
		ProbeEvery: guardProbeEvery}
	for _, v6 := range []bool{false, true} {
		if o, err := options(v6); err == nil && o.LocalhostNodePorts && cfg.Mode.LocalhostListeners && slices.Contains(a.families(), dataplane.FamilyName(v6)) {
			a.localhost = append(a.localhost, &localnodeport.Proxy{V6: v6, Log: log, Metrics: a.metrics})
		}
	}
	a.latency = &programmingLatency{metrics: a.metrics, log: log}
	a.ports = &portReservation{
		reserver: &nodeport.Reserver{StateFile: ReservationState(s.StateDir)},
		mode:     s.NodePortReservation, portRange: s.NodePortRange, log: log,
	}
	// In the order they act after a sync: the latency first, measured to
	// the moment the rules were in the kernel.
	if o, err := options(false); err == nil && o.RejectLocalhostNodePorts && cfg.Mode.LocalhostRejected != nil {
		a.metrics.LocalhostNodePorts(a.families(), func(family string) (map[model.Protocol]uint64, error) {
			return cfg.Mode.LocalhostRejected(family == dataplane.FamilyName(true))
		})
	}
	a.observers = []Observer{a.latency, noLocalEndpoints{a.metrics}, &conntrack.Cleaner{Log: log, Metrics: a.metrics}, a.ports}
	for _, p := range a.localhost {
		a.observers = append(a.observers, p)
	}
	a.observers = append(a.observers, a.guard, a.services, &otherModes{agent: a})
	a.metrics.SetConfig(cfg.Settings)
	a.metrics.SetFlags(cfg.Flags)
	a.metrics.SetVersion(cfg.Version)
	if a.health != nil {
		a.observers = append(a.observers, a.health)
	}
	return a, nil
}

// Run programs the node and follows the source until ctx ends. The rules
// stay in the kernel when it returns.
func (a *Agent) Run(ctx context.Context) error {
	c, log := &a.cfg.Settings, a.log
	a.prepare()
	if es, ok := a.cfg.Source.(source.EventSource); ok {
		ev := es.Events(a.cfg.Node.Name)
		defer ev.Stop()
		a.guard.Events = ev
	}
	defer a.guard.Close()
	go a.guard.Run(ctx)
	defer a.services.Close()
	for _, p := range a.localhost {
		defer p.Close()
	}
	if c.MetricsBindAddress != "" {
		go func() {
			if err := a.metrics.ListenAndServe(ctx, c.MetricsBindAddress, c.EnableProfiling); err != nil {
				log.Error("metrics server stopped", "address", c.MetricsBindAddress, "err", err)
			}
		}()
	}
	if a.health != nil {
		go func() {
			if err := a.health.ListenAndServe(ctx, c.HealthzBindAddress); err != nil {
				log.Error("health check server stopped", "address", c.HealthzBindAddress, "err", err)
			}
		}()
	}
	detail := ""
	if a.cfg.Mode.Detail != nil {
		detail = a.cfg.Mode.Detail()
	}
	log.Info("starting svcproxy", "mode", a.cfg.Mode.Name, "detail", detail, "node", a.cfg.Node.Name, "clusterCIDR", c.ClusterCIDR,
		"minSyncPeriod", c.MinSyncPeriod.String(), "syncPeriod", c.SyncPeriod.String())
	srcErr := make(chan error, 1)
	go func() { srcErr <- a.cfg.Source.Run(ctx, a.snapshot()) }()
	ran := make(chan struct{})
	go func() { a.runner.Run(ctx); close(ran) }()
	go dataplane.Monitor(ctx, canaryInterval(c.SyncPeriod), log, a.cfg.Mode.Canary, a.cfg.Mode.Present,
		func() bool { return !a.runner.LastSuccess().IsZero() },
		func() { a.dataplane.ForceFull(); a.runner.Resync() })
	select {
	case err := <-srcErr:
		if err != nil {
			return err
		}
	case <-ctx.Done():
	}
	<-ran
	// As a DaemonSet rollout stops it: the rules stay, in a form the next
	// proxy (svcproxy or upstream kube-proxy) takes over without a gap.
	hctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	if err := a.dataplane.Release(hctx); err != nil {
		log.Warn("stopping; the rules stay in the kernel but were not handed over: a kube-proxy started next would leave svcproxy's endpoints maps behind", "err", err)
		return nil
	}
	log.Info("stopping; the rules stay in the kernel")
	return nil
}

// guardProbeEvery is how often the NodePort guard checks every NodePort;
// a sync checks the ones it adds at once.
const guardProbeEvery = 5 * time.Second

// handOverTimeout bounds the hand-over on stop (one transaction: 0.4 s at
// 1k Services, 3.0 s at 10k, -bench Release) within a pod's default 30 s
// grace period.
const handOverTimeout = 15 * time.Second

// Init prepares the node as Run would (the process's OOM score, sysctls,
// the NodePort reservation) and returns: --init-only, for an init
// container with more privileges than the proxy's.
func Init(cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	a.prepare()
	return nil
}

// prepare sets up the node before the first sync. What cannot be done is
// logged: the proxy still serves without it.
func (a *Agent) prepare() {
	if adj := a.cfg.Settings.OOMScoreAdj; adj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(int(*adj))), 0); err != nil {
			a.log.Warn("cannot set the OOM score", "oomScoreAdj", *adj, "err", err)
		}
	}
	if err := a.ports.atStart(); err != nil {
		a.log.Error("cannot reserve NodePorts as ephemeral-port exclusions", "err", err)
	}
	a.setSysctls()
	conntrack.Apply(a.cfg.Settings.Conntrack, a.log)
}

// snapshot is what the source calls with each snapshot: it keeps the
// newest for the sync loop, which builds the desired state from it when it
// is about to sync (see pull).
func (a *Agent) snapshot() func(model.Input, []error) {
	return func(in model.Input, objErrs []error) {
		if a.cfg.Input != nil {
			in = a.cfg.Input(in)
		}
		a.newest.Lock()
		a.newest.in, a.newest.errs, a.newest.fresh = in, objErrs, true
		a.newest.Unlock()
		a.runner.Resync()
	}
}

// newestInput is the source's newest snapshot, until the sync loop takes it.
type newestInput struct {
	sync.Mutex
	in    model.Input
	errs  []error
	fresh bool
}

// pull builds the desired state from the source's newest snapshot, if one
// came since the last (the sync loop's Pull).
func (a *Agent) pull() func() *model.State {
	var prev model.Input
	var builder model.Builder
	first, lastRejected := true, 0
	return func() *model.State {
		a.newest.Lock()
		in, objErrs, fresh := a.newest.in, a.newest.errs, a.newest.fresh
		a.newest.fresh = false
		a.newest.Unlock()
		if !fresh {
			return nil
		}
		cs := model.Changes(prev, in)
		prev = in
		a.metrics.Queued(cs.Services, cs.EndpointSlices, a.families())
		st, buildErrs := builder.Build(in, a.cfg.Node)
		rejected := 0
		for _, e := range append(objErrs, buildErrs...) {
			switch model.Outcome(e) {
			case "warning":
				a.log.Warn(e.Error())
			case "partly used":
				a.log.Error("programming object partly: " + e.Error())
			default:
				rejected++
				a.log.Error("skipping object: " + e.Error())
			}
		}
		// News the first time and when what is rejected changes; under a
		// stream of endpoint changes, one line each would drown the log.
		level := slog.LevelDebug
		if first || rejected != lastRejected {
			level = slog.LevelInfo
		}
		first, lastRejected = false, rejected
		a.log.Log(context.Background(), level, "Services loaded", "services", len(in.Services), "endpointSlices", len(in.EndpointSlices),
			"servicePorts", len(st.Services), "rejected", rejected)
		a.latency.changed(&st, cs.Triggers)
		return &st
	}
}

// servesLocalhost reports whether a localhost NodePort listener holds
// the port: svcproxy's own socket, no conflict for the NodePort guard.
func (a *Agent) servesLocalhost(port int32, proto model.Protocol) bool {
	for _, p := range a.localhost {
		if p.Serves(port, proto) {
			return true
		}
	}
	return false
}

// families are the IP families the agent syncs.
func (a *Agent) families() []string {
	var out []string
	for _, f := range a.dataplane {
		out = append(out, f.Family())
	}
	return out
}

// synced hands a finished sync to every observer.
func (a *Agent) synced(st *model.State) {
	for _, o := range a.observers {
		o.Synced(st)
	}
}

// setSysctls sets what the mode needs of the kernel for these options.
func (a *Agent) setSysctls() {
	if a.cfg.Mode.Sysctls == nil {
		return
	}
	opts, err := a.cfg.Options(false)
	if err != nil {
		return
	}
	rec := sysctl.Recorder{File: SysctlRecord(a.cfg.Settings.StateDir)}
	for _, s := range a.cfg.Mode.Sysctls(opts) {
		if changed, err := rec.Ensure(s.Name, s.Value); err != nil {
			a.log.Error("cannot set "+s.Name, "why", s.Why, "err", err)
		} else if changed {
			a.log.Info(fmt.Sprintf("set %s=%s", s.Name, s.Value), "why", s.Why)
		}
	}
}

// otherModes removes the other modes' rules once this mode's first sync is
// in the kernel: removed at start, a node switched between modes (or taken
// over from kube-proxy in the other mode) would have no Service rules until
// the API server's lists arrived. Until then both modes' rules lead to the
// same endpoints, and a connection is NATed by whichever comes first.
type otherModes struct {
	agent *Agent
	done  bool
}

func (o *otherModes) Synced(*model.State) {
	if o.done {
		return
	}
	o.done = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o.agent.removeOtherModes(ctx)
}

// removeOtherModes deletes the rules a run in another mode left, so that a
// node switched between modes is never programmed twice.
func (a *Agent) removeOtherModes(ctx context.Context) {
	for _, m := range modes.Others(a.cfg.Mode) {
		removed, err := m.Installed().Cleanup(ctx)
		switch {
		case err != nil:
			a.log.Error("cannot remove the rules of "+m.Name+" mode left on this node", "err", err)
		case removed:
			a.log.Info("removed the rules " + m.Name + " mode left on this node")
		}
	}
}

// canaryInterval is how often the canary chains are checked: often enough
// that flushed rules come back well within the sync period.
func canaryInterval(syncPeriod time.Duration) time.Duration {
	return min(max(syncPeriod/4, 100*time.Millisecond), 5*time.Second)
}

// ReservationState is the file that records the ports svcproxy reserved.
func ReservationState(stateDir string) string {
	return filepath.Join(stateDir, "reserved-ports.json")
}

// SysctlRecord is the file that records what the sysctls svcproxy set were
// before.
func SysctlRecord(stateDir string) string {
	return filepath.Join(stateDir, "sysctls.json")
}

// Cleaned is what Cleanup did.
type Cleaned struct {
	// Removed is set when there were rules to remove.
	Removed bool
	// Reserved is ip_local_reserved_ports as the kernel has it now.
	Reserved string
	// Restored are the sysctls set back to their values before svcproxy.
	Restored []sysctl.Setting
}

// Cleanup removes every mode's rules from the node, gives back the reserved
// ports and restores the sysctls svcproxy changed (svcproxy cleanup, run
// --cleanup).
func Cleanup(ctx context.Context, stateDir string) (Cleaned, error) {
	var c Cleaned
	var err error
	if c.Removed, err = modes.Installed().Cleanup(ctx); err != nil {
		return c, err
	}
	if c.Reserved, err = (&nodeport.Reserver{StateFile: ReservationState(stateDir)}).Release(); err != nil {
		return c, fmt.Errorf("give back reserved ports: %w", err)
	}
	if c.Restored, err = (sysctl.Recorder{File: SysctlRecord(stateDir)}).Restore(); err != nil {
		return c, fmt.Errorf("restore sysctls: %w", err)
	}
	return c, nil
}

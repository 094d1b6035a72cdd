package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/svcproxy/svcproxy/internal/config"
	"github.com/svcproxy/svcproxy/internal/conntrack"
	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/dataplane/nftables"
	"github.com/svcproxy/svcproxy/internal/healthcheck"
	"github.com/svcproxy/svcproxy/internal/logging"
	"github.com/svcproxy/svcproxy/internal/metrics"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
	"github.com/svcproxy/svcproxy/internal/proxy"
	"github.com/svcproxy/svcproxy/internal/source/files"
	"github.com/svcproxy/svcproxy/internal/source/kube"
	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// source feeds snapshots of Services and EndpointSlices.
type source interface {
	Run(ctx context.Context, onChange func(model.Input, []error)) error
}

type runFlags struct {
	proxyFlags
	configFile    string
	cleanup       bool
	holdNodePorts bool
	verbosity     int
}

func newRunCmd() *cobra.Command {
	f := &runFlags{proxyFlags: newProxyFlags()}
	cmd := &cobra.Command{
		Use:   "run (--kubeconfig FILE | --manifests DIR)",
		Short: "Run the proxy: program the kernel for the Services and follow changes",
		Long: `Run the proxy on this node. Services and EndpointSlices come from the API
server (--kubeconfig, or the in-cluster service account when running in a pod)
or, standalone, from the manifests in --manifests DIR, where adding, editing or
removing a file is programmed within a second. An object that cannot be used
is logged with its name and field, and every other Service keeps working.

svcproxy never flushes: it rewrites its own chains in one atomic
iptables-restore per sync, so existing connections are untouched, and when it
stops the rules stay in the kernel. Until the API server caches have synced it
does not touch the rules at all.

The flags are kube-proxy's. With --config, a KubeProxyConfiguration
(kubeproxy.config.k8s.io/v1alpha1) is read first and flags given on the
command line override it; fields svcproxy does not act on are named in one
warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Flags())
		},
	}
	f.register(cmd.Flags())
	fs := cmd.Flags()
	c := &f.cfg
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file of the API server to follow (default: in-cluster config when running in a pod)")
	fs.StringVar(&f.configFile, "config", "", "a KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1)")
	fs.BoolVar(&f.cleanup, "cleanup", false, "remove svcproxy's (and kube-proxy's iptables-mode) rules and exit")
	fs.DurationVar(&c.SyncPeriod, "iptables-sync-period", c.SyncPeriod, "the longest time between two syncs of the rules; a sync rewrites only what changed, and every hour (and after a failure or a flush) everything")
	fs.DurationVar(&c.MinSyncPeriod, "iptables-min-sync-period", c.MinSyncPeriod, "the shortest time between two syncs; changes that arrive meanwhile are applied together (0 syncs on every change)")
	fs.StringVar(&c.HealthzBindAddress, "healthz-bind-address", c.HealthzBindAddress, "IP:PORT for /healthz and /livez (empty to disable)")
	fs.StringVar(&c.MetricsBindAddress, "metrics-bind-address", c.MetricsBindAddress, "IP:PORT for Prometheus metrics at /metrics (empty to disable)")
	fs.BoolVar(&c.EnableProfiling, "profiling", c.EnableProfiling, "serve Go's profiling handlers at /debug/pprof/ on --metrics-bind-address")
	fs.StringVar(&c.NodePortReservation, "nodeport-reservation", c.NodePortReservation, "keep the kernel from handing NodePorts out as ephemeral client ports (net.ipv4.ip_local_reserved_ports): range (the whole --service-node-port-range), ports (only the NodePorts in use) or off")
	fs.StringVar(&c.NodePortRange, "service-node-port-range", c.NodePortRange, "the API server's NodePort range, reserved with --nodeport-reservation=range")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "where svcproxy records what it changed on the node (reserved ports), so cleanup can undo exactly that")
	fs.Float32Var(&c.QPS, "kube-api-qps", c.QPS, "queries per second to the API server")
	fs.Int32Var(&c.Burst, "kube-api-burst", c.Burst, "burst of queries to the API server")
	fs.StringVar(&c.ContentType, "kube-api-content-type", c.ContentType, "content type of requests sent to the API server")
	fs.BoolVar(&f.holdNodePorts, "hold-nodeports", false, "hold a listening socket on every NodePort (after its rules are committed) so no other process can take it")
	fs.IntVarP(&f.verbosity, "v", "v", 0, "log verbosity; 4 and above logs every sync")
	return cmd
}

// flagFields copies a setting from one Config to another, per flag name: the
// settings a flag given on the command line overrides in --config.
var flagFields = map[string]func(dst, src *config.Config){
	"kubeconfig":                   func(d, s *config.Config) { d.Kubeconfig = s.Kubeconfig },
	"manifests":                    func(d, s *config.Config) { d.Manifests = s.Manifests },
	"hostname-override":            func(d, s *config.Config) { d.HostnameOverride = s.HostnameOverride },
	"cluster-cidr":                 func(d, s *config.Config) { d.ClusterCIDR = s.ClusterCIDR },
	"masquerade-all":               func(d, s *config.Config) { d.MasqueradeAll = s.MasqueradeAll },
	"iptables-localhost-nodeports": func(d, s *config.Config) { d.LocalhostNodePorts = s.LocalhostNodePorts },
	"nodeport-addresses":           func(d, s *config.Config) { d.NodePortAddresses = s.NodePortAddresses },
	"service-cidrs":                func(d, s *config.Config) { d.ServiceCIDRs = s.ServiceCIDRs },
	"proxy-mode":                   func(d, s *config.Config) { d.Mode = s.Mode },
	"iptables-sync-period":         func(d, s *config.Config) { d.SyncPeriod = s.SyncPeriod },
	"iptables-min-sync-period":     func(d, s *config.Config) { d.MinSyncPeriod = s.MinSyncPeriod },
	"healthz-bind-address":         func(d, s *config.Config) { d.HealthzBindAddress = s.HealthzBindAddress },
	"metrics-bind-address":         func(d, s *config.Config) { d.MetricsBindAddress = s.MetricsBindAddress },
	"profiling":                    func(d, s *config.Config) { d.EnableProfiling = s.EnableProfiling },
	"kube-api-qps":                 func(d, s *config.Config) { d.QPS = s.QPS },
	"kube-api-burst":               func(d, s *config.Config) { d.Burst = s.Burst },
	"kube-api-content-type":        func(d, s *config.Config) { d.ContentType = s.ContentType },
	"nodeport-reservation":         func(d, s *config.Config) { d.NodePortReservation = s.NodePortReservation },
	"service-node-port-range":      func(d, s *config.Config) { d.NodePortRange = s.NodePortRange },
	"state-dir":                    func(d, s *config.Config) { d.StateDir = s.StateDir },
}

func (f *runFlags) run(fs *pflag.FlagSet) error {
	log := logging.New(os.Stderr, f.verbosity)
	if f.configFile != "" {
		fromFile := config.Defaults()
		unsupported, err := config.LoadFile(f.configFile, &fromFile)
		if err != nil {
			return err
		}
		if len(unsupported) > 0 {
			log.Warn(fmt.Sprintf("ignoring KubeProxyConfiguration fields svcproxy does not support: %v", unsupported), "config", f.configFile)
		}
		fs.Visit(func(fl *pflag.Flag) {
			if copyField, ok := flagFields[fl.Name]; ok {
				copyField(&fromFile, &f.cfg)
			}
		})
		f.cfg = fromFile
	}
	if err := f.cfg.Validate(); err != nil {
		return err
	}
	if f.cfg.Mode != "nftables" {
		for _, bin := range []string{"iptables-save", "iptables-restore"} {
			if _, err := exec.LookPath(bin); err != nil {
				return fmt.Errorf("%s not found in PATH: install the iptables package (or use --proxy-mode nftables)", bin)
			}
		}
	}
	if f.cleanup {
		return cleanupNode(log, f.cfg.StateDir)
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	node, err := f.node()
	if err != nil {
		return err
	}
	c := &f.cfg
	src, err := f.source(node, log)
	if err != nil {
		return err
	}
	reserver := &nodeport.Reserver{StateFile: reservationState(c.StateDir)}
	if err := reserveNodePorts(log, reserver, c, nil); err != nil {
		log.Error("cannot reserve NodePorts as ephemeral-port exclusions", "err", err)
	}
	if opts.LocalhostNodePorts && c.Mode != "nftables" {
		if changed, err := sysctl.Ensure("net.ipv4.conf.all.route_localnet", "1"); err != nil {
			log.Error("cannot enable localhost NodePorts", "err", err)
		} else if changed {
			log.Info("set net.ipv4.conf.all.route_localnet=1 so NodePorts answer on 127.0.0.1")
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var proxyHealth *healthcheck.Server
	if c.HealthzBindAddress != "" {
		proxyHealth = &healthcheck.Server{Timeout: 2 * c.SyncPeriod, Log: log}
	}
	svcHealth := &healthcheck.Services{Log: log}
	if proxyHealth != nil {
		svcHealth.Proxy = proxyHealth
	}
	defer svcHealth.Close()
	m := metrics.New()
	ct := &conntrack.Cleaner{Log: log}
	// Trigger times of endpoint changes not yet in the kernel.
	var pendingMu sync.Mutex
	var pending []time.Time
	guard := &nodeport.Guard{Log: log, Hold: f.holdNodePorts, Metrics: m}
	defer guard.Close()
	if ks, ok := src.(*kube.Source); ok {
		ev := kube.NewEvents(ks.Client, node.Name, ks.ServiceUID)
		defer ev.Stop()
		guard.Events = ev
	}
	dp, err := f.dataplane(m, log)
	if err != nil {
		return err
	}
	removeOtherMode(ctx, log, c.Mode)
	runner := &proxy.Runner{
		Dataplane:     dp,
		Log:           log,
		MinSyncPeriod: c.MinSyncPeriod,
		SyncPeriod:    c.SyncPeriod,
		Metrics:       m,
		OnSynced: func(st *model.State) {
			pendingMu.Lock()
			for _, t := range pending {
				m.ObserveProgramming(time.Since(t))
			}
			pending = nil
			pendingMu.Unlock()
			ct.Synced(st)
			if c.NodePortReservation == "ports" {
				if err := reserveNodePorts(log, reserver, c, st); err != nil {
					log.Error("cannot reserve NodePorts as ephemeral-port exclusions", "err", err)
				}
			}
			guard.Update(st)
			svcHealth.Update(st)
		},
	}
	if c.MetricsBindAddress != "" {
		go func() {
			if err := m.ListenAndServe(ctx, c.MetricsBindAddress, c.EnableProfiling); err != nil {
				log.Error("metrics server stopped", "address", c.MetricsBindAddress, "err", err)
			}
		}()
	}
	if proxyHealth != nil {
		proxyHealth.Syncer = runner
		go func() {
			if err := proxyHealth.ListenAndServe(ctx, c.HealthzBindAddress); err != nil {
				log.Error("health check server stopped", "address", c.HealthzBindAddress, "err", err)
			}
		}()
	}
	log.Info("starting svcproxy", "mode", c.Mode, "node", node.Name, "clusterCIDR", c.ClusterCIDR,
		"minSyncPeriod", c.MinSyncPeriod.String(), "syncPeriod", c.SyncPeriod.String())
	srcErr := make(chan error, 1)
	var prev model.Input
	var builder model.Builder
	go func() {
		srcErr <- src.Run(ctx, func(in model.Input, objErrs []error) {
			cs := model.Changes(prev, in)
			prev = in
			m.CountChanges(cs.Services, cs.EndpointSlices)
			pendingMu.Lock()
			pending = append(pending, cs.Triggers...)
			pendingMu.Unlock()
			st, buildErrs := builder.Build(f.withServiceCIDRs(in), node)
			rejected := 0
			for _, e := range append(objErrs, buildErrs...) {
				switch model.Outcome(e) {
				case "warning":
					log.Warn(e.Error())
				case "partly used":
					log.Error("programming object partly: "+e.Error(), "err", e)
				default:
					rejected++
					log.Error("skipping object: "+e.Error(), "err", e)
				}
			}
			log.Info("Services loaded", "services", len(in.Services), "endpointSlices", len(in.EndpointSlices),
				"servicePorts", len(st.Services), "rejected", rejected)
			runner.Update(st)
		})
	}()
	go runner.Run(ctx)
	what, present := "iptables canary chain "+iptables.ChainCanary, iptables.Exec{}.CanaryPresent
	if c.Mode == "nftables" {
		what, present = "nftables table ip "+nftables.TableName, nftables.Present
	}
	go dataplane.Monitor(ctx, canaryInterval(c.SyncPeriod), log, what, present,
		func() bool { return !runner.LastSuccess().IsZero() },
		func() { dp.ForceFull(); runner.Resync() })
	select {
	case err := <-srcErr:
		if err != nil {
			return err
		}
	case <-ctx.Done():
	}
	log.Info("stopping; the rules stay in the kernel")
	return nil
}

// canaryInterval is how often the canary chains are checked: often enough
// that flushed rules come back well within the sync period.
func canaryInterval(syncPeriod time.Duration) time.Duration {
	return min(max(syncPeriod/4, 100*time.Millisecond), 5*time.Second)
}

func reservationState(stateDir string) string {
	return filepath.Join(stateDir, "reserved-ports.json")
}

// reserveNodePorts applies --nodeport-reservation: the whole range at start,
// the NodePorts in use after each sync (st), or nothing.
func reserveNodePorts(log *slog.Logger, r *nodeport.Reserver, c *config.Config, st *model.State) error {
	var want nodeport.PortSet
	switch c.NodePortReservation {
	case "range":
		if st != nil {
			return nil
		}
		var err error
		if want, err = nodeport.ParsePortSet(c.NodePortRange); err != nil {
			return err
		}
	case "ports":
		if st == nil {
			return nil // reserved after the first sync
		}
		for _, sp := range st.Services {
			if sp.NodePort != 0 {
				want.Add(int(sp.NodePort))
			}
		}
	}
	v, err := r.Reserve(want)
	if err != nil {
		return err
	}
	if st == nil {
		log.Info("ephemeral ports exclude the NodePorts", "mode", c.NodePortReservation, "ip_local_reserved_ports", v)
	}
	return nil
}

// dataplane is one syncer per IP family of the chosen mode.
func (f *runFlags) dataplane(m *metrics.Metrics, log *slog.Logger) (dataplane.Families, error) {
	c := &f.cfg
	var fs dataplane.Families
	for _, v6 := range []bool{false, true} {
		if v6 && !haveIPv6(c.Mode) {
			log.Info("no IPv6 on this node (or no ip6tables): programming IPv4 only")
			break
		}
		opts, err := f.optionsFor(v6)
		if err != nil {
			return nil, err
		}
		if c.Mode == "nftables" {
			fs = append(fs, &nftables.Syncer{Options: nftOptions(opts), Metrics: m, FullSyncPeriod: fullSyncPeriod})
			continue
		}
		run := iptables.Exec{}
		if v6 {
			run = iptables.IPv6Exec
		}
		fs = append(fs, &iptables.Syncer{Runner: run, Options: opts, Metrics: m, FullSyncPeriod: fullSyncPeriod})
	}
	return fs, nil
}

// fullSyncPeriod is how often a sync reads the kernel's rules and rewrites
// every Service, as upstream does (its FullSyncPeriod). The syncs every
// sync period in between are partial: they rewrite what changed, which when
// nothing did is nothing. A full rewrite every sync period would cost a 10k
// Service node 14 s of iptables-restore, or 2 s and a doubled record in
// nftables mode, twice a minute. Failures and flushed tables (the canary
// check) still make the next sync full.
const fullSyncPeriod = time.Hour

func haveIPv6(mode string) bool {
	if mode == "nftables" {
		return dataplane.KernelHasIPv6()
	}
	return iptables.HaveIPv6()
}

// modeFamilies are the syncers of one mode that cleanup works with.
func modeFamilies(mode string) dataplane.Families {
	if mode == "nftables" {
		fs := dataplane.Families{&nftables.Syncer{}}
		if dataplane.KernelHasIPv6() {
			fs = append(fs, &nftables.Syncer{Options: nftables.Options{IPv6: true}})
		}
		return fs
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		return nil
	}
	fs := dataplane.Families{&iptables.Syncer{Runner: iptables.Exec{}}}
	if iptables.HaveIPv6() {
		fs = append(fs, &iptables.Syncer{Runner: iptables.IPv6Exec, Options: iptables.Options{IPv6: true}})
	}
	return fs
}

// allModes are the syncers of both modes, for cleanup.
func allModes() dataplane.Families {
	return append(modeFamilies("iptables"), modeFamilies("nftables")...)
}

// removeOtherMode deletes the rules a run in the other mode left, so that a
// node switched between modes is never programmed twice.
func removeOtherMode(ctx context.Context, log *slog.Logger, mode string) {
	other := "nftables"
	if mode == "nftables" {
		other = "iptables"
	}
	removed, err := modeFamilies(other).Cleanup(ctx)
	switch {
	case err != nil:
		log.Error("cannot remove the rules of "+other+" mode left on this node", "err", err)
	case removed:
		log.Info("removed the rules " + other + " mode left on this node")
	}
}

// cleanupNode removes the rules and gives back the reserved ports.
func cleanupNode(log *slog.Logger, stateDir string) error {
	removed, err := allModes().Cleanup(context.Background())
	if err != nil {
		return err
	}
	v, err := (&nodeport.Reserver{StateFile: reservationState(stateDir)}).Release()
	if err != nil {
		return fmt.Errorf("give back reserved ports: %w", err)
	}
	log.Info("cleanup done", "rulesRemoved", removed, "ip_local_reserved_ports", v)
	return nil
}

// source picks the manifests folder or the API server.
func (f *runFlags) source(node model.Node, log *slog.Logger) (source, error) {
	c := &f.cfg
	if c.Manifests != "" {
		log.Info("standalone mode: following manifests", "folder", c.Manifests)
		return &dirSource{dir: &files.Dir{Path: c.Manifests, Node: node.Name}, log: log}, nil
	}
	var rc *rest.Config
	var err error
	switch {
	case c.Kubeconfig != "":
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", c.Kubeconfig, err)
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	default:
		return nil, fmt.Errorf("no source: give --kubeconfig FILE (or run in a pod) to follow an API server, or --manifests DIR for standalone mode")
	}
	rc.QPS, rc.Burst = c.QPS, int(c.Burst)
	rc.ContentType = c.ContentType
	rc.UserAgent = "svcproxy"
	client, err := kube.NewClient(rc)
	if err != nil {
		return nil, err
	}
	log.Info("following the API server", "host", rc.Host)
	return &kube.Source{Client: client, NodeName: node.Name, Log: log}, nil
}

type dirSource struct {
	dir *files.Dir
	log *slog.Logger
}

func (d *dirSource) Run(ctx context.Context, onChange func(model.Input, []error)) error {
	return d.dir.Watch(ctx, d.log, onChange)
}

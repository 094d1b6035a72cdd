package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/svcproxy/svcproxy/internal/agent"
	"github.com/svcproxy/svcproxy/internal/config"
	"github.com/svcproxy/svcproxy/internal/dataplane/modes"
	"github.com/svcproxy/svcproxy/internal/logging"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source"
	"github.com/svcproxy/svcproxy/internal/source/files"
	"github.com/svcproxy/svcproxy/internal/source/kube"
)

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
	"detect-local-mode":            func(d, s *config.Config) { d.DetectLocalMode = s.DetectLocalMode },
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
	mode, err := modes.ByName(f.cfg.Mode)
	if err != nil {
		return err
	}
	if err := mode.Check(); err != nil {
		return err
	}
	if f.cleanup {
		removed, reserved, err := agent.Cleanup(context.Background(), f.cfg.StateDir)
		if err != nil {
			return err
		}
		log.Info("cleanup done", "rulesRemoved", removed, "ip_local_reserved_ports", reserved)
		return nil
	}
	node, err := f.node()
	if err != nil {
		return err
	}
	src, err := f.source(node, log)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Settings: f.cfg, Mode: mode, Node: node, Options: f.optionsFor, Source: src,
		Input: f.withServiceCIDRs, HoldNodePorts: f.holdNodePorts, Log: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

// source picks the manifests folder or the API server.
func (f *runFlags) source(node model.Node, log *slog.Logger) (source.Source, error) {
	c := &f.cfg
	if c.Manifests != "" {
		log.Info("standalone mode: following manifests", "folder", c.Manifests)
		return &files.Dir{Path: c.Manifests, Node: node.Name, Log: log}, nil
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

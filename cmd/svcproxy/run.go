package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
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
	initOnly      bool
	version       string
	writeConfigTo string
}

func newRunCmd() *cobra.Command {
	cmd, _ := newRunCmdFlags()
	return cmd
}

// newRunCmdFlags is the run command and the settings its flags fill in.
func newRunCmdFlags() (*cobra.Command, *runFlags) {
	f := &runFlags{proxyFlags: newProxyFlags()}
	cmd := &cobra.Command{
		Use:   "run (--kubeconfig FILE | --manifests PATH)",
		Short: "Run the proxy: program the kernel for the Services and follow changes",
		Long: `Run the proxy on this node. Services and EndpointSlices come from the API
server (--kubeconfig, or the in-cluster service account when running in a pod)
or, standalone, from the manifests in --manifests PATH, where adding, editing or
removing a file is programmed within a second. An object that cannot be used
is logged with its name and field, and every other Service keeps working.

svcproxy never flushes: it rewrites its own chains in one atomic
iptables-restore per sync, so existing connections are untouched, and when it
stops the rules stay in the kernel. Until the API server caches have synced it
does not touch the rules at all.

The flags are kube-proxy's; svcproxy takes every Linux flag kube-proxy v1.37
has, and names the ones it does not act on in one warning at start. With
--config, a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) wins over
the flags that have a field in it, as in kube-proxy (--hostname-override and
-v still apply); fields svcproxy does not act on, and unknown fields, are
named in warnings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Flags(), cmd.OutOrStdout())
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
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "where svcproxy records what it changed on the node (reserved ports, sysctls), so cleanup can undo exactly that")
	fs.Float32Var(&c.QPS, "kube-api-qps", c.QPS, "queries per second to the API server")
	fs.Int32Var(&c.Burst, "kube-api-burst", c.Burst, "burst of queries to the API server")
	fs.StringVar(&c.ContentType, "kube-api-content-type", c.ContentType, "content type of requests sent to the API server")
	fs.BoolVar(&f.holdNodePorts, "hold-nodeports", false, "hold a listening socket on every NodePort (after its rules are committed) so no other process can take it")
	fs.IntVarP(&f.verbosity, "v", "v", 0, "log verbosity; 4 and above logs every sync")
	fs.StringVar(&c.Master, "master", c.Master, "the address of the API server (overrides the kubeconfig's)")
	fs.Var(&int32Ptr{&c.OOMScoreAdj}, "oom-score-adj", "the oom_score_adj of the svcproxy process, in [-1000, 1000] (kube-proxy's default -999: the OOM killer takes the proxy last)")
	ct := &c.Conntrack
	fs.Int32Var(&ct.MaxPerCore, "conntrack-max-per-core", ct.MaxPerCore, "raise nf_conntrack_max to this many entries per CPU (0 leaves it alone)")
	fs.Int32Var(&ct.Min, "conntrack-min", ct.Min, "raise nf_conntrack_max to at least this many entries")
	fs.DurationVar(&ct.TCPEstablishedTimeout, "conntrack-tcp-timeout-established", ct.TCPEstablishedTimeout, "idle timeout of established TCP connections (nf_conntrack_tcp_timeout_established; 0 leaves it alone)")
	fs.DurationVar(&ct.TCPCloseWaitTimeout, "conntrack-tcp-timeout-close-wait", ct.TCPCloseWaitTimeout, "timeout of TCP connections in CLOSE_WAIT (0 leaves it alone)")
	fs.BoolVar(&ct.TCPBeLiberal, "conntrack-tcp-be-liberal", ct.TCPBeLiberal, "set nf_conntrack_tcp_be_liberal: out-of-window packets are not INVALID (and then none are dropped as such)")
	fs.DurationVar(&ct.UDPTimeout, "conntrack-udp-timeout", ct.UDPTimeout, "idle timeout of unreplied UDP flows (0 leaves it alone)")
	fs.DurationVar(&ct.UDPStreamTimeout, "conntrack-udp-timeout-stream", ct.UDPStreamTimeout, "idle timeout of assured UDP flows (0 leaves it alone)")
	fs.BoolVar(&f.initOnly, "init-only", false, "set up the node (sysctls, NodePort reservation) and exit, as kube-proxy's init container does")
	fs.StringVar(&f.version, "version", "", "print the version and exit (--version or --version=raw)")
	fs.Lookup("version").NoOptDefVal = "true"
	fs.StringVar(&f.writeConfigTo, "write-config-to", "", "write the settings (flags and --config) as a KubeProxyConfiguration file and exit")
	registerUnacted(fs)
	return cmd, f
}

// int32Ptr is a flag that sets an optional int32.
type int32Ptr struct{ p **int32 }

func (v *int32Ptr) String() string {
	if v.p == nil || *v.p == nil {
		return ""
	}
	return strconv.Itoa(int(**v.p))
}

func (v *int32Ptr) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return err
	}
	i := int32(n)
	*v.p = &i
	return nil
}

func (v *int32Ptr) Type() string { return "int32" }

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
	"oom-score-adj":                func(d, s *config.Config) { d.OOMScoreAdj = s.OOMScoreAdj },
	"master":                       func(d, s *config.Config) { d.Master = s.Master },
	"feature-gates":                func(d, s *config.Config) { d.FeatureGates = s.FeatureGates },
	// The conntrack flags: the file wins over them (fileWinsOver).
	"proxy-mode":               func(d, s *config.Config) { d.Mode = s.Mode },
	"iptables-sync-period":     func(d, s *config.Config) { d.SyncPeriod = s.SyncPeriod },
	"iptables-min-sync-period": func(d, s *config.Config) { d.MinSyncPeriod = s.MinSyncPeriod },
	"healthz-bind-address":     func(d, s *config.Config) { d.HealthzBindAddress = s.HealthzBindAddress },
	"metrics-bind-address":     func(d, s *config.Config) { d.MetricsBindAddress = s.MetricsBindAddress },
	"profiling":                func(d, s *config.Config) { d.EnableProfiling = s.EnableProfiling },
	"kube-api-qps":             func(d, s *config.Config) { d.QPS = s.QPS },
	"kube-api-burst":           func(d, s *config.Config) { d.Burst = s.Burst },
	"kube-api-content-type":    func(d, s *config.Config) { d.ContentType = s.ContentType },
	"nodeport-reservation":     func(d, s *config.Config) { d.NodePortReservation = s.NodePortReservation },
	"service-node-port-range":  func(d, s *config.Config) { d.NodePortRange = s.NodePortRange },
	"state-dir":                func(d, s *config.Config) { d.StateDir = s.StateDir },
}

// resolve works out the settings from the flags and the --config file, as
// kube-proxy does, and returns the warnings to log about them.
func (f *runFlags) resolve(fs *pflag.FlagSet) (warnings []string, err error) {
	if f.configFile != "" {
		fromFile := config.Defaults()
		unsupported, lenient, err := config.LoadFile(f.configFile, &fromFile)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, lenient...)
		if len(unsupported) > 0 {
			warnings = append(warnings, fmt.Sprintf("--config %s: fields svcproxy takes and does not act on: %s", f.configFile, strings.Join(unsupported, ", ")))
		}
		if ignored := ignoredForFile(fs); len(ignored) > 0 {
			warnings = append(warnings, fmt.Sprintf("%s: the --config file wins over these flags, as in kube-proxy", strings.Join(ignored, ", ")))
		}
		fs.Visit(func(fl *pflag.Flag) {
			if copyField, ok := flagFields[fl.Name]; ok && !slices.Contains(fileWinsOver, fl.Name) {
				copyField(&fromFile, &f.cfg)
			}
		})
		f.cfg = fromFile
	}
	if f.cfg.Mode == "nftables" && fs.Changed("iptables-masquerade-bit") && f.configFile == "" {
		warnings = append(warnings, "--iptables-masquerade-bit applies to iptables mode only, as in kube-proxy; nftables mode takes nftables.masqueradeBit from a --config file (default 14)")
	}
	if unacted := f.cfg.FeatureGates.Unacted(); unacted != "" {
		warnings = append(warnings, "feature gates that make no difference to svcproxy: "+unacted)
	}
	if given := unactedGiven(fs); given != "" {
		warnings = append(warnings, "kube-proxy flags taken and not acted on: "+given)
	}
	f.cfg.Normalize()
	return warnings, f.cfg.Validate()
}

func (f *runFlags) run(fs *pflag.FlagSet, out io.Writer) error {
	if f.version != "" {
		fmt.Fprintln(out, versionText(f.version == "raw"))
		return nil
	}
	log := logging.New(os.Stderr, f.verbosity)
	warnings, err := f.resolve(fs)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if f.writeConfigTo != "" {
		if err := f.cfg.WriteFile(f.writeConfigTo); err != nil {
			return err
		}
		log.Info("wrote the configuration", "file", f.writeConfigTo)
		return nil
	}
	mode, err := modes.ByName(f.cfg.Mode)
	if err != nil {
		return err
	}
	if err := mode.Check(); err != nil {
		return err
	}
	if f.cleanup {
		c, err := agent.Cleanup(context.Background(), f.cfg.StateDir)
		if err != nil {
			return err
		}
		log.Info("cleanup done", "rulesRemoved", c.Removed, "ip_local_reserved_ports", c.Reserved, "sysctlsRestored", len(c.Restored))
		return nil
	}
	if f.initOnly {
		return agent.Init(agent.Config{Settings: f.cfg, Mode: mode, Options: f.optionsFor, Log: log})
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
		Flags: flagValues(fs), Version: versionText(true),
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
	case c.Kubeconfig != "" || c.Master != "":
		rc, err = clientcmd.BuildConfigFromFlags(c.Master, c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %q --master %q: %w", c.Kubeconfig, c.Master, err)
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	default:
		return nil, fmt.Errorf("no source: give --kubeconfig FILE (or run in a pod) to follow an API server, or --manifests PATH for standalone mode")
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

// flagValues is every flag of fs with its value, given or default.
func flagValues(fs *pflag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/logging"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
	"github.com/svcproxy/svcproxy/internal/proxy"
	"github.com/svcproxy/svcproxy/internal/source/files"
	"github.com/svcproxy/svcproxy/internal/sysctl"
)

func newRunCmd() *cobra.Command {
	var (
		pf            proxyFlags
		proxyMode     string
		syncPeriod    time.Duration
		minSyncPeriod time.Duration
		holdNodePorts bool
		verbosity     int
	)
	cmd := &cobra.Command{
		Use:   "run --manifests DIR",
		Short: "Run the proxy: program the kernel for the Services in DIR and follow changes",
		Long: `Run the proxy on this node. Services and EndpointSlices are read from the
manifests in --manifests DIR (standalone mode); adding, editing or removing a
file is programmed within a second. An object that cannot be used is logged
with its file, name and field, and every other Service keeps working.

svcproxy never flushes: it rewrites its own chains in one atomic
iptables-restore per sync, so existing connections are untouched, and when it
stops the rules stay in the kernel.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logging.New(os.Stderr, verbosity)
			if pf.manifests == "" {
				return fmt.Errorf("--manifests is required (the API server source is not available yet)")
			}
			if proxyMode != "iptables" && proxyMode != "" {
				return fmt.Errorf("--proxy-mode %q: only \"iptables\" is supported", proxyMode)
			}
			if syncPeriod <= 0 {
				return fmt.Errorf("--iptables-sync-period %s: must be greater than 0", syncPeriod)
			}
			if minSyncPeriod < 0 || minSyncPeriod > syncPeriod {
				return fmt.Errorf("--iptables-min-sync-period %s: must be between 0 and --iptables-sync-period (%s)", minSyncPeriod, syncPeriod)
			}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			node, err := pf.node()
			if err != nil {
				return err
			}
			for _, bin := range []string{"iptables-save", "iptables-restore"} {
				if _, err := exec.LookPath(bin); err != nil {
					return fmt.Errorf("%s not found in PATH: install the iptables package", bin)
				}
			}
			if opts.LocalhostNodePorts {
				if changed, err := sysctl.Ensure("net.ipv4.conf.all.route_localnet", "1"); err != nil {
					log.Error("cannot enable localhost NodePorts", "err", err)
				} else if changed {
					log.Info("set net.ipv4.conf.all.route_localnet=1 so NodePorts answer on 127.0.0.1")
				}
			}

			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			guard := &nodeport.Guard{Log: log, Hold: holdNodePorts}
			defer guard.Close()
			runner := &proxy.Runner{
				Dataplane:     &iptables.Syncer{Runner: iptables.Exec{}, Options: opts},
				Log:           log,
				MinSyncPeriod: minSyncPeriod,
				SyncPeriod:    syncPeriod,
				OnSynced:      func(st *model.State) { guard.Update(st) },
			}
			log.Info("starting svcproxy", "mode", "iptables", "manifests", pf.manifests, "node", node.Name,
				"clusterCIDR", pf.clusterCIDR, "minSyncPeriod", minSyncPeriod.String(), "syncPeriod", syncPeriod.String())
			watchErr := make(chan error, 1)
			go func() {
				dir := &files.Dir{Path: pf.manifests}
				watchErr <- dir.Watch(ctx, log, func(in model.Input, objErrs []error) {
					st, buildErrs := model.Build(in, node)
					for _, e := range append(objErrs, buildErrs...) {
						log.Error("skipping object: "+e.Error(), "err", e)
					}
					log.Info("manifests loaded", "services", len(in.Services), "endpointSlices", len(in.EndpointSlices),
						"servicePorts", len(st.Services), "rejected", len(objErrs)+len(buildErrs))
					runner.Update(st)
				})
			}()
			go runner.Run(ctx)
			select {
			case err := <-watchErr:
				if err != nil {
					return err
				}
			case <-ctx.Done():
			}
			log.Info("stopping; the rules stay in the kernel")
			return nil
		},
	}
	pf.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&proxyMode, "proxy-mode", "iptables", "which proxy mode to use: only 'iptables' for now")
	fs.DurationVar(&syncPeriod, "iptables-sync-period", 30*time.Second, "the longest time between two syncs of the rules")
	fs.DurationVar(&minSyncPeriod, "iptables-min-sync-period", time.Second, "the shortest time between two syncs; changes that arrive meanwhile are applied together (0 syncs on every change)")
	fs.BoolVar(&holdNodePorts, "hold-nodeports", false, "hold a listening socket on every NodePort (after its rules are committed) so no other process can take it")
	fs.IntVarP(&verbosity, "v", "v", 0, "log verbosity; 4 and above logs every sync")
	return cmd
}

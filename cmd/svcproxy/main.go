// Command svcproxy is a Kubernetes service proxy: it programs netfilter so
// that Service traffic reaches pods, as kube-proxy does in iptables mode.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		if !errors.Is(err, errFindings) {
			fmt.Fprintf(os.Stderr, "svcproxy: %v\n", err)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "svcproxy",
		Short: "A Kubernetes service proxy that explains itself",
		Long: `svcproxy makes Service traffic (ClusterIP, NodePort, LoadBalancer, externalIPs)
reach pods by programming the kernel's netfilter with the same chains
kube-proxy writes in iptables mode, and explains itself: trace, explain, graph
and doctor say where packets go and what is wrong on a node.

Rules outlive the process: if svcproxy stops, existing Services keep working,
and a restart reconciles without flushing.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionText(true),
	}
	root.SetVersionTemplate(versionText(false) + "\n")
	root.AddCommand(newRunCmd(), newRulesCmd(), newCleanupCmd(), newLabCmd(), newTraceCmd(), newExplainCmd(), newGraphCmd(), newDoctorCmd(), newServicesCmd(), newVersionCmd())
	registerCompletions(root)
	return root
}

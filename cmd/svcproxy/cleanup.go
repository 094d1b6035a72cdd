package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/agent"
	"github.com/svcproxy/svcproxy/internal/config"
)

func newCleanupCmd() *cobra.Command {
	stateDir := config.Defaults().StateDir
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove every rule and chain svcproxy installed, and nothing else",
		Long: `Remove svcproxy's rules of both modes: in iptables mode its chains
(KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, ...) and the jumps to them from the
built-in chains, in a few iptables-restore runs per table (jumps first, then
chains in batches of 2,500); in nftables mode the tables
ip kube-proxy and ip6 kube-proxy. Rules, chains and tables of other programs
are left as they are. Like kube-proxy's --cleanup, this also removes rules
upstream kube-proxy wrote.
The NodePorts svcproxy added to net.ipv4.ip_local_reserved_ports are given
back (the operator's own entries stay), and the sysctls svcproxy changed
(route_localnet for localhost NodePorts) get their values from before it back.
Each is read back from the kernel and printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := agent.Cleanup(context.Background(), stateDir)
			if err != nil {
				return err
			}
			if c.Removed {
				fmt.Println("removed svcproxy's rules")
			} else {
				fmt.Println("no svcproxy rules found; nothing to do")
			}
			fmt.Printf("net.ipv4.ip_local_reserved_ports = %q\n", c.Reserved)
			for _, s := range c.Restored {
				fmt.Printf("%s = %q (restored)\n", s.Name, s.Value)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", stateDir, "where svcproxy recorded the ports it reserved and the sysctls it changed (as given to run)")
	return cmd
}

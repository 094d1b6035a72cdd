package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
)

func newCleanupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove every rule and chain svcproxy installed, and nothing else",
		Long: `Remove svcproxy's chains (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, ...) and the
jumps to them from the built-in chains, in one iptables-restore per table.
Rules and chains of other programs are left as they are. Like kube-proxy's
--cleanup, this also removes rules upstream kube-proxy wrote in iptables mode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := &iptables.Syncer{Runner: iptables.Exec{}}
			removed, err := s.Cleanup(context.Background())
			if err != nil {
				return err
			}
			if removed {
				fmt.Println("removed svcproxy's iptables rules")
			} else {
				fmt.Println("no svcproxy rules found; nothing to do")
			}
			return nil
		},
	}
}

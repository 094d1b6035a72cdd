package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source/files"
)

func newRulesCmd() *cobra.Command {
	pf := newProxyFlags()
	cmd := &cobra.Command{
		Use:   "rules --manifests DIR",
		Short: "Print the rules svcproxy would apply, without touching the kernel",
		Long: `Print the rules svcproxy would apply for the manifests in DIR on a node
without svcproxy's rules. In iptables mode (the default) that is
iptables-restore input: the full filter and nat tables, including the jumps
from the built-in chains. With --proxy-mode nftables it is the kube-proxy
table(s) as "nft list table ip kube-proxy" prints them.

Objects that cannot be used are reported on stderr, one line each; the rules
for every other Service are still printed, and the exit code is 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pf.cfg.Manifests == "" {
				return fmt.Errorf("--manifests is required")
			}
			if err := pf.cfg.Validate(); err != nil {
				return err
			}
			node, err := pf.node()
			if err != nil {
				return err
			}
			d := &files.Dir{Path: pf.cfg.Manifests, Node: node.Name}
			in, objErrs, _, err := d.Load()
			if err != nil {
				return err
			}
			st, buildErrs := model.Build(in, node)
			objErrs = append(objErrs, buildErrs...)
			text, err := pf.renderText(&st)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), text); err != nil {
				return err
			}
			for _, e := range objErrs {
				fmt.Fprintf(cmd.ErrOrStderr(), "svcproxy: skipped: %v\n", e)
			}
			if len(objErrs) > 0 {
				return fmt.Errorf("%d object(s) could not be used (see above); the rules for the others are printed", len(objErrs))
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	return cmd
}

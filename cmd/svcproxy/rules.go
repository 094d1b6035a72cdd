package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source/files"
)

func newRulesCmd() *cobra.Command {
	pf := newProxyFlags()
	cmd := &cobra.Command{
		Use:   "rules --manifests DIR",
		Short: "Print the iptables-restore input svcproxy would apply, without touching the kernel",
		Long: `Print the iptables-restore input svcproxy would apply for the manifests in DIR
on a node without svcproxy's rules: the full filter and nat tables, including
the jumps from the built-in chains.

Objects that cannot be used are reported on stderr, one line each; the rules
for every other Service are still printed, and the exit code is 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pf.cfg.Manifests == "" {
				return fmt.Errorf("--manifests is required")
			}
			opts, err := pf.options()
			if err != nil {
				return err
			}
			node, err := pf.node()
			if err != nil {
				return err
			}
			d := &files.Dir{Path: pf.cfg.Manifests}
			in, objErrs, _, err := d.Load()
			if err != nil {
				return err
			}
			st, buildErrs := model.Build(in, node)
			objErrs = append(objErrs, buildErrs...)
			if _, err := cmd.OutOrStdout().Write(iptables.Compose(iptables.Render(&st, opts), nil)); err != nil {
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

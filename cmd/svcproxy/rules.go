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
		Use:   "rules --manifests PATH",
		Short: "Print the rules svcproxy would apply, without touching the kernel",
		Long: `Print the rules svcproxy would apply for the manifests in DIR on a node
without svcproxy's rules. In iptables mode (the default) that is
iptables-restore input: the full filter and nat tables, including the jumps
from the built-in chains. With --proxy-mode nftables it is the kube-proxy
table(s) as "nft list table ip kube-proxy" prints them.

Objects that cannot be used are reported on stderr, one line each ("skipped",
or "partly used" when only a field is left out); the rules for everything else
are still printed, and the exit code is 1. Legacy forms (IPs with leading
zeros) are read as upstream reads them, with a warning.`,
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
			st, buildErrs := model.Build(pf.withServiceCIDRs(in), node)
			objErrs = append(objErrs, buildErrs...)
			text, err := pf.renderText(&st)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), text); err != nil {
				return err
			}
			if n := reportObjectErrors(cmd.ErrOrStderr(), objErrs); n > 0 {
				return fmt.Errorf("%d object(s) could not be used whole (see above); the rules for everything else are printed", n)
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	return cmd
}

// reportObjectErrors writes one line per error, saying what it did to its
// object, and returns how many left something out (warnings do not count).
func reportObjectErrors(w io.Writer, errs []error) int {
	n := 0
	for _, e := range errs {
		outcome := model.Outcome(e)
		if outcome != "warning" {
			n++
		}
		fmt.Fprintf(w, "svcproxy: %s: %v\n", outcome, e)
	}
	return n
}

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/dataplane/modes"
)

// versionText says which svcproxy this is: the module version and commit
// Go recorded at build time, the Go version, and the proxy modes it has.
// raw is the bare version.
func versionText(raw bool) string {
	version, commit, dirty := "(devel)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	if raw {
		return version
	}
	var names []string
	for _, m := range modes.All {
		names = append(names, m.Name)
	}
	return fmt.Sprintf("svcproxy %s\ncommit: %s%s\ngo: %s %s/%s\nproxy modes: %v", version, commit, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH, names)
}

func newVersionCmd() *cobra.Command {
	raw := false
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print svcproxy's version, commit, Go version and proxy modes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionText(raw))
			return nil
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "print the version alone")
	return cmd
}

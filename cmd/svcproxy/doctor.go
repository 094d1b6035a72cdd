package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/doctor"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source/files"
)

// errFindings makes doctor exit non-zero without repeating what it printed.
var errFindings = errors.New("doctor found problems (see above)")

func newDoctorCmd() *cobra.Command {
	var (
		output    string
		healthz   string
		manifests string
		hostname  string
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this node for what stops Services from working, and say what to do",
		Long: `Check this node: is a proxy running and syncing, are the Service rules there,
does another process hold a NodePort (named by pid and command), do
iptables-legacy and iptables-nft both hold KUBE rules, are ip_forward,
route_localnet and the NodePort reservation in ip_local_reserved_ports right,
how full is the conntrack table, are there stale per-Service chains.

Each finding says what it means and what to do. The exit code is 1 when a
check fails (warnings alone exit 0). Works on kube-proxy nodes too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: must be text or json", output)
			}
			opts := doctor.Options{HealthzAddress: healthz}
			if manifests != "" {
				in, _, _, err := (&files.Dir{Path: manifests, Node: hostname}).Load()
				if err != nil {
					return err
				}
				st, _ := model.Build(in, model.Node{Name: hostname})
				opts.Expected = &st
			}
			fs := doctor.Run(doctor.Live{HealthzURL: "http://" + healthz + "/healthz"}, opts)
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), fs); err != nil {
					return err
				}
			} else {
				writeFindings(cmd.OutOrStdout(), fs)
			}
			if doctor.Failed(fs) {
				return errFindings
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&healthz, "healthz-address", "127.0.0.1:10256", "where the proxy serves /healthz")
	cmd.Flags().StringVar(&manifests, "manifests", "", "also check that every Service in these manifests has rules")
	cmd.Flags().StringVar(&hostname, "hostname-override", "", "with --manifests: this node's name")
	return cmd
}

func writeFindings(w io.Writer, fs []doctor.Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s  %-18s %s\n", strings.ToUpper(string(f.Status)), f.Check, f.Summary)
		for _, d := range f.Details {
			fmt.Fprintf(w, "      %-18s - %s\n", "", d)
		}
		if f.Meaning != "" {
			fmt.Fprintf(w, "      %-18s means: %s\n", "", f.Meaning)
		}
		if f.Action != "" {
			fmt.Fprintf(w, "      %-18s do: %s\n", "", f.Action)
		}
	}
}

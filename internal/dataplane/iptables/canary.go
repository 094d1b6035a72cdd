package iptables

import (
	"context"
	"os/exec"
	"strings"
)

// canaryTables are the tables a canary chain is kept in.
var canaryTables = []string{"mangle", "nat", "filter"}

// CanaryPresent reports whether every canary chain exists and the jumps
// into our chains from nat PREROUTING and filter FORWARD are still there.
// Upstream watches the canary chains only; checking the jumps too catches a
// plain "iptables -F", which empties chains without deleting them. An error
// other than "not found" (no iptables at all) counts as present: there is
// nothing to resync into.
func (e Exec) CanaryPresent(ctx context.Context) bool {
	var checks [][]string
	for _, t := range canaryTables {
		checks = append(checks, []string{"-t", t, "-S", ChainCanary})
	}
	for _, j := range jumps {
		if (j.table == "nat" && j.from == "PREROUTING") || (j.table == "filter" && j.from == "FORWARD" && j.to == chainForward) {
			checks = append(checks, append([]string{"-t", j.table, "-C", j.from}, unquoted(j.args())...))
		}
	}
	for _, c := range checks {
		args := append(append(append([]string{}, e.Prefix...), e.iptablesCmd(), "-w"), c...)
		if err := exec.CommandContext(ctx, args[0], args[1:]...).Run(); err != nil {
			if _, ok := err.(*exec.ExitError); ok {
				return false
			}
		}
	}
	return true
}

// unquoted turns restore-style arguments into exec arguments.
func unquoted(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.Trim(a, `"`)
	}
	return out
}

package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/explain"
)

// fixedFlagValues are the values shells complete for flags that take one of a
// few words; "output" depends on the command.
var fixedFlagValues = map[string][]string{
	"proxy-mode": {"iptables", "nftables"},
	"direction":  {"arriving", "local"},
	"proto":      {"tcp", "udp", "sctp"},
}

var outputValues = map[string][]string{
	"trace":    {"text", "json"},
	"explain":  {"text", "json"},
	"doctor":   {"text", "json"},
	"graph":    {"dot", "svg", "png"},
	"services": {"wide", "json"},
}

// registerCompletions adds the completions of every command's fixed-word
// flags (cobra's `svcproxy completion bash|zsh|fish` scripts use them).
func registerCompletions(root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for name, values := range fixedFlagValues {
			if c.Flags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		if values, ok := outputValues[c.Name()]; ok && c.Flags().Lookup("output") != nil {
			_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeServices completes NAMESPACE/NAME from the rules the command would
// read (this node's, --rules or --manifests as given so far).
func completeServices(src *ruleSource) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		l, err := src.load(cmd.Context(), cmd.InOrStdin())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, name := range serviceNames(l) {
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// serviceNames are the Services ("ns/name") the rules name, in chain names
// and comments, sorted.
func serviceNames(l *loaded) []string {
	seen := map[string]bool{}
	add := func(spn string) {
		if spn != "" {
			name, _, _ := strings.Cut(spn, ":")
			seen[name] = true
		}
	}
	if l.nft != nil {
		for _, t := range l.nft.Tables {
			for _, c := range t.Chains {
				add(l.idx.Service(c.Name))
			}
			for _, s := range t.Sets {
				for _, e := range s.Elements {
					add(explain.ServiceInComment(e.Comment))
				}
			}
		}
	} else {
		for _, t := range l.rs.Tables {
			for _, c := range t.Chains {
				for _, r := range c.Rules {
					add(explain.ServiceInComment(r.Comment()))
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// unactedFlag is one of kube-proxy's Linux flags that svcproxy takes
// without acting on it, and why. A DaemonSet written for kube-proxy then
// starts as it is; every such flag it gives is named in one warning.
type unactedFlag struct {
	name, kind, why string
}

// unactedFlags are kube-proxy v1.37's Linux flags svcproxy does not act on
// (yet, or ever:
// IPVS mode, and flags of upstream's own logging and metrics machinery).
var unactedFlags = []unactedFlag{
	{"bind-address", "ip", "the node's IPs come from its Node object"},
	{"bind-address-hard-fail", "bool", "svcproxy serves nothing on --bind-address"},
	{"config-sync-period", "duration", "svcproxy's informers do not resync: every change arrives as an event"},
	{"ipvs-exclude-cidrs", "strings", "svcproxy has no IPVS mode"},
	{"ipvs-min-sync-period", "duration", "svcproxy has no IPVS mode"},
	{"ipvs-scheduler", "string", "svcproxy has no IPVS mode"},
	{"ipvs-strict-arp", "bool", "svcproxy has no IPVS mode"},
	{"ipvs-sync-period", "duration", "svcproxy has no IPVS mode"},
	{"ipvs-tcp-timeout", "duration", "svcproxy has no IPVS mode"},
	{"ipvs-tcpfin-timeout", "duration", "svcproxy has no IPVS mode"},
	{"ipvs-udp-timeout", "duration", "svcproxy has no IPVS mode"},
	{"log-flush-frequency", "duration", "svcproxy writes each log line as it comes"},
	{"log-json-info-buffer-size", "string", "svcproxy logs text"},
	{"log-json-split-stream", "bool", "svcproxy logs text"},
	{"log-text-info-buffer-size", "string", "svcproxy writes each log line as it comes"},
	{"log-text-split-stream", "bool", "svcproxy logs to stderr"},
	{"logging-format", "string", "svcproxy logs text"},
	{"show-hidden-metrics-for-version", "string", "svcproxy hides no metrics"},
	{"vmodule", "string", "svcproxy's verbosity is one level (-v)"},
}

// registerUnacted adds the flags to fs, each saying in its help that it is
// taken and not acted on.
func registerUnacted(fs *pflag.FlagSet) {
	for _, f := range unactedFlags {
		usage := "kube-proxy's; taken and not acted on: " + f.why
		switch f.kind {
		case "bool":
			fs.Bool(f.name, false, usage)
		case "duration":
			fs.Duration(f.name, 0, usage)
		case "int32":
			fs.Int32(f.name, 0, usage)
		case "strings":
			fs.StringSlice(f.name, nil, usage)
		default:
			fs.String(f.name, "", usage)
		}
	}
}

// unactedGiven names the unacted flags given on the command line, with why
// each is not acted on; "" when none was.
func unactedGiven(fs *pflag.FlagSet) string {
	var said []string
	for _, f := range unactedFlags {
		if fs.Changed(f.name) {
			said = append(said, fmt.Sprintf("--%s (%s)", f.name, f.why))
		}
	}
	return strings.Join(said, ", ")
}

// fileWinsOver are the flags a --config file wins over, as in kube-proxy
// (whose file replaces its flags but for --hostname-override and the
// logging flags): those with a KubeProxyConfiguration field.
var fileWinsOver = []string{
	"kubeconfig", "cluster-cidr", "masquerade-all", "iptables-localhost-nodeports", "nodeport-addresses", "proxy-mode",
	"iptables-sync-period", "iptables-min-sync-period", "healthz-bind-address", "metrics-bind-address", "profiling",
	"kube-api-qps", "kube-api-burst", "kube-api-content-type", "detect-local-mode", "oom-score-adj",
	"conntrack-max-per-core", "conntrack-min", "conntrack-tcp-timeout-established", "conntrack-tcp-timeout-close-wait",
	"conntrack-tcp-be-liberal", "conntrack-udp-timeout", "conntrack-udp-timeout-stream", "iptables-masquerade-bit",
	"pod-bridge-interface", "pod-interface-name-prefix", "feature-gates",
}

// ignoredForFile names the flags given on the command line that the
// --config file overrides.
func ignoredForFile(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *pflag.Flag) {
		if slices.Contains(fileWinsOver, f.Name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

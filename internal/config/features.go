package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// LocalhostNodePortsGate is upstream's gate for localhost NodePorts in
// nftables mode (alpha in v1.37, off by default).
const LocalhostNodePortsGate = "KubeProxyNFTablesLocalhostNodePorts"

// FeatureGates are the feature gates given (--feature-gates, the config
// file's featureGates), by their Kubernetes names.
type FeatureGates map[string]bool

// gate is one of the feature gates kube-proxy v1.37 reads: its stage and
// default there, and what svcproxy does whatever it is set to ("" when
// svcproxy acts on it).
type gate struct {
	stage  string // alpha, beta, ga, deprecated
	def    bool
	always string
}

// kubeProxyGates are the gates kube-proxy v1.37's code looks at.
var kubeProxyGates = map[string]gate{
	LocalhostNodePortsGate:          {stage: "alpha"},
	"AllowServiceExternalIPs":       {stage: "ga", def: true, always: "svcproxy always serves spec.externalIPs"},
	"ComponentFlagz":                {stage: "alpha", always: "svcproxy always serves /flagz"},
	"ComponentStatusz":              {stage: "alpha", always: "svcproxy always serves /statusz"},
	"KubeProxyIPVS":                 {stage: "deprecated", def: true, always: "svcproxy has no IPVS mode"},
	"MultiCIDRServiceAllocator":     {stage: "ga", def: true, always: "svcproxy always watches ServiceCIDRs"},
	"NativeHistograms":              {stage: "alpha", always: "svcproxy's histograms are classic ones"},
	"NFTablesNetlink":               {stage: "beta", def: true, always: "svcproxy always programs nftables over netlink"},
	"PreferSameTrafficDistribution": {stage: "ga", def: true, always: "svcproxy always follows trafficDistribution: PreferSameNode"},
}

// ParseFeatureGates reads "Name=true,Other=false" (--feature-gates).
func ParseFeatureGates(s string) (FeatureGates, error) {
	g := FeatureGates{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		name, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want NAME=true or NAME=false", kv)
		}
		on, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q: %s is not true or false", kv, strings.TrimSpace(v))
		}
		g[strings.TrimSpace(name)] = on
	}
	return g, nil
}

// String is the flag form, sorted by name.
func (g FeatureGates) String() string {
	var parts []string
	for _, name := range g.names() {
		parts = append(parts, name+"="+strconv.FormatBool(g[name]))
	}
	return strings.Join(parts, ",")
}

func (g FeatureGates) names() []string {
	names := make([]string, 0, len(g))
	for n := range g {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Enabled reports whether a gate is on: as given, else as AllAlpha or
// AllBeta say for its stage, else its default in kube-proxy v1.37.
func (g FeatureGates) Enabled(name string) bool {
	if on, ok := g[name]; ok {
		return on
	}
	kg := kubeProxyGates[name]
	switch kg.stage {
	case "alpha":
		if on, ok := g["AllAlpha"]; ok {
			return on
		}
	case "beta":
		if on, ok := g["AllBeta"]; ok {
			return on
		}
	}
	return kg.def
}

// Unacted names the gates given that make no difference to svcproxy,
// each with why; "" when there are none.
func (g FeatureGates) Unacted() string {
	var said []string
	for _, name := range g.names() {
		kg, known := kubeProxyGates[name]
		switch {
		case name == "AllAlpha" || name == "AllBeta":
			continue
		case !known:
			said = append(said, fmt.Sprintf("%s (not a gate kube-proxy reads)", name))
		case kg.always != "":
			said = append(said, fmt.Sprintf("%s=%t (%s)", name, g[name], kg.always))
		}
	}
	return strings.Join(said, ", ")
}

// Set merges "Name=true,..." into g, as --feature-gates given more than
// once does (pflag.Value).
func (g *FeatureGates) Set(s string) error {
	parsed, err := ParseFeatureGates(s)
	if err != nil {
		return err
	}
	if *g == nil {
		*g = FeatureGates{}
	}
	for name, on := range parsed {
		(*g)[name] = on
	}
	return nil
}

// Type is the flag's value type in --help.
func (g *FeatureGates) Type() string { return "mapStringBool" }

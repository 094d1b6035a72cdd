package main

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/svcproxy/svcproxy/internal/config"
	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/modes"
	"github.com/svcproxy/svcproxy/internal/model"
)

// proxyFlags are the settings shared by the commands that build rules, bound
// to kube-proxy's flag names.
type proxyFlags struct {
	cfg config.Config
	// localAddrs are the node's addresses (for rules and trace: --local-ip);
	// nil means this host's.
	localAddrs []netip.Addr
}

const proxyModeHelp = "which proxy mode to use: 'iptables' or 'nftables' (tables ip/ip6 kube-proxy, dispatch through verdict maps; programmed over netlink, no nft binary needed). A node running in one mode has the other mode's rules removed"

func newProxyFlags() proxyFlags { return proxyFlags{cfg: config.Defaults()} }

func (f *proxyFlags) register(fs *pflag.FlagSet) {
	c := &f.cfg
	fs.StringVar(&c.Mode, "proxy-mode", c.Mode, proxyModeHelp)
	fs.StringVar(&c.Manifests, "manifests", c.Manifests, "a folder of Service and EndpointSlice manifests (*.yaml, *.yml, *.json) or one manifest file, read as kubectl apply -f reads them, and watched for changes")
	fs.StringVar(&c.HostnameOverride, "hostname-override", c.HostnameOverride, "the name of this node, matched against EndpointSlice nodeName (default: the host name)")
	fs.StringVar(&c.ClusterCIDR, "cluster-cidr", c.ClusterCIDR, "the pod CIDR (for dual-stack, an IPv4 and an IPv6 CIDR separated by a comma); traffic to cluster IPs from outside it is masqueraded")
	fs.BoolVar(&c.MasqueradeAll, "masquerade-all", c.MasqueradeAll, "masquerade all traffic sent to cluster IPs")
	fs.BoolVar(&c.LocalhostNodePorts, "iptables-localhost-nodeports", c.LocalhostNodePorts, "answer NodePorts on 127.0.0.1 (sets route_localnet, and drops 127.0.0.0/8 traffic from other hosts: CVE-2020-8558)")
	fs.StringSliceVar(&c.NodePortAddresses, "nodeport-addresses", c.NodePortAddresses, "answer NodePorts only on the node's addresses in these CIDRs, or keywords: \"primary\" (the Node object's primary IP), \"localhost\" (127.0.0.0/8 and ::1/128), \"all\"; default: every address in iptables mode, primary in nftables mode, as kube-proxy")
	fs.Int32Var(&c.MasqueradeBit, "iptables-masquerade-bit", c.MasqueradeBit, "the packet mark bit (0-31) that asks for masquerading in iptables mode; pick one no other component of the node uses (nftables mode, as kube-proxy, takes its bit from the config file's nftables.masqueradeBit, default 14)")
	fs.StringVar(&c.DetectLocalMode, "detect-local-mode", c.DetectLocalMode, "how pod traffic is told apart: ClusterCIDR (its source is in --cluster-cidr), NodeCIDR (in this node's spec.podCIDRs, from its Node object), BridgeInterface (it arrives on --pod-bridge-interface) or InterfaceNamePrefix (on an interface named --pod-interface-name-prefix...)")
	fs.StringVar(&c.PodBridgeInterface, "pod-bridge-interface", c.PodBridgeInterface, "the pods' bridge, with --detect-local-mode BridgeInterface")
	fs.StringVar(&c.PodInterfacePrefix, "pod-interface-name-prefix", c.PodInterfacePrefix, "the prefix of the pods' interface names, with --detect-local-mode InterfaceNamePrefix")
	fs.Var(&c.FeatureGates, "feature-gates", "kube-proxy's feature gates, NAME=true|false,... (AllAlpha and AllBeta too); svcproxy acts on "+config.LocalhostNodePortsGate+" (localhost NodePorts in nftables mode) and names the others it is given in a warning")
	fs.StringSliceVar(&c.ServiceCIDRs, "service-cidrs", c.ServiceCIDRs, "the ranges cluster IPs come from, besides those of ServiceCIDR objects; nftables mode drops traffic to their addresses that no Service holds")
}

// withServiceCIDRs adds --service-cidrs to a snapshot, as one more
// ServiceCIDR object.
func (f *proxyFlags) withServiceCIDRs(in model.Input) model.Input {
	if len(f.cfg.ServiceCIDRs) == 0 {
		return in
	}
	o := &model.ServiceCIDR{Name: "--service-cidrs"}
	for _, c := range f.cfg.ServiceCIDRs {
		o.CIDRs = append(o.CIDRs, netip.MustParsePrefix(c).Masked())
	}
	in.ServiceCIDRs = append(slices.Clip(in.ServiceCIDRs), o)
	return in
}

func (f *proxyFlags) node() (model.Node, error) {
	name := f.cfg.HostnameOverride
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return model.Node{}, fmt.Errorf("--hostname-override not given and the host name is unknown: %w", err)
		}
		name = h
	}
	return model.Node{Name: strings.ToLower(strings.TrimSpace(name))}, nil
}

// options turns validated settings into IPv4 dataplane options.
func (f *proxyFlags) options() (dataplane.Options, error) { return f.optionsFor(false) }

// optionsFor turns validated settings into dataplane options for one
// family. NodePort address CIDRs are matched against the addresses this
// host has now.
func (f *proxyFlags) optionsFor(v6 bool) (dataplane.Options, error) {
	c := &f.cfg
	if err := c.Validate(); err != nil {
		return dataplane.Options{}, err
	}
	// As in kube-proxy, each mode has its own mark bit setting.
	bit := c.MasqueradeBit
	if c.Mode == "nftables" {
		bit = c.NFTablesMasqueradeBit
	}
	// As upstream: localhost NodePorts only where --nodeport-addresses can
	// match 127.0.0.0/8 (then route_localnet is set, and only then), and
	// not over IPv6, which has no route_localnet.
	o := dataplane.Options{MasqueradeAll: c.MasqueradeAll, LocalhostNodePorts: c.LocalhostNodePorts && !v6 && matchesIPv4Loopback(c.NodePortAddresses),
		LocalByNodeCIDR: c.DetectLocalMode == "NodeCIDR", MasqueradeMark: 1 << bit, IPv6: v6}
	if c.Mode == "nftables" {
		// As upstream: localhost NodePorts only with the gate, and served
		// (TCP) only for a family whose loopback is listed explicitly.
		o.RejectLocalhostNodePorts = c.FeatureGates.Enabled(config.LocalhostNodePortsGate)
		o.LocalhostNodePorts = o.RejectLocalhostNodePorts && listsLoopback(c.NodePortAddresses, v6)
	}
	switch c.DetectLocalMode {
	case "BridgeInterface":
		o.LocalInterface = c.PodBridgeInterface
	case "InterfaceNamePrefix":
		o.LocalInterface, o.LocalInterfacePrefix = c.PodInterfacePrefix, true
	}
	if c.ClusterCIDR != "" {
		cidrs, _ := config.ClusterCIDRs(c.ClusterCIDR)
		if v6 {
			o.ClusterCIDR = cidrs[1]
		} else {
			o.ClusterCIDR = cidrs[0]
		}
	}
	specs := c.NodePortAddresses
	if len(specs) == 0 && c.Mode == "nftables" {
		// As upstream: nftables mode answers NodePorts on the node's
		// primary addresses unless told otherwise.
		specs = []string{"primary"}
	}
	for _, spec := range specs {
		switch spec {
		case "primary":
			o.NodePortPrimary = true
		case "all":
			o.NodePortCIDRs, o.NodePortPrimary = nil, false
			return o, nil
		case "localhost":
			o.NodePortCIDRs = append(o.NodePortCIDRs, dataplane.Loopback(v6))
		default:
			// As upstream: a family none of the CIDRs is of answers on
			// every address; one that has CIDRs answers on the node's
			// addresses in them, which may be none.
			p := netip.MustParsePrefix(spec).Masked()
			if p.Addr().Is6() == v6 {
				o.NodePortCIDRs = append(o.NodePortCIDRs, p)
			}
		}
	}
	return o, nil
}

// listsLoopback reports whether --nodeport-addresses (validated) names the
// family's loopback explicitly: "localhost", or a CIDR of loopback
// addresses (not one that merely holds them, such as 0.0.0.0/0).
func listsLoopback(specs []string, v6 bool) bool {
	for _, spec := range specs {
		if spec == "localhost" {
			return true
		}
		if p, err := netip.ParsePrefix(spec); err == nil && p.Addr().Is6() == v6 && p.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// matchesIPv4Loopback reports whether --nodeport-addresses (validated) can
// match an IPv4 loopback address: when it lists no IPv4 CIDR (every address
// then), "all", or a CIDR that holds 127.0.0.0 or a loopback address.
func matchesIPv4Loopback(specs []string) bool {
	v4 := 0
	for _, spec := range specs {
		switch spec {
		case "all", "localhost":
			return true
		case "primary":
			v4++
			continue
		}
		p := netip.MustParsePrefix(spec)
		if !p.Addr().Is4() {
			continue
		}
		v4++
		if p.Addr().IsLoopback() || p.Contains(netip.AddrFrom4([4]byte{127, 0, 0, 0})) {
			return true
		}
	}
	return v4 == 0
}

// renderText is what svcproxy would apply for st, as the mode's own tools
// print it: iptables-restore input, or nft list output per family.
func (f *proxyFlags) renderText(st *model.State) (string, error) {
	if st.LocalAddrs == nil {
		st.LocalAddrs = f.localAddrs
		if st.LocalAddrs == nil {
			st.LocalAddrs = dataplane.HostAddrs()
		}
	}
	mode, err := modes.ByName(f.cfg.Mode)
	if err != nil {
		return "", err
	}
	opts, err := f.options()
	if err != nil {
		return "", err
	}
	text := mode.Render(st, opts)
	if mode.ListsBothFamilies && f.cfg.ClusterCIDR != "" {
		if cidrs, _ := config.ClusterCIDRs(f.cfg.ClusterCIDR); cidrs[1].IsValid() {
			opts6, err := f.optionsFor(true)
			if err != nil {
				return "", err
			}
			text += mode.Render(st, opts6)
		}
	}
	return text, nil
}

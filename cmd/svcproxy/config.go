package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/model"
)

// proxyFlags are the settings shared by the commands that build rules.
type proxyFlags struct {
	manifests          string
	hostnameOverride   string
	clusterCIDR        string
	masqueradeAll      bool
	localhostNodePorts bool
}

func (f *proxyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.manifests, "manifests", "", "folder of Service and EndpointSlice manifests (*.yaml, *.yml, *.json), read like `kubectl apply -f DIR` and watched for changes")
	fs.StringVar(&f.hostnameOverride, "hostname-override", "", "the name of this node, matched against EndpointSlice nodeName (default: the host name)")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "", "the pod CIDR; traffic to cluster IPs from outside it is masqueraded")
	fs.BoolVar(&f.masqueradeAll, "masquerade-all", false, "masquerade all traffic sent to cluster IPs")
	fs.BoolVar(&f.localhostNodePorts, "iptables-localhost-nodeports", true, "answer NodePorts on 127.0.0.1 (sets route_localnet, and drops 127.0.0.0/8 traffic from other hosts: CVE-2020-8558)")
}

func (f *proxyFlags) node() (model.Node, error) {
	name := f.hostnameOverride
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return model.Node{}, fmt.Errorf("--hostname-override not given and the host name is unknown: %w", err)
		}
		name = h
	}
	return model.Node{Name: strings.ToLower(strings.TrimSpace(name))}, nil
}

func (f *proxyFlags) options() (iptables.Options, error) {
	o := iptables.Options{MasqueradeAll: f.masqueradeAll, LocalhostNodePorts: f.localhostNodePorts}
	if f.clusterCIDR != "" {
		p, err := netip.ParsePrefix(f.clusterCIDR)
		if err != nil {
			return o, fmt.Errorf("--cluster-cidr %q: not a CIDR", f.clusterCIDR)
		}
		if !p.Addr().Is4() {
			return o, fmt.Errorf("--cluster-cidr %s: only IPv4 is supported", p)
		}
		o.ClusterCIDR = p.Masked()
	}
	return o, nil
}

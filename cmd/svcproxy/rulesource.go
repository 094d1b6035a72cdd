package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/pflag"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/explain"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
	"github.com/svcproxy/svcproxy/internal/source/files"
)

// ruleSource is where trace, explain and graph read rules from: the live
// node, a saved dump, or manifests rendered without a kernel.
type ruleSource struct {
	rules    string
	localIPs []string
	pf       proxyFlags
}

func newRuleSource() ruleSource { return ruleSource{pf: newProxyFlags()} }

func (s *ruleSource) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.rules, "rules", "", "read an iptables-save dump from FILE ('-' for stdin) instead of the live node")
	fs.StringSliceVar(&s.localIPs, "local-ip", nil, "the node's own addresses (comma-separated); default: this host's addresses for the live node")
	// The proxy's own flags, as run takes them, so that a node configured
	// any way can be reproduced from its manifests.
	s.pf.register(fs)
	fs.Lookup("manifests").Usage = "render the rules for the manifests in this folder or file instead of reading them (no kernel needed); also names hashed chains. The proxy flags below shape them as they shape run's"
}

// loaded is a parsed ruleset with what is known about it.
type loaded struct {
	rs *netfilter.Ruleset
	// nft is set instead of rs for an nftables ruleset.
	nft   *netfilter.NftRuleset
	idx   *explain.Index
	local []netip.Addr
	// guessLocal is true when the node's addresses are unknown (a dump from
	// another node without --local-ip).
	guessLocal bool
	// live is set when the rules are this node's own, as the kernel has
	// them.
	live bool
}

func (s *ruleSource) load(ctx context.Context, stdin io.Reader) (*loaded, error) {
	if s.rules != "" && s.pf.cfg.Manifests != "" {
		return nil, errors.New("--rules and --manifests are alternatives: give one")
	}
	var text string
	var st *model.State
	live := false
	switch {
	case s.rules == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read rules from stdin: %w", err)
		}
		text = string(b)
	case s.rules != "":
		b, err := os.ReadFile(s.rules)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		text = string(b)
	case s.pf.cfg.Manifests != "":
		// The rendered node has the addresses given, when given.
		for _, ip := range s.localIPs {
			if a, err := netip.ParseAddr(strings.TrimSpace(ip)); err == nil {
				s.pf.localAddrs = append(s.pf.localAddrs, a)
			}
		}
		node, err := s.pf.node()
		if err != nil {
			return nil, err
		}
		in, objErrs, _, err := (&files.Dir{Path: s.pf.cfg.Manifests, Node: node.Name}).Load()
		if err != nil {
			return nil, err
		}
		built, buildErrs := model.Build(s.pf.withServiceCIDRs(in), node)
		reportObjectErrors(os.Stderr, append(objErrs, buildErrs...))
		st = &built
		if text, err = s.pf.renderText(st); err != nil {
			return nil, err
		}
	default:
		b, err := iptables.Exec{}.Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the live rules (use --rules FILE for a saved dump): %w", err)
		}
		text, live = string(b), true
	}
	if live && !strings.Contains(text, ":KUBE-SERVICES") {
		// A node in nftables mode keeps its rules in nft.
		if out, err := exec.CommandContext(ctx, "nft", "list", "ruleset").Output(); err == nil && strings.Contains(string(out), "table ip kube-proxy") {
			text = string(out)
		}
	}
	var l *loaded
	if netfilter.LooksLikeNft(text) {
		nrs, err := netfilter.ParseNft(text)
		if err != nil {
			return nil, fmt.Errorf("not an nft ruleset: %w", err)
		}
		l = &loaded{nft: nrs, idx: explain.NewNftIndex(nrs)}
	} else {
		rs, err := netfilter.ParseIPTables(text)
		if err != nil {
			if errors.Is(err, netfilter.ErrNoTables) && live {
				return nil, errors.New("this node has no iptables or nftables Service rules (is a proxy running here?)")
			}
			return nil, fmt.Errorf("not an iptables-save dump or nft ruleset: %w", err)
		}
		l = &loaded{rs: rs, idx: explain.NewIndex(rs)}
	}
	l.live = live
	if st != nil {
		l.idx.AddModel(st)
	}
	for _, ip := range s.localIPs {
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		if err != nil {
			return nil, fmt.Errorf("--local-ip %q: not an IP address", ip)
		}
		l.local = append(l.local, a)
	}
	if len(l.local) == 0 {
		if live {
			l.local = dataplane.HostAddrs()
		} else {
			l.guessLocal = true
		}
	}
	return l, nil
}

// trace follows a packet with the tracer for the loaded ruleset.
func (l *loaded) trace(pkt netfilter.Packet, o netfilter.TraceOptions) (*netfilter.Result, error) {
	if l.nft != nil {
		return netfilter.TraceNft(l.nft, pkt, o)
	}
	return netfilter.Trace(l.rs, pkt, o)
}

// serviceAddrs are the addresses rules match as destinations (cluster,
// external and load balancer IPs): never the node's own.
func (l *loaded) serviceAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if l.nft != nil {
		for _, t := range l.nft.Tables {
			for _, name := range []string{"service-ips", "no-endpoint-services", "cluster-ips"} {
				if set := t.Sets[name]; set != nil {
					for _, e := range set.Elements {
						if a, err := netip.ParseAddr(e.Key[0]); err == nil {
							out[a] = true
						}
					}
				}
			}
		}
		return out
	}
	for _, t := range l.rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				for _, m := range r.Matches {
					for _, o := range m.Opts {
						if m.Module == "" && o.Name == "-d" && !o.Neg && len(o.Values) == 1 {
							if a, err := netip.ParseAddr(strings.TrimSuffix(o.Values[0], "/32")); err == nil {
								out[a] = true
							}
						}
					}
				}
			}
		}
	}
	return out
}

package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/explain"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
	"github.com/svcproxy/svcproxy/internal/nodeport"
)

func newTraceCmd() *cobra.Command {
	var (
		src       = newRuleSource()
		to, from  string
		proto     string
		direction string
		sport     uint16
		output    string
		iface     string
	)
	cmd := &cobra.Command{
		Use:   "trace --to IP:PORT [--from IP] [--proto tcp]",
		Short: "Follow one packet through the rules and say where it goes and why",
		Long: `Follow the first packet of a connection through the nat and filter tables,
as the kernel would, and print every rule it meets with what that rule means,
then where the packet ends up: the possible pods with their share of the
traffic, whether the source is masqueraded, or which rule drops or rejects it.

Rules come from this node (iptables-save, or nft list ruleset on a node in
nftables mode), from a saved dump (--rules FILE: iptables-save or
nft list ruleset output, from any node, svcproxy's or kube-proxy's), or from
manifests (--manifests PATH).
Matches the tracer cannot decide from the packet alone (conntrack state,
session affinity, interfaces) are listed as assumptions.

Example, the question of a NodePort held by another process:
  svcproxy trace --to 192.168.77.1:30450 --from 192.168.77.2 --proto tcp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to IP:PORT is required")
			}
			dst, err := netip.ParseAddrPort(to)
			if err != nil {
				return fmt.Errorf("--to %q: want IP:PORT, such as 192.168.77.1:30450", to)
			}
			proto = strings.ToLower(proto)
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				return fmt.Errorf("--proto %q: must be tcp, udp or sctp", proto)
			}
			var dir netfilter.Direction
			switch direction {
			case "arriving", "in":
				dir = netfilter.Arriving
			case "local", "out":
				dir = netfilter.Local
			default:
				return fmt.Errorf("--direction %q: must be arriving (from the network) or local (from a process on the node)", direction)
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: must be text or json", output)
			}
			l, err := src.load(cmd.Context(), cmd.InOrStdin())
			if err != nil {
				return err
			}
			var notes []string
			var srcAddr netip.Addr
			switch {
			case from != "":
				if srcAddr, err = netip.ParseAddr(from); err != nil {
					return fmt.Errorf("--from %q: not an IP address", from)
				}
			case dir == netfilter.Local && len(l.local) > 0:
				// The kernel picks the primary address for a connection
				// leaving the node, not loopback.
				srcAddr, _ = explain.NodeAddr(l.local)
			default:
				srcAddr = netip.MustParseAddr("203.0.113.10")
				notes = append(notes, "no --from given: the packet comes from 203.0.113.10, a host outside the cluster")
			}
			if l.guessLocal {
				l.local = []netip.Addr{}
				if !l.serviceAddrs()[dst.Addr()] {
					l.local = append(l.local, dst.Addr())
					notes = append(notes, fmt.Sprintf("no --local-ip given: %s is taken to be an address of the node the rules came from", dst.Addr()))
				}
			}
			pkt := netfilter.Packet{Src: srcAddr, Dst: dst.Addr(), DstPort: dst.Port(), Protocol: proto, SrcPort: sport, InInterface: iface}
			res, err := l.trace(pkt, netfilter.TraceOptions{Direction: dir, LocalAddrs: l.local})
			if err != nil {
				return err
			}
			rep := l.idx.Report(pkt, dir, res)
			if rep.Service == "" {
				rep.Hints = otherProtocols(l, pkt, dir)
			}
			if l.live && slices.Contains(l.local, pkt.Dst) {
				rep.Sockets = sockets(pkt, res.Verdict())
			}
			rep.Assumptions = append(notes, rep.Assumptions...)
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			rep.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	src.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&to, "to", "", "destination IP:PORT of the packet")
	fs.StringVar(&from, "from", "", "source IP of the packet (default: a host outside the cluster; for --direction local, the node)")
	fs.StringVar(&proto, "proto", "tcp", "protocol: tcp, udp or sctp")
	fs.Uint16Var(&sport, "sport", 0, "source port, when it matters (default: any)")
	fs.StringVar(&direction, "direction", "arriving", "arriving (from the network: the prerouting hook) or local (from a process on the node: the output hook)")
	fs.StringVar(&iface, "in-interface", "", "the interface the packet arrives on, for rules that match it (detect-local BridgeInterface or InterfaceNamePrefix); default: unknown, and such rules are reported as assumed")
	fs.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// otherProtocols says which Service answers the packet's address and port
// over another protocol, when none does over its own: the usual slip is a
// trace of a UDP Service (DNS) with the default --proto tcp.
func otherProtocols(l *loaded, pkt netfilter.Packet, dir netfilter.Direction) []string {
	var out []string
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		if proto == pkt.Protocol {
			continue
		}
		other := pkt
		other.Protocol = proto
		res, err := l.trace(other, netfilter.TraceOptions{Direction: dir, LocalAddrs: l.local})
		if err != nil {
			continue
		}
		if svc := l.idx.Report(other, dir, res).Service; svc != "" {
			out = append(out, fmt.Sprintf("no Service answers %s on %s; %s answers %s there: try --proto %s",
				pkt.Protocol, netip.AddrPortFrom(pkt.Dst, pkt.DstPort), svc, proto, proto))
		}
	}
	return out
}

// sockets names the node's processes that hold the packet's destination
// port (the incident's question: who is on my NodePort?) and says in one
// line whether the packet reaches them.
func sockets(pkt netfilter.Packet, v netfilter.Verdict) []string {
	holders, err := nodeport.Holders(int32(pkt.DstPort), model.Protocol(pkt.Protocol))
	if err != nil {
		return []string{fmt.Sprintf("cannot list the node's sockets: %v", err)}
	}
	var why string
	switch v {
	case netfilter.VerdictDNAT:
		why = "it does not see this packet: the nat rules send it to a pod before any local socket is looked up"
	case netfilter.VerdictDrop, netfilter.VerdictReject:
		why = "it does not see this packet: the rules " + strings.ToLower(string(v)) + " it first"
	default:
		why = "this packet reaches it: no Service rule changes the packet"
	}
	var out []string
	for _, h := range holders {
		out = append(out, h.String()+": "+why)
	}
	return out
}

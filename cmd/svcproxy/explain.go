package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/svcproxy/svcproxy/internal/explain"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

func newExplainCmd() *cobra.Command {
	src := newRuleSource()
	output := "text"
	cmd := &cobra.Command{
		Use:   "explain NAMESPACE/NAME",
		Short: "Show every rule that concerns one Service, as a tree from its addresses to its pods",
		Long: `Show what the rules do with one Service: each address and port it answers on
(cluster IP, NodePort, external and load balancer IPs), what happens to traffic
arriving there from a pod and from outside the cluster, the endpoints with
their share of the traffic, and the chains involved.

Rules come from this node, from a saved dump (--rules FILE), or from manifests
(--manifests PATH, no kernel needed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: must be text or json", output)
			}
			rep, _, _, err := explainService(cmd, &src, args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			rep.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	src.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", output, "output format: text or json")
	cmd.ValidArgsFunction = completeServices(&src)
	return cmd
}

func explainService(cmd *cobra.Command, src *ruleSource, name string) (*explain.ServiceReport, *loaded, *explain.Index, error) {
	if ns, n, ok := strings.Cut(name, "/"); !ok || ns == "" || n == "" || strings.Contains(n, "/") {
		return nil, nil, nil, fmt.Errorf("%q: give the Service as NAMESPACE/NAME, such as default/azure-vote-front", name)
	}
	l, err := src.load(cmd.Context(), cmd.InOrStdin())
	if err != nil {
		return nil, nil, nil, err
	}
	var local []netip.Addr
	if !l.guessLocal {
		local = l.local
	}
	var rep *explain.ServiceReport
	if l.nft != nil {
		rep, err = l.idx.ExplainNft(l.nft, name, local)
	} else {
		rep, err = l.idx.Explain(l.rs, name, local)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return rep, l, l.idx, nil
}

func newGraphCmd() *cobra.Command {
	var (
		src      = newRuleSource()
		to, from string
		proto    string
		format   string
		outFile  string
	)
	cmd := &cobra.Command{
		Use:   "graph (NAMESPACE/NAME | --to IP:PORT [--from IP])",
		Short: "Draw a Service's rules, or one packet's path, as a picture (Graphviz)",
		Long: `Draw what explain or trace says as a flow chart: for a Service, its addresses,
the chains they lead through and the pods at the end with their share of the
traffic; with --to, the path of one packet. The output is Graphviz DOT; with
-o svg or -o png it is rendered by the dot command (apt install graphviz).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "dot" && format != "svg" && format != "png" {
				return fmt.Errorf("-o %q: must be dot, svg or png", format)
			}
			var dot bytes.Buffer
			switch {
			case len(args) == 1 && to != "":
				return fmt.Errorf("give a Service or --to, not both")
			case len(args) == 1:
				rep, l, idx, err := explainService(cmd, &src, args[0])
				if err != nil {
					return err
				}
				if l.nft != nil {
					rep.WritePathDOT(&dot, idx)
				} else {
					rep.WriteDOT(&dot, l.rs, idx)
				}
			case to != "":
				dst, err := netip.ParseAddrPort(to)
				if err != nil {
					return fmt.Errorf("--to %q: want IP:PORT", to)
				}
				srcAddr := netip.MustParseAddr("203.0.113.10")
				if from != "" {
					if srcAddr, err = netip.ParseAddr(from); err != nil {
						return fmt.Errorf("--from %q: not an IP address", from)
					}
				}
				l, err := src.load(cmd.Context(), cmd.InOrStdin())
				if err != nil {
					return err
				}
				if l.guessLocal && !l.serviceAddrs()[dst.Addr()] {
					l.local = []netip.Addr{dst.Addr()}
				}
				pkt := netfilter.Packet{Src: srcAddr, Dst: dst.Addr(), DstPort: dst.Port(), Protocol: strings.ToLower(proto)}
				res, err := l.trace(pkt, netfilter.TraceOptions{LocalAddrs: l.local})
				if err != nil {
					return err
				}
				l.idx.Report(pkt, netfilter.Arriving, res).WriteDOT(&dot)
			default:
				return fmt.Errorf("give a Service (NAMESPACE/NAME) or --to IP:PORT")
			}
			var out io.Writer = cmd.OutOrStdout()
			if f, ok := out.(*os.File); ok && format == "png" && outFile == "" && term.IsTerminal(int(f.Fd())) {
				return errors.New("-o png is binary and stdout is a terminal: give --output-file FILE, or redirect stdout")
			}
			if outFile != "" {
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				defer f.Close()
				out = f
			}
			if format == "dot" {
				_, err := out.Write(dot.Bytes())
				return err
			}
			return renderDot(dot.Bytes(), format, out)
		},
	}
	src.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&to, "to", "", "draw the path of a packet to IP:PORT instead of a Service")
	fs.StringVar(&from, "from", "", "with --to: the packet's source IP")
	fs.StringVar(&proto, "proto", "tcp", "with --to: tcp, udp or sctp")
	fs.StringVarP(&format, "output", "o", "dot", "dot, svg or png (svg and png need Graphviz's dot)")
	fs.StringVar(&outFile, "output-file", "", "write to FILE instead of stdout")
	cmd.ValidArgsFunction = completeServices(&src)
	return cmd
}

func renderDot(dot []byte, format string, out io.Writer) error {
	path, err := exec.LookPath("dot")
	if err != nil {
		return fmt.Errorf("-o %s needs Graphviz's dot command (apt install graphviz), or use -o dot", format)
	}
	var stderr bytes.Buffer
	c := exec.Command(path, "-T"+format)
	c.Stdin, c.Stdout, c.Stderr = bytes.NewReader(dot), out, &stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("dot -T%s: %v: %s", format, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

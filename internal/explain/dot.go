package explain

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// dotGraph accumulates a Graphviz digraph with de-duplicated nodes and edges.
type dotGraph struct {
	name string
	// rankdir is LR for wide Service graphs, TB for long packet paths.
	rankdir string
	nodes   []string
	seen    map[string]bool
	edges   []string
}

func newDot(name, rankdir string) *dotGraph {
	return &dotGraph{name: name, rankdir: rankdir, seen: map[string]bool{}}
}

func (g *dotGraph) node(id, label, attrs string) {
	if g.seen["n"+id] {
		return
	}
	g.seen["n"+id] = true
	g.nodes = append(g.nodes, fmt.Sprintf("  %s [label=%s%s];", dq(id), dq(label), attrs))
}

func (g *dotGraph) edge(from, to, label string) {
	e := fmt.Sprintf("  %s -> %s [label=%s];", dq(from), dq(to), dq(label))
	if g.seen["e"+e] {
		return
	}
	g.seen["e"+e] = true
	g.edges = append(g.edges, e)
}

func (g *dotGraph) write(w io.Writer) {
	fmt.Fprintf(w, "digraph %s {\n  rankdir=%s;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n", dq(g.name), g.rankdir)
	for _, n := range g.nodes {
		fmt.Fprintln(w, n)
	}
	for _, e := range g.edges {
		fmt.Fprintln(w, e)
	}
	fmt.Fprintln(w, "}")
}

// dq quotes a DOT identifier or label.
func dq(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

const (
	entryAttrs    = `, shape=ellipse, style=filled, fillcolor="#dbe9ff"`
	endpointAttrs = `, shape=ellipse, style=filled, fillcolor="#d9f2d9"`
	verdictAttrs  = `, shape=octagon, style=filled, fillcolor="#f9d0d0"`
)

// dotNode is an entry point's node id and label.
func (e Entry) dotNode() (id, label string) {
	if e.Kind == "NodePort" {
		return fmt.Sprintf("NodePort %d/%s", e.Port, e.Protocol), fmt.Sprintf("NodePort\n%d/%s", e.Port, e.Protocol)
	}
	return fmt.Sprintf("%s %s:%d/%s", e.Kind, e.Addr, e.Port, e.Protocol), fmt.Sprintf("%s\n%s:%d/%s", e.Kind, e.Addr, e.Port, e.Protocol)
}

// WriteDOT draws a Service: its entry points, the chains they lead through
// and the endpoints at the end, with each endpoint's share of the traffic.
func (rep *ServiceReport) WriteDOT(w io.Writer, rs *netfilter.Ruleset, idx *Index) {
	g := newDot(rep.Service, "LR")
	for _, sp := range rep.Ports {
		for _, e := range sp.Entries {
			id, label := e.dotNode()
			g.node(id, label, entryAttrs)
			table := "nat"
			if e.Chain == "REJECT" {
				g.node("REJECT", "REJECT\n(no endpoints)", verdictAttrs)
				g.edge(id, "REJECT", "")
				continue
			}
			g.edge(id, e.Chain, "")
			idx.walkChain(g, rs, table, e.Chain, map[string]bool{})
		}
		for _, ep := range sp.Endpoints {
			g.node("ep "+ep.Addr, ep.Addr, endpointAttrs)
			if ep.Chain != "" {
				g.edge(ep.Chain, "ep "+ep.Addr, "DNAT ("+netfilter.Percent(ep.Share)+" of traffic)")
			}
		}
	}
	g.write(w)
}

// walkChain adds a per-Service chain and everything it leads to.
func (idx *Index) walkChain(g *dotGraph, rs *netfilter.Ruleset, table, chain string, done map[string]bool) {
	if done[chain] {
		return
	}
	done[chain] = true
	c := rs.Table(table).Chain(chain)
	label := chain
	if svc := idx.Service(chain); svc != "" {
		label += "\n" + svc
	}
	var notes []string
	if c != nil {
		for _, r := range c.Rules {
			switch {
			case r.Target == "KUBE-MARK-MASQ":
				notes = append(notes, "masquerade: "+masqReason(r, r.Comment()))
			case IsServiceChain(r.Target):
				g.edge(chain, r.Target, edgeLabel(r))
				idx.walkChain(g, rs, table, r.Target, done)
			case r.Target == "DNAT" && !strings.HasPrefix(chain, "KUBE-SEP-"):
				to := r.TargetOpt("--to-destination")
				g.node("ep "+to, to, endpointAttrs)
				g.edge(chain, "ep "+to, "DNAT")
			case r.Target == "DROP" || r.Target == "REJECT":
				g.node(r.Target, r.Target, verdictAttrs)
				g.edge(chain, r.Target, edgeLabel(r))
			}
		}
	}
	slices.Sort(notes)
	notes = slices.Compact(notes)
	if len(notes) > 0 {
		label += "\n" + strings.Join(notes, "\n")
	}
	g.node(chain, label, "")
}

func edgeLabel(r *netfilter.Rule) string {
	if p := probability(r); p != "" {
		return "p=" + p
	}
	if affinity(r) {
		return "recent client (affinity)"
	}
	if v, neg := opt(r, "", "-s"); v != "" {
		if neg {
			return "from outside " + v
		}
		return "from " + v
	}
	if v, _ := opt(r, "addrtype", "--src-type"); v != "" {
		return "from a " + strings.ToLower(v) + " address"
	}
	return ""
}

// WriteDOT draws the path(s) one packet takes. Each edge is the jump a
// rule made, labelled with what the rule means; rules that did their work
// without leaving their chain are listed in the chain's box.
func (rep *TraceReport) WriteDOT(w io.Writer) {
	g := newDot(rep.Packet, "TB")
	g.node("start", "packet\n"+rep.Packet, entryAttrs)
	notes := map[string][]string{}
	var order []string
	for _, p := range rep.Paths {
		for i, h := range p.Hops {
			id := h.Table + " " + h.Chain
			if _, ok := notes[id]; !ok {
				notes[id] = nil
				order = append(order, id)
			}
			if i+1 < len(p.Hops) && p.Hops[i+1].Table+" "+p.Hops[i+1].Chain == id && !slices.Contains(notes[id], h.Meaning) {
				notes[id] = append(notes[id], h.Meaning)
			}
		}
	}
	for _, id := range order {
		g.node(id, strings.Join(append([]string{id}, notes[id]...), "\n"), "")
	}
	for _, p := range rep.Paths {
		if len(p.Hops) == 0 {
			continue
		}
		g.edge("start", p.Hops[0].Table+" "+p.Hops[0].Chain, "")
		for i := 0; i+1 < len(p.Hops); i++ {
			from, to := p.Hops[i].Table+" "+p.Hops[i].Chain, p.Hops[i+1].Table+" "+p.Hops[i+1].Chain
			if from != to {
				g.edge(from, to, p.Hops[i].Meaning)
			}
		}
		last := p.Hops[len(p.Hops)-1]
		end, label, attrs := p.Verdict, p.Verdict, verdictAttrs
		switch {
		case p.Endpoint != "":
			end, label, attrs = "ep "+p.Endpoint, p.Endpoint, endpointAttrs
			if p.Masquerade {
				label += "\n(masqueraded)"
			}
		case p.Verdict == string(netfilter.VerdictNone) || p.Verdict == string(netfilter.VerdictAccept):
			end, label, attrs = "local", "delivered unchanged", endpointAttrs
		}
		g.node(end, label, attrs)
		g.edge(last.Table+" "+last.Chain, end, last.Meaning+" ("+netfilter.Percent(p.Probability)+")")
	}
	g.write(w)
}

// WritePathDOT draws a Service from the traces explain made: every chain
// its entry points' packets pass, and where they end. It needs no
// knowledge of the ruleset's layout, so it serves nftables rulesets too.
func (rep *ServiceReport) WritePathDOT(w io.Writer, idx *Index) {
	g := newDot(rep.Service, "LR")
	for _, sp := range rep.Ports {
		for _, e := range sp.Entries {
			id, label := e.dotNode()
			g.node(id, label, entryAttrs)
			for _, res := range e.Results {
				for _, p := range res.Trace.Paths {
					prev := id
					for _, h := range p.Hops {
						if !IsServiceChain(h.Chain) && nftService(h.Chain) == "" {
							continue // dispatch and filter chains are the same for every Service
						}
						label := h.Chain
						if svc := idx.Service(h.Chain); svc != "" {
							label += "\n" + svc
						}
						g.node(h.Chain, label, "")
						if prev != h.Chain {
							g.edge(prev, h.Chain, "")
						}
						prev = h.Chain
					}
					switch {
					case p.Verdict == netfilter.VerdictDNAT:
						to := "ep " + p.DNAT.String()
						g.node(to, p.DNAT.String(), endpointAttrs)
						g.edge(prev, to, "DNAT")
					case p.Verdict == netfilter.VerdictDrop || p.Verdict == netfilter.VerdictReject:
						g.node(string(p.Verdict), string(p.Verdict), verdictAttrs)
						g.edge(prev, string(p.Verdict), res.Source)
					}
				}
			}
		}
	}
	g.write(w)
}

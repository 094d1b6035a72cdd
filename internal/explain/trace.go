package explain

import (
	"fmt"
	"io"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// HopReport is one rule on a packet's path.
type HopReport struct {
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Rule    string `json:"rule"`
	Meaning string `json:"meaning"`
	Service string `json:"service,omitempty"`
}

// PathReport is one way the packet can go.
type PathReport struct {
	Probability float64     `json:"probability"`
	Verdict     string      `json:"verdict"`
	Endpoint    string      `json:"endpoint,omitempty"`
	Masquerade  bool        `json:"masquerade"`
	Hops        []HopReport `json:"hops"`
}

// TraceReport is what `svcproxy trace -o json` prints.
type TraceReport struct {
	Packet     string   `json:"packet"`
	Direction  string   `json:"direction"`
	Verdict    string   `json:"verdict"`
	Endpoints  []string `json:"endpoints"`
	Masquerade bool     `json:"masquerade"`
	Service    string   `json:"service,omitempty"`
	Summary    string   `json:"summary"`
	// Hops are the rules the packet meets, in order, over all its paths.
	Hops        []HopReport  `json:"hops"`
	Paths       []PathReport `json:"paths"`
	Assumptions []string     `json:"assumptions,omitempty"`
	Unknown     []string     `json:"unknown,omitempty"`
	// Hints say what the operator may have meant (another protocol).
	Hints []string `json:"hints,omitempty"`
	// Sockets are the node's own processes on the destination port (live
	// node only), each with whether the packet reaches it.
	Sockets []string `json:"sockets,omitempty"`
}

// Report turns a trace result into a report.
func (idx *Index) Report(pkt netfilter.Packet, dir netfilter.Direction, res *netfilter.Result) *TraceReport {
	rep := &TraceReport{
		Packet:      packetString(pkt),
		Direction:   directionString(dir),
		Verdict:     string(res.Verdict()),
		Endpoints:   []string{},
		Masquerade:  res.Masquerade(),
		Summary:     res.Summary(),
		Hops:        []HopReport{},
		Assumptions: res.Assumptions,
		Unknown:     res.Unknown,
	}
	for _, d := range res.Destinations() {
		rep.Endpoints = append(rep.Endpoints, d.Addr.String())
	}
	seen := map[string]bool{}
	for _, p := range res.Paths {
		pr := PathReport{Probability: p.Probability, Verdict: string(p.Verdict), Masquerade: p.Masquerade}
		if p.Verdict == netfilter.VerdictDNAT {
			pr.Endpoint = p.DNAT.String()
		}
		for _, h := range p.Hops {
			hr := idx.hop(h)
			if rep.Service == "" && hr.Service != "" {
				rep.Service = hr.Service
			}
			pr.Hops = append(pr.Hops, hr)
			key := fmt.Sprintf("%s/%s/%d/%s", h.Table, h.Chain, h.Line, h.Rule)
			if !seen[key] {
				seen[key] = true
				rep.Hops = append(rep.Hops, hr)
			}
		}
		rep.Paths = append(rep.Paths, pr)
	}
	return rep
}

func (idx *Index) hop(h netfilter.Hop) HopReport {
	hr := HopReport{Table: h.Table, Chain: h.Chain, Rule: h.Rule, Meaning: idx.Describe(h)}
	if h.RuleRef() == nil {
		hr.Service = idx.Service(h.Chain) // nftables: the chain name says
	}
	if r := h.RuleRef(); r != nil {
		hr.Service = idx.Service(r.Target)
		if hr.Service == "" {
			hr.Service = idx.Service(r.Chain)
		}
		if hr.Service == "" && (IsServiceChain(r.Target) || IsServiceChain(r.Chain) || r.Chain == "KUBE-NODEPORTS") {
			hr.Service = ServiceInComment(r.Comment())
		}
	}
	return hr
}

func packetString(p netfilter.Packet) string {
	src := p.Src.String()
	if p.SrcPort != 0 {
		src = fmt.Sprintf("%s:%d", p.Src, p.SrcPort)
	}
	return fmt.Sprintf("%s %s -> %s:%d", strings.ToUpper(p.Protocol), src, p.Dst, p.DstPort)
}

func directionString(d netfilter.Direction) string {
	if d == netfilter.Local {
		return "local"
	}
	return "arriving"
}

// WriteText prints a report for people: the rules every path shares once,
// then each path from where they part.
func (rep *TraceReport) WriteText(w io.Writer) {
	where := "arriving at this node (prerouting)"
	if rep.Direction == "local" {
		where = "sent by a process on this node (output)"
	}
	fmt.Fprintf(w, "%s, %s\n", rep.Packet, where)
	if rep.Service != "" {
		fmt.Fprintf(w, "Service: %s\n", rep.Service)
	}
	fmt.Fprintln(w)
	common := commonPrefix(rep.Paths)
	if len(rep.Paths) > 0 {
		writeHops(w, rep.Paths[0].Hops[:common], "  ")
	}
	if len(rep.Paths) > 1 || (len(rep.Paths) == 1 && common < len(rep.Paths[0].Hops)) {
		tail := commonSuffix(rep.Paths, common)
		for _, p := range rep.Paths {
			label := p.Verdict
			if p.Endpoint != "" {
				label = "to " + p.Endpoint
			}
			fmt.Fprintf(w, "  then, %s of the time, %s:\n", netfilter.Percent(p.Probability), label)
			writeHops(w, p.Hops[common:len(p.Hops)-tail], "    ")
		}
		if tail > 0 {
			fmt.Fprintln(w, "  then, on every path:")
			last := rep.Paths[0].Hops
			writeHops(w, last[len(last)-tail:], "    ")
		}
	}
	fmt.Fprintf(w, "\nResult: %s\n", rep.Summary)
	for _, s := range rep.Sockets {
		fmt.Fprintf(w, "Socket: %s\n", s)
	}
	for _, h := range rep.Hints {
		fmt.Fprintf(w, "Hint: %s\n", h)
	}
	for _, a := range rep.Assumptions {
		fmt.Fprintf(w, "Assumed: %s\n", a)
	}
	for _, u := range rep.Unknown {
		fmt.Fprintf(w, "Not understood (treated as not matching): %s\n", u)
	}
}

func writeHops(w io.Writer, hops []HopReport, indent string) {
	for _, h := range hops {
		fmt.Fprintf(w, "%s%-6s %-26s %s\n", indent, h.Table, h.Chain, h.Rule)
		fmt.Fprintf(w, "%s%-6s %-26s → %s\n", indent, "", "", h.Meaning)
	}
}

func commonPrefix(paths []PathReport) int {
	if len(paths) == 0 {
		return 0
	}
	n := len(paths[0].Hops)
	for _, p := range paths[1:] {
		i := 0
		for i < n && i < len(p.Hops) && p.Hops[i] == paths[0].Hops[i] {
			i++
		}
		n = i
	}
	return n
}

// commonSuffix is how many hops all paths share at their end, after the
// first skip hops.
func commonSuffix(paths []PathReport, skip int) int {
	if len(paths) < 2 {
		return 0
	}
	n := len(paths[0].Hops) - skip
	for _, p := range paths[1:] {
		i := 0
		a, b := paths[0].Hops, p.Hops
		for i < n && i < len(b)-skip && a[len(a)-1-i] == b[len(b)-1-i] {
			i++
		}
		n = i
	}
	return n
}

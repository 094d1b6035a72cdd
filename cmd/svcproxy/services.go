package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/internal/explain"
)

// serviceRow is one Service port as services lists it.
type serviceRow struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	ClusterIP string   `json:"clusterIP,omitempty"`
	Ports     string   `json:"ports"`
	External  []string `json:"externalIPs,omitempty"`
	Endpoints []string `json:"endpoints"`
	// Local is how many endpoints are on this node, where the rules say
	// (a Local traffic policy keeps a chain of them); -1 when they do not.
	Local  int      `json:"local"`
	Mode   string   `json:"mode"`
	Chains []string `json:"chains"`
}

func newServicesCmd() *cobra.Command {
	src := newRuleSource()
	output := ""
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the Service ports the node's rules serve: addresses, endpoints, chains",
		Long: `List every Service port the rules in the kernel serve, as they are there (either
mode, written by svcproxy or by kube-proxy): its type, cluster IP and ports,
external and load balancer IPs, how many endpoints it sends to and how many of
them are on this node (known where a Local traffic policy keeps a chain of the
node's endpoints; "-" elsewhere). -o wide adds the endpoints, the mode and the
chains; -o json has everything.

Rules come from this node, from a saved dump (--rules FILE), or from manifests
(--manifests PATH, no kernel needed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "wide" && output != "json" {
				return fmt.Errorf("-o %q: must be wide or json (or left out)", output)
			}
			rows, err := serviceRows(cmd, &src)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No Service rules found.")
				return nil
			}
			writeServiceRows(cmd.OutOrStdout(), rows, output == "wide")
			return nil
		},
	}
	src.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", output, "output format: wide or json (default: a table)")
	return cmd
}

func serviceRows(cmd *cobra.Command, src *ruleSource) ([]serviceRow, error) {
	l, err := src.load(cmd.Context(), cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	var local []netip.Addr
	if !l.guessLocal {
		local = l.local
	}
	var rep *explain.ServiceReport
	mode := "iptables"
	if l.nft != nil {
		mode = "nftables"
		rep, err = l.idx.ServicesReportNft(l.nft, local)
	} else {
		rep, err = l.idx.ServicesReport(l.rs, local)
	}
	var none *explain.ErrNoService
	if errors.As(err, &none) {
		return []serviceRow{}, nil
	}
	if err != nil {
		return nil, err
	}
	rows := make([]serviceRow, 0, len(rep.Ports))
	for _, sp := range rep.Ports {
		rows = append(rows, rowOf(sp, mode))
	}
	return rows, nil
}

// rowOf sums up one explained Service port.
func rowOf(sp explain.ServicePort, mode string) serviceRow {
	r := serviceRow{Name: sp.Name, Type: "ClusterIP", Mode: mode, Chains: sp.Chains, Local: -1, Endpoints: []string{}}
	var port, nodePort uint16
	var proto string
	var localEPs map[string]bool
	for _, e := range sp.Entries {
		proto = strings.ToUpper(e.Protocol)
		switch e.Kind {
		case "cluster IP":
			r.ClusterIP, port = e.Addr.String(), e.Port
		case "NodePort":
			if r.Type == "ClusterIP" {
				r.Type = "NodePort"
			}
			nodePort = e.Port
		default:
			if e.Kind == "load balancer IP" {
				r.Type = "LoadBalancer"
			}
			if port == 0 {
				port = e.Port
			}
			if a := e.Addr.String(); !slices.Contains(r.External, a) {
				r.External = append(r.External, a)
			}
		}
		if e.Kind != "cluster IP" {
			// Traffic from outside goes to the node's own endpoints only
			// when the policy is Local.
			for _, res := range e.Results {
				if !strings.HasPrefix(res.Source, "from a pod") && res.Trace != nil {
					if localEPs == nil {
						localEPs = map[string]bool{}
					}
					for _, d := range res.Trace.Destinations() {
						localEPs[d.Addr.String()] = true
					}
				}
			}
		}
	}
	// As kubectl get services writes them: 80:30450/TCP.
	r.Ports = strconv.Itoa(int(port))
	if nodePort != 0 {
		r.Ports += ":" + strconv.Itoa(int(nodePort))
	}
	r.Ports += "/" + proto
	for _, ep := range sp.Endpoints {
		r.Endpoints = append(r.Endpoints, ep.Addr)
	}
	if slices.ContainsFunc(sp.Chains, func(c string) bool { return strings.HasPrefix(c, "KUBE-SVL-") || strings.HasPrefix(c, "local-") }) {
		r.Local = len(localEPs)
		if localEPs == nil {
			r.Local = len(r.Endpoints)
		}
	}
	return r
}

func writeServiceRows(w io.Writer, rows []serviceRow, wide bool) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := "NAME\tTYPE\tCLUSTER-IP\tEXTERNAL-IP\tPORT(S)\tENDPOINTS\tLOCAL"
	if wide {
		header += "\tMODE\tENDPOINT ADDRESSES\tCHAINS"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		ext, local := "<none>", "-"
		if len(r.External) > 0 {
			ext = strings.Join(r.External, ",")
		}
		if r.Local >= 0 {
			local = strconv.Itoa(r.Local)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%s", r.Name, r.Type, r.ClusterIP, ext, r.Ports, len(r.Endpoints), local)
		if wide {
			eps := strings.Join(r.Endpoints, ",")
			if eps == "" {
				eps = "<none>"
			}
			line += fmt.Sprintf("\t%s\t%s\t%s", r.Mode, eps, strings.Join(r.Chains, ","))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

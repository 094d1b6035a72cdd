// Command kubectl-svcproxy is svcproxy's kubectl plugin: it runs svcproxy's
// node tools (trace, explain, graph, services, doctor) on a chosen node from
// the operator's laptop, by exec into that node's svcproxy pod, and explains
// a Service across every node in one table. Install it as kubectl plugins
// are installed: put the binary on PATH, then `kubectl svcproxy ...`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/svcproxy/svcproxy/internal/explain"
)

const usage = `Run svcproxy's node tools on a node of the cluster, from here.

Usage:
  kubectl svcproxy --node NODE trace|explain|graph|services|doctor [ARGS...]
  kubectl svcproxy explain svc/NAME [-n NAMESPACE]     # every node, one table
  kubectl svcproxy nodes                                 # the nodes and their svcproxy pods

The command and its arguments are svcproxy's own (svcproxy COMMAND --help),
run by kubectl exec in the svcproxy pod on NODE, so -o json and every other
flag work as on the node.

Flags:
`

// options are the plugin's own flags, before the command.
type options struct {
	kubectl, kubeconfig, context string
	node, namespace              string
	proxyNamespace, selector     string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-svcproxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := pflag.NewFlagSet("kubectl-svcproxy", pflag.ContinueOnError)
	fs.SetInterspersed(false) // everything after the command is svcproxy's
	fs.StringVar(&o.node, "node", "", "the node to run the command on")
	fs.StringVarP(&o.namespace, "namespace", "n", "default", "the Service's namespace, for explain svc/NAME")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubectl's --kubeconfig")
	fs.StringVar(&o.context, "context", "", "kubectl's --context")
	fs.StringVar(&o.kubectl, "kubectl", "kubectl", "the kubectl to run")
	fs.StringVar(&o.proxyNamespace, "proxy-namespace", "kube-system", "the namespace of svcproxy's DaemonSet")
	fs.StringVarP(&o.selector, "selector", "l", "k8s-app=svcproxy", "the label selector of svcproxy's pods")
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage+fs.FlagUsages()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("no command: give trace, explain, graph, services, doctor or nodes")
	}
	cmd := rest[0]
	switch cmd {
	case "nodes", "trace", "explain", "graph", "services", "doctor":
	default:
		return fmt.Errorf("unknown command %q: give trace, explain, graph, services, doctor or nodes", cmd)
	}
	// explain svc/NAME [-n NS], as kubectl names objects: svcproxy's
	// NS/NAME, on every node unless --node picks one.
	everywhere := false
	if cmd == "explain" && len(rest) > 1 && strings.HasPrefix(rest[1], "svc/") {
		rest, o.namespace = takeNamespace(rest, o.namespace)
		rest[1] = o.namespace + "/" + strings.TrimPrefix(rest[1], "svc/")
		everywhere = o.node == "" && len(rest) == 2
	}
	if cmd != "nodes" && !everywhere && o.node == "" {
		return fmt.Errorf("%s runs on one node: give --node NODE (kubectl svcproxy nodes lists them)", cmd)
	}
	pods, err := o.pods(ctx)
	if err != nil {
		return err
	}
	switch {
	case cmd == "nodes":
		tw := tabwriter.NewWriter(stdout, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSVCPROXY POD")
		for _, p := range pods {
			fmt.Fprintf(tw, "%s\t%s\n", p.node, p.name)
		}
		return tw.Flush()
	case everywhere:
		return o.explainEverywhere(ctx, pods, rest[1], stdout)
	}
	for _, p := range pods {
		if p.node == o.node {
			return o.exec(ctx, p.name, rest, stdout, stderr)
		}
	}
	return fmt.Errorf("no svcproxy pod on node %q (%s in %s): kubectl svcproxy nodes lists them", o.node, o.selector, o.proxyNamespace)
}

type pod struct{ name, node string }

// kubectlArgs are kubectl's global flags as given.
func (o options) kubectlArgs(args ...string) []string {
	var out []string
	if o.kubeconfig != "" {
		out = append(out, "--kubeconfig", o.kubeconfig)
	}
	if o.context != "" {
		out = append(out, "--context", o.context)
	}
	return append(out, args...)
}

// pods are svcproxy's pods with their nodes.
func (o options) pods(ctx context.Context) ([]pod, error) {
	var out, errOut bytes.Buffer
	c := exec.CommandContext(ctx, o.kubectl, o.kubectlArgs("-n", o.proxyNamespace, "get", "pods", "-l", o.selector,
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}`)...)
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("list svcproxy's pods: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	var pods []pod
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if name, node, ok := strings.Cut(line, " "); ok {
			pods = append(pods, pod{name, node})
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("no svcproxy pods (%s in namespace %s)", o.selector, o.proxyNamespace)
	}
	return pods, nil
}

// exec runs svcproxy with args in a pod.
func (o options) exec(ctx context.Context, pod string, args []string, stdout, stderr io.Writer) error {
	c := exec.CommandContext(ctx, o.kubectl, o.kubectlArgs(append([]string{"-n", o.proxyNamespace, "exec", pod, "--", "svcproxy"}, args...)...)...)
	c.Stdout, c.Stderr = stdout, stderr
	return c.Run()
}

// explainEverywhere explains a Service on every node and writes one table:
// which nodes serve each of its addresses, which drop it, and why.
func (o options) explainEverywhere(ctx context.Context, pods []pod, service string, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPORT\tADDRESS\tFROM A POD\tFROM OUTSIDE")
	var failed []string
	for _, p := range pods {
		var out, errOut bytes.Buffer
		if err := o.exec(ctx, p.name, []string{"explain", service, "-o", "json"}, &out, &errOut); err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t\n", p.node, firstLine(errOut.String()))
			failed = append(failed, p.node)
			continue
		}
		var rep explain.ServiceReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return fmt.Errorf("node %s: %w", p.node, err)
		}
		for _, sp := range rep.Ports {
			for _, e := range sp.Entries {
				addr := fmt.Sprintf("%s %s:%d/%s", e.Kind, e.Addr, e.Port, e.Protocol)
				if e.Kind == "NodePort" {
					addr = fmt.Sprintf("NodePort %d/%s", e.Port, e.Protocol)
				}
				fromPod, fromOutside := "-", "-"
				for _, r := range e.Results {
					switch {
					case strings.HasPrefix(r.Source, "from a pod"):
						fromPod = short(r.Summary)
					case strings.HasPrefix(r.Source, "from outside"):
						fromOutside = short(r.Summary)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.node, sp.Name, addr, fromPod, fromOutside)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("explain failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

// short sums up a trace summary for a table cell: how many endpoints a
// DNAT spreads over, and whether the source is masqueraded.
func short(summary string) string {
	if !strings.HasPrefix(summary, "DNAT to ") {
		return summary
	}
	n := strings.Count(summary, "%")
	s := fmt.Sprintf("DNAT to %d endpoint(s)", n)
	if strings.Contains(summary, "masqueraded") {
		return s + ", masqueraded"
	}
	return s + ", source kept"
}

// takeNamespace removes -n NS / --namespace[=]NS from args, and returns
// the namespace given (else ns).
func takeNamespace(args []string, ns string) ([]string, string) {
	var out []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "-n" || a == "--namespace") && i+1 < len(args):
			ns = args[i+1]
			i++
		case strings.HasPrefix(a, "--namespace="):
			ns = strings.TrimPrefix(a, "--namespace=")
		case strings.HasPrefix(a, "-n") && len(a) > 2:
			ns = a[2:]
		default:
			out = append(out, a)
		}
	}
	return out, ns
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

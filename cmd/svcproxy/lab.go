package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcproxy/svcproxy/examples"
	"github.com/svcproxy/svcproxy/internal/lab"
)

const labPrefix = "svcproxy-lab"

// labPods are the pods the bundled manifests in examples/lab point at.
var labPods = []lab.PodSpec{
	{Name: "azure-vote-front-1", TCP: []int{80}},
	{Name: "azure-vote-front-2", TCP: []int{80}},
	{Name: "coredns-1", UDP: []int{53}},
}

func newLabCmd() *cobra.Command {
	var keep bool
	var requests int
	mode := "iptables"
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Show svcproxy at work in a throwaway world of network namespaces",
		Long: `Build a small world of network namespaces (a node, three pods, a client outside
the cluster), run svcproxy in the node on the bundled example manifests, and
send requests from the client to the NodePort and from the node to a UDP
ClusterIP. Everything is removed on exit, also after Ctrl-C, and leftovers of
a crashed run are removed first. The machine's own network namespace and its
rules are never touched. Needs root and iproute2 and iptables (nftables mode:
nothing more; nft only to look at the table with --keep).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mode != "iptables" && mode != "nftables" {
				return fmt.Errorf("--proxy-mode %q: must be \"iptables\" or \"nftables\"", mode)
			}
			return runLab(keep, requests, mode)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the lab running until Ctrl-C, to explore it with ip netns exec (the commands are printed)")
	cmd.Flags().IntVar(&requests, "requests", 6, "how many requests to send to the NodePort")
	cmd.Flags().StringVar(&mode, "proxy-mode", mode, "the mode svcproxy runs in: iptables or nftables")
	return cmd
}

func runLab(keep bool, requests int, mode string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("lab needs root: it creates network namespaces")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	unlock, err := lockLab()
	if err != nil {
		return err
	}
	defer unlock()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "svcproxy-lab-manifests-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeLabManifests(dir); err != nil {
		return err
	}

	fmt.Println("lab: building namespaces (node, pods, client) ...")
	l, err := lab.Build(ctx, lab.Config{Prefix: labPrefix, Nodes: 1, Pods: labPods})
	if err != nil {
		return err
	}
	defer func() {
		l.Close()
		fmt.Println("lab: removed the lab's namespaces and processes")
	}()
	node := l.Nodes[0]
	fmt.Printf("lab:   node    %-36s %s\n", node.Name, node.IP)
	for _, p := range l.Pods {
		fmt.Printf("lab:   pod     %-36s %s\n", p.Name, p.IP)
	}
	fmt.Printf("lab:   client  %-36s %s\n", l.Client.Name, l.ClientIP)

	proc, err := l.Start(&node.NS, self, "run", "--manifests", dir, "--hostname-override", node.NodeName,
		"--cluster-cidr", "10.244.0.0/16", "--iptables-min-sync-period", "100ms", "--state-dir", filepath.Join(dir, ".state"), "--proxy-mode", mode)
	if err != nil {
		return err
	}
	fmt.Printf("lab: svcproxy running in %s (pid %d) on %s\n", node.Name, proc.Pid(), dir)

	target := node.IP.String() + ":30450"
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	start := time.Now()
	first, err := l.Client.WaitHTTP(wctx, target)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "svcproxy log:\n%s", proc.Output())
		return fmt.Errorf("NodePort never answered: %w", err)
	}
	fmt.Printf("lab: NodePort %s answered after %s\n", target, time.Since(start).Round(time.Millisecond))
	counts := map[string]int{}
	for i := 0; i < requests; i++ {
		a := first
		if i > 0 {
			if a, err = l.Client.HTTPGet(ctx, target); err != nil {
				return fmt.Errorf("request %d to %s: %w", i+1, target, err)
			}
		}
		counts[a.Pod]++
		fmt.Printf("lab:   client %s -> %s : answered by pod %s (pod saw source %s)\n", l.ClientIP, target, a.Pod, a.Remote)
	}
	pods := make([]string, 0, len(counts))
	for p := range counts {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	for _, p := range pods {
		fmt.Printf("lab: %s answered %d of %d requests\n", p, counts[p], requests)
	}
	// The incident: another process on the node listens on the NodePort.
	rogue, err := node.Listen("tcp", ":30450")
	if err != nil {
		return fmt.Errorf("start a rogue listener on the node: %w", err)
	}
	go func() {
		for {
			c, err := rogue.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.0 200 OK\r\n\r\nrogue\n")
			c.Close()
		}
	}()
	a, err := l.Client.HTTPGet(ctx, target)
	rogue.Close()
	if err != nil {
		return fmt.Errorf("request with a rogue listener on the NodePort: %w", err)
	}
	fmt.Printf("lab: a rogue process now listens on :30450 in the node; the request is still answered by pod %s\n", a.Pod)
	fmt.Println("lab:   (nat PREROUTING rewrites the destination before any local socket sees the packet)")

	dns, err := node.UDPAsk(ctx, "10.96.0.53:53", nil)
	if err != nil {
		return fmt.Errorf("UDP ClusterIP 10.96.0.53:53 from the node: %w", err)
	}
	fmt.Printf("lab: UDP 10.96.0.53:53 (kube-system/kube-dns:dns) from the node: answered by pod %s\n", dns.Pod)

	if keep {
		rules := "iptables-save -t nat"
		if mode == "nftables" {
			rules = "nft list table ip kube-proxy"
		}
		fmt.Printf(`lab: running until Ctrl-C. Try:
  ip netns exec %[1]s curl -s %[2]s
  ip netns exec %[3]s %[4]s
  ip netns exec %[3]s %[5]s trace --to %[2]s --from %[6]s
  ip netns exec %[3]s %[5]s explain default/azure-vote-front
  ip netns exec %[3]s %[5]s trace --to 10.96.0.53:53 --proto udp --direction local
  ip netns exec %[3]s %[5]s services -o wide
  ip netns exec %[3]s %[5]s doctor
  ip netns exec %[3]s curl -s 127.0.0.1:30450
`, l.Client.Name, target, node.Name, rules, self, l.ClientIP)
		<-ctx.Done()
	}
	return nil
}

// lockLab makes sure one lab runs at a time: a second one would remove the
// first one's namespaces as a crashed run's leftovers. The lock is an
// flock, so a crashed lab (SIGKILL) leaves none behind.
func lockLab() (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), labPrefix+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another svcproxy lab is running (pid %s, lock %s): stop it with Ctrl-C first; two labs would share the namespace names", strings.TrimSpace(string(pid)), path)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

func writeLabManifests(dir string) error {
	return fs.WalkDir(examples.Lab, "lab", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := examples.Lab.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	})
}

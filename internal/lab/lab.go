// Package lab builds small worlds of network namespaces for svcproxy: nodes
// on a shared LAN, pods wired to their node with veth pairs, and a client
// outside the cluster. It drives both `svcproxy lab` and the real-kernel
// tests, and never changes the machine's own network namespace.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Config describes the world to build.
type Config struct {
	// Prefix names every namespace ("PREFIX-node-1", "PREFIX-client", ...);
	// one prefix is one lab, and leftovers with it are removed first.
	Prefix string
	// Nodes is how many nodes to build (at least 1).
	Nodes int
	Pods  []PodSpec
	// ControlPlane adds a namespace on the LAN for an API server
	// (ControlPlaneIP); see StartControlPlane.
	ControlPlane bool
	// IPv6 gives every node, pod and the client an IPv6 address too
	// (fd00:77::/64 on the LAN, fd00:10:244:<node>::/64 for pods).
	IPv6 bool
}

// PodSpec is one pod: it answers HTTP on each TCP port and datagrams on each
// UDP port with its own name.
type PodSpec struct {
	Name string
	// Node is the index of the node the pod runs on.
	Node int
	// IP defaults to 10.244.<node>.<10 + n> for the node's n-th pod.
	IP  netip.Addr
	TCP []int
	UDP []int
}

// Lab is a built world. Close removes it.
type Lab struct {
	Prefix   string
	LAN      *NS
	Nodes    []*Node
	Client   *NS
	ClientIP netip.Addr
	// ClientIP6 is the client's IPv6 address (with Config.IPv6).
	ClientIP6 netip.Addr
	Pods      []*Pod
	// CP is the control-plane namespace, when Config.ControlPlane is set.
	CP *NS

	procs []*Proc
}

// Node is a cluster node: a namespace with an address on the LAN and a pod
// CIDR routed to its pods.
type Node struct {
	NS
	// NodeName is the Kubernetes node name ("node-1", ...).
	NodeName string
	IP       netip.Addr
	PodCIDR  netip.Prefix
	gateway  netip.Addr
	// IP6, PodCIDR6 and gateway6 are set with Config.IPv6.
	IP6      netip.Addr
	PodCIDR6 netip.Prefix
	gateway6 netip.Addr
}

// Pod is a running pod.
type Pod struct {
	NS
	Spec PodSpec
	IP   netip.Addr
	// IP6 is set with Config.IPv6.
	IP6     netip.Addr
	servers []io.Closer
}

// NodeIP is the LAN address of node i: 192.168.77.1 for the first node,
// 192.168.77.11, .12, ... for the others.
func NodeIP(i int) netip.Addr {
	if i == 0 {
		return netip.AddrFrom4([4]byte{192, 168, 77, 1})
	}
	return netip.AddrFrom4([4]byte{192, 168, 77, byte(10 + i)})
}

// ControlPlaneIP is where the lab's API server listens, on the LAN.
var ControlPlaneIP = netip.AddrFrom4([4]byte{192, 168, 77, 100})

// lanGateway is the nodes' default gateway; no namespace owns it.
var lanGateway = netip.AddrFrom4([4]byte{192, 168, 77, 254})

// ClientIP is the LAN address of the client outside the cluster.
var ClientIP = netip.AddrFrom4([4]byte{192, 168, 77, 2})

// NodeIP6 and ClientIP6 are the IPv6 LAN addresses, mirroring the IPv4 ones.
func NodeIP6(i int) netip.Addr {
	b := NodeIP(i).As4()
	return netip.MustParseAddr(fmt.Sprintf("fd00:77::%x", b[3]))
}

// ClientIP6 is the client's IPv6 LAN address.
var ClientIP6 = netip.MustParseAddr("fd00:77::2")

func podNet6(node int) string { return fmt.Sprintf("fd00:10:244:%x::", node) }

// Build creates the namespaces, links, routes and pod servers. On error
// everything created so far is removed.
func Build(ctx context.Context, cfg Config) (l *Lab, err error) {
	if cfg.Prefix == "" {
		return nil, errors.New("lab: a namespace prefix is required")
	}
	if cfg.Nodes < 1 {
		cfg.Nodes = 1
	}
	if err := RemoveStale(ctx, cfg.Prefix); err != nil {
		return nil, err
	}
	l = &Lab{Prefix: cfg.Prefix}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	l.LAN, err = l.addNS(ctx, "lan")
	if err != nil {
		return nil, err
	}
	if err := ipCmds(ctx,
		[]string{"-n", l.LAN.Name, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", l.LAN.Name, "link", "set", "br0", "up"},
	); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Nodes; i++ {
		ns, err := l.addNS(ctx, "node-"+strconv.Itoa(i+1))
		if err != nil {
			return nil, err
		}
		n := &Node{NS: *ns, NodeName: "node-" + strconv.Itoa(i+1), IP: NodeIP(i),
			PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
			gateway: netip.AddrFrom4([4]byte{10, 244, byte(i), 1})}
		if err := l.attachLAN(ctx, &n.NS, "n"+strconv.Itoa(i+1), n.IP); err != nil {
			return nil, err
		}
		if cfg.IPv6 {
			n.IP6 = NodeIP6(i)
			n.PodCIDR6 = netip.MustParsePrefix(podNet6(i) + "/64")
			n.gateway6 = netip.MustParseAddr(podNet6(i) + "1")
			if err := ipCmds(ctx,
				[]string{"-n", n.Name, "addr", "add", n.IP6.String() + "/64", "dev", "eth0", "nodad"},
				[]string{"-n", n.Name, "-6", "route", "add", "default", "via", "fd00:77::fe"},
			); err != nil {
				return nil, err
			}
			if _, err := n.Run(ctx, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"); err != nil {
				return nil, err
			}
		}
		// Like a real node, it has a default route, so that packets to a
		// cluster IP (which no interface owns) reach nat OUTPUT instead of
		// failing with "network is unreachable". The gateway does not exist:
		// what no rule rewrites goes nowhere.
		if err := ipCmds(ctx, []string{"-n", n.Name, "route", "add", "default", "via", lanGateway.String()}); err != nil {
			return nil, err
		}
		// A node forwards for its pods.
		if _, err := n.Run(ctx, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
			return nil, err
		}
		l.Nodes = append(l.Nodes, n)
	}
	for i, n := range l.Nodes {
		for j, other := range l.Nodes {
			if i != j {
				if err := ipCmds(ctx, []string{"-n", n.Name, "route", "add", other.PodCIDR.String(), "via", other.IP.String()}); err != nil {
					return nil, err
				}
				if cfg.IPv6 {
					if err := ipCmds(ctx, []string{"-n", n.Name, "-6", "route", "add", other.PodCIDR6.String(), "via", other.IP6.String()}); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	l.Client, err = l.addNS(ctx, "client")
	if err != nil {
		return nil, err
	}
	l.ClientIP = ClientIP
	if err := l.attachLAN(ctx, l.Client, "c1", l.ClientIP); err != nil {
		return nil, err
	}
	if cfg.IPv6 {
		l.ClientIP6 = ClientIP6
		if err := ipCmds(ctx, []string{"-n", l.Client.Name, "addr", "add", ClientIP6.String() + "/64", "dev", "eth0", "nodad"}); err != nil {
			return nil, err
		}
	}
	if cfg.ControlPlane {
		if l.CP, err = l.addNS(ctx, "cp"); err != nil {
			return nil, err
		}
		if err := l.attachLAN(ctx, l.CP, "cp1", ControlPlaneIP); err != nil {
			return nil, err
		}
	}
	perNode := map[int]int{}
	for i, spec := range cfg.Pods {
		if spec.Node < 0 || spec.Node >= len(l.Nodes) {
			return nil, fmt.Errorf("lab: pod %s: node %d does not exist", spec.Name, spec.Node)
		}
		if !spec.IP.IsValid() {
			spec.IP = netip.AddrFrom4([4]byte{10, 244, byte(spec.Node), byte(10 + perNode[spec.Node])})
		}
		ip6 := netip.Addr{}
		if cfg.IPv6 {
			ip6 = netip.MustParseAddr(fmt.Sprintf("%s%x", podNet6(spec.Node), 16+perNode[spec.Node]))
		}
		perNode[spec.Node]++
		p, err := l.addPod(ctx, i, spec, ip6)
		if err != nil {
			return nil, err
		}
		l.Pods = append(l.Pods, p)
	}
	return l, nil
}

func (l *Lab) addNS(ctx context.Context, role string) (*NS, error) {
	name := l.Prefix + "-" + role
	if err := ipCmds(ctx, []string{"netns", "add", name}); err != nil {
		return nil, err
	}
	ns := &NS{Name: name}
	return ns, ipCmds(ctx, []string{"-n", name, "link", "set", "lo", "up"})
}

// attachLAN wires a namespace to the LAN bridge as eth0 with addr/24.
func (l *Lab) attachLAN(ctx context.Context, ns *NS, lanSide string, addr netip.Addr) error {
	return ipCmds(ctx,
		[]string{"link", "add", "eth0", "netns", ns.Name, "type", "veth", "peer", "name", lanSide, "netns", l.LAN.Name},
		[]string{"-n", l.LAN.Name, "link", "set", lanSide, "master", "br0", "up"},
		[]string{"-n", ns.Name, "addr", "add", addr.String() + "/24", "dev", "eth0"},
		[]string{"-n", ns.Name, "link", "set", "eth0", "up"},
	)
}

// addPod wires a pod to its node: a veth with the pod's /32 on one side and
// the node's pod gateway on the other, routed rather than bridged so that
// pod-to-pod traffic on one node goes through the node's netfilter.
func (l *Lab) addPod(ctx context.Context, idx int, spec PodSpec, ip6 netip.Addr) (*Pod, error) {
	node := l.Nodes[spec.Node]
	ns, err := l.addNS(ctx, "pod-"+spec.Name)
	if err != nil {
		return nil, err
	}
	p := &Pod{NS: *ns, Spec: spec, IP: spec.IP, IP6: ip6}
	hostSide := "vp" + strconv.Itoa(idx)
	if err := ipCmds(ctx,
		[]string{"link", "add", "eth0", "netns", p.Name, "type", "veth", "peer", "name", hostSide, "netns", node.Name},
		[]string{"-n", node.Name, "addr", "add", node.gateway.String() + "/32", "dev", hostSide},
		[]string{"-n", node.Name, "link", "set", hostSide, "up"},
		[]string{"-n", node.Name, "route", "add", p.IP.String() + "/32", "dev", hostSide},
		[]string{"-n", p.Name, "addr", "add", p.IP.String() + "/32", "dev", "eth0"},
		[]string{"-n", p.Name, "link", "set", "eth0", "up"},
		[]string{"-n", p.Name, "route", "add", node.gateway.String(), "dev", "eth0"},
		[]string{"-n", p.Name, "route", "add", "default", "via", node.gateway.String()},
	); err != nil {
		return nil, err
	}
	if ip6.IsValid() {
		if err := ipCmds(ctx,
			[]string{"-n", node.Name, "addr", "add", node.gateway6.String() + "/128", "dev", hostSide, "nodad"},
			[]string{"-n", node.Name, "-6", "route", "add", ip6.String() + "/128", "dev", hostSide},
			[]string{"-n", p.Name, "addr", "add", ip6.String() + "/128", "dev", "eth0", "nodad"},
			[]string{"-n", p.Name, "-6", "route", "add", node.gateway6.String(), "dev", "eth0"},
			[]string{"-n", p.Name, "-6", "route", "add", "default", "via", node.gateway6.String()},
		); err != nil {
			return nil, err
		}
	}
	if err := p.serve(); err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops every process the lab started and removes its namespaces.
func (l *Lab) Close() error {
	for _, p := range l.procs {
		p.Kill()
	}
	for _, p := range l.Pods {
		p.stop()
	}
	return RemoveStale(context.Background(), l.Prefix)
}

// RemoveStale removes the namespaces of a lab with this prefix, killing the
// processes still inside them first; it cleans up after a crashed run.
func RemoveStale(ctx context.Context, prefix string) error {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("lab: list namespaces (is iproute2 installed?): %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix+"-") {
			continue
		}
		name := f[0]
		if pids, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(pids)) {
				if n, err := strconv.Atoi(pid); err == nil {
					killPid(n)
				}
			}
		}
		// The kernel frees a namespace's links once its last user is gone;
		// give killed processes a moment.
		var derr error
		for try := 0; try < 20; try++ {
			if derr = ipCmds(ctx, []string{"netns", "del", name}); derr == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if derr != nil {
			errs = append(errs, derr)
		}
	}
	return errors.Join(errs...)
}

func ipCmds(ctx context.Context, cmds ...[]string) error {
	for _, args := range cmds {
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

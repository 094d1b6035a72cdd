package dptest

import (
	"net/netip"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// ClusterCIDR is the behaviour cases' pod CIDR.
var ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// Web is the incident's NodePort Service (default/azure-vote-front,
// cluster IP 10.96.0.10:80, NodePort 30450) with these endpoints.
func Web(eps ...model.Endpoint) *model.ServicePort {
	return &model.ServicePort{
		Name:     model.ServicePortName{Namespace: "default", Name: "azure-vote-front"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, NodePort: 30450,
		Endpoints: eps,
	}
}

// DNS is a UDP cluster IP Service (kube-system/kube-dns:dns, 10.96.0.53:53).
func DNS(eps ...model.Endpoint) *model.ServicePort {
	return &model.ServicePort{
		Name:     model.ServicePortName{Namespace: "kube-system", Name: "kube-dns", Port: "dns"},
		Protocol: model.UDP, ClusterIP: netip.MustParseAddr("10.96.0.53"), Port: 53,
		Endpoints: eps,
	}
}

// LB is a LoadBalancer Service with externalTrafficPolicy: Local
// (default/lb:https, LB IP 203.0.113.50 for 198.51.100.0/24 only, NodePort
// 31443, health check node port 32000).
func LB(eps ...model.Endpoint) *model.ServicePort {
	return &model.ServicePort{
		Name:     model.ServicePortName{Namespace: "default", Name: "lb", Port: "https"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.96.40.4"), Port: 443, NodePort: 31443,
		LoadBalancerIPs:     []netip.Addr{netip.MustParseAddr("203.0.113.50")},
		SourceRanges:        []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		ExternalPolicyLocal: true,
		HealthCheckNodePort: 32000,
		Endpoints:           eps,
	}
}

func withNodePort(sp *model.ServicePort, port int32) *model.ServicePort {
	sp.NodePort = port
	return sp
}

// Terminating is e still serving while it terminates.
func Terminating(e model.Endpoint) model.Endpoint {
	e.Ready, e.Serving, e.Terminating = false, true, true
	return e
}

// Behaviours are what both modes do with the Services of the model, stated
// once: each mode renders every case to its golden file and traces it.
// Where the modes differ on purpose a trace says "iptables|nftables".
func Behaviours() []Case {
	defaults := dataplane.Options{ClusterCIDR: ClusterCIDR, LocalhostNodePorts: true}
	const none = "NONE (no rule changes the packet)"
	both2 := func(a, b string) string { return "DNAT to " + a + " (50%), " + b + " (50%)" }
	sticky := &model.ServicePort{
		Name: model.ServicePortName{Namespace: "default", Name: "sticky"}, Protocol: model.TCP,
		ClusterIP: netip.MustParseAddr("10.96.50.1"), Port: 80, ExternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.50")},
		AffinitySeconds: 10800, Endpoints: []model.Endpoint{Ep("10.244.0.10", 80), Remote("10.244.1.10", 80)},
	}
	itpLocal := func(name, ip string, eps ...model.Endpoint) *model.ServicePort {
		return &model.ServicePort{Name: model.ServicePortName{Namespace: "default", Name: name}, Protocol: model.UDP,
			ClusterIP: netip.MustParseAddr(ip), Port: 53, InternalPolicyLocal: true, Endpoints: eps}
	}
	outOfZone := Remote("10.244.1.12", 53)
	outOfZone.OutOfTopology = true // hinted for another zone
	web6 := Web(Ep("fd00:10:244::10", 80), Ep("fd00:10:244::11", 80))
	web6.ClusterIP = netip.MustParseAddr("fd00:96::10")
	return []Case{
		{
			Name:  "nodeport-two-endpoints",
			Model: &model.State{Services: []*model.ServicePort{Web(Ep("10.244.0.10", 80), Ep("10.244.0.11", 80))}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("client to NodePort", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450", both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded"),
				T("client to cluster IP", netfilter.Arriving, "192.168.77.2", "tcp", "10.96.0.10:80", both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded"),
				T("pod to cluster IP keeps its source", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:80", both2("10.244.0.10:80", "10.244.0.11:80")+"; source kept"),
				T("a pod reaching itself through the Service is masqueraded (hairpin), not when it reaches the other pod", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"DNAT to 10.244.0.10:80 (50%, masqueraded), 10.244.0.11:80 (50%)"),
				T("node to its own NodePort", netfilter.Local, "192.168.77.1", "tcp", "192.168.77.1:30450", both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded"),
				T("node to localhost NodePort (none in nftables mode, as upstream's)", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded|"+none),
				T("neighbour to a local-only service on 127.0.0.1 is dropped (CVE-2020-8558)", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22",
					"DROP by filter KUBE-FIREWALL|"+none),
				T("neighbour to 127.0.0.1:NodePort is dropped too", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:30450", "DROP by filter KUBE-FIREWALL|"+none),
				T("wrong protocol is not touched", netfilter.Arriving, "192.168.77.2", "udp", "192.168.77.1:30450", none),
				T("other port on the node is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:22", none),
				T("NodePort on a foreign address is not touched", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.9:30450", none),
				T("a wrong port of a cluster IP (rejected in nftables mode, as upstream's)", netfilter.Arriving, "10.244.0.12", "tcp", "10.96.0.10:81",
					none+"|REJECT by ip kube-proxy cluster-ips-check"),
			},
		},
		{
			Name: "three-endpoints-and-udp",
			Model: &model.State{Services: []*model.ServicePort{
				Web(Ep("10.244.0.10", 8080), Ep("10.244.0.11", 8080), Ep("10.244.1.7", 8080)),
				DNS(Ep("10.244.0.12", 53)),
			}},
			Opts: defaults,
			Traces: []TraceCase{
				T("three endpoints share equally", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:8080 (33.3%), 10.244.0.11:8080 (33.3%), 10.244.1.7:8080 (33.3%); masqueraded"),
				T("UDP cluster IP from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53", "DNAT to 10.244.0.12:53 (100%); masqueraded"),
				T("UDP cluster IP from a pod", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53", "DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
		{
			Name:  "no-endpoints",
			Model: &model.State{Services: []*model.ServicePort{Web(), DNS()}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("NodePort without endpoints is rejected", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450",
					"REJECT by filter KUBE-EXTERNAL-SERVICES|REJECT by ip kube-proxy reject-chain"),
				T("cluster IP without endpoints is rejected", netfilter.Arriving, "10.244.0.10", "tcp", "10.96.0.10:80",
					"REJECT by filter KUBE-SERVICES|REJECT by ip kube-proxy reject-chain"),
				T("UDP cluster IP without endpoints is rejected from the node", netfilter.Local, "192.168.77.1", "udp", "10.96.0.53:53",
					"REJECT by filter KUBE-SERVICES|REJECT by ip kube-proxy reject-chain"),
			},
		},
		{
			// Upstream's KubeProxyNFTablesLocalhostNodePorts gate with
			// loopback listed: svcproxy's listener serves TCP NodePorts on
			// 127.0.0.1, so nftables mode leaves them be and rejects (and
			// counts) the other protocols. iptables mode DNATs both.
			Name: "localhost-nodeports-served",
			Model: &model.State{Services: []*model.ServicePort{
				Web(Ep("10.244.0.10", 80)), withNodePort(DNS(Ep("10.244.0.12", 53)), 30053),
			}},
			Opts: dataplane.Options{ClusterCIDR: ClusterCIDR, LocalhostNodePorts: true, RejectLocalhostNodePorts: true},
			Traces: []TraceCase{
				T("TCP to a localhost NodePort is the listener's", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					"DNAT to 10.244.0.10:80 (100%); masqueraded|"+none),
				T("UDP to a localhost NodePort is rejected and counted", netfilter.Local, "127.0.0.1", "udp", "127.0.0.1:30053",
					"DNAT to 10.244.0.12:53 (100%); masqueraded|REJECT by ip kube-proxy localhost-nodeport-reject-udp"),
				T("a port that is no NodePort is not touched", netfilter.Local, "127.0.0.1", "udp", "127.0.0.1:30054", none),
				T("the NodePort on the node's address is served as ever", netfilter.Local, "192.168.77.1", "udp", "192.168.77.1:30053",
					"DNAT to 10.244.0.12:53 (100%); masqueraded"),
			},
		},
		{
			// The gate without loopback listed: nothing serves localhost
			// NodePorts in nftables mode, and every protocol's are
			// rejected and counted, as upstream.
			Name: "localhost-nodeports-rejected",
			Model: &model.State{Services: []*model.ServicePort{
				Web(Ep("10.244.0.10", 80)), withNodePort(DNS(), 30053),
			}},
			Opts: dataplane.Options{ClusterCIDR: ClusterCIDR, RejectLocalhostNodePorts: true},
			Traces: []TraceCase{
				T("TCP to a localhost NodePort is rejected and counted", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					none+"|REJECT by ip kube-proxy localhost-nodeport-reject-tcp"),
				T("so is UDP, endpoints or not", netfilter.Local, "127.0.0.1", "udp", "127.0.0.1:30053",
					none+"|REJECT by ip kube-proxy localhost-nodeport-reject-udp"),
				T("the NodePort on the node's address is served as ever", netfilter.Local, "192.168.77.1", "tcp", "192.168.77.1:30450",
					"DNAT to 10.244.0.10:80 (100%); masqueraded"),
			},
		},
		{
			// Upstream's nfacct counters (iptables mode, where the kernel has
			// them): the node's localhost NodePort packets go through a rule
			// that counts them, INVALID drops are counted too.
			Name:  "nfacct-counters",
			Model: &model.State{Services: []*model.ServicePort{Web(Ep("10.244.0.10", 80), Ep("10.244.0.11", 80))}},
			Opts:  dataplane.Options{ClusterCIDR: ClusterCIDR, LocalhostNodePorts: true, NFAcct: true},
			Traces: []TraceCase{
				T("node to localhost NodePort, counted", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450",
					both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded|"+none),
				T("client to NodePort as ever", netfilter.Arriving, "192.168.77.2", "tcp", "192.168.77.1:30450", both2("10.244.0.10:80", "10.244.0.11:80")+"; masqueraded"),
			},
		},
		{
			Name:  "masquerade-all",
			Model: &model.State{Services: []*model.ServicePort{DNS(Ep("10.244.0.12", 53))}},
			Opts:  dataplane.Options{MasqueradeAll: true},
			Traces: []TraceCase{
				T("pod traffic is masqueraded too", netfilter.Arriving, "10.244.0.10", "udp", "10.96.0.53:53", "DNAT to 10.244.0.12:53 (100%); masqueraded"),
				T("no localhost rule without localhost NodePorts", netfilter.Arriving, "192.168.77.2", "tcp", "127.0.0.1:22", none),
				T("no localhost NodePorts even for the node itself", netfilter.Local, "127.0.0.1", "udp", "127.0.0.1:30053", none),
			},
		},
		{
			Name:  "loadbalancer-local-policy-source-ranges",
			Model: &model.State{Services: []*model.ServicePort{LB(Ep("10.244.0.10", 8443), Remote("10.244.1.10", 8443))}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("an allowed source to the LB IP reaches only the local endpoint, source kept", netfilter.Arriving, "198.51.100.7", "tcp", "203.0.113.50:443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				T("a source outside loadBalancerSourceRanges is dropped", netfilter.Arriving, "192.0.2.99", "tcp", "203.0.113.50:443",
					"DROP by filter KUBE-PROXY-FIREWALL|DROP by ip kube-proxy firewall-BPKTVXJ3-default/lb/tcp/https"),
				T("source ranges apply to pods too", netfilter.Arriving, "10.244.0.30", "tcp", "203.0.113.50:443",
					"DROP by filter KUBE-PROXY-FIREWALL|DROP by ip kube-proxy firewall-BPKTVXJ3-default/lb/tcp/https"),
				T("NodePort with Local policy: local endpoint only, source kept", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.0.10:8443 (100%); source kept"),
				T("a pod reaching the NodePort uses every endpoint (short circuit)", netfilter.Arriving, "10.244.1.5", "tcp", "192.168.77.1:31443",
					both2("10.244.0.10:8443", "10.244.1.10:8443")+"; source kept"),
				T("the node itself reaching its NodePort uses every endpoint, masqueraded", netfilter.Local, "192.168.77.1", "tcp", "192.168.77.1:31443",
					both2("10.244.0.10:8443", "10.244.1.10:8443")+"; masqueraded"),
				T("cluster IP keeps Cluster policy", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.40.4:443",
					both2("10.244.0.10:8443", "10.244.1.10:8443")+"; source kept"),
				T("the health check node port is accepted (nftables mode leaves it open)", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:32000",
					"ACCEPT (not rewritten)|"+none),
			},
		},
		{
			Name:  "local-policy-without-local-endpoints",
			Model: &model.State{Services: []*model.ServicePort{LB(Remote("10.244.1.10", 8443))}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("NodePort on a node without local endpoints drops", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:31443",
					"DROP by filter KUBE-EXTERNAL-SERVICES|DROP by ip kube-proxy nodeport-endpoints-check"),
				T("an allowed source to the LB IP drops (not DNATed: the firewall's drop applies)", netfilter.Arriving, "198.51.100.7", "tcp", "203.0.113.50:443",
					"DROP by filter KUBE-PROXY-FIREWALL|DROP by ip kube-proxy service-endpoints-check"),
				T("a pod reaching the NodePort is short-circuited to the remote endpoint", netfilter.Arriving, "10.244.0.5", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.1.10:8443 (100%); source kept"),
				T("cluster IP still works", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); source kept"),
			},
		},
		{
			Name:  "external-ips-and-affinity",
			Model: &model.State{Services: []*model.ServicePort{sticky}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("external IP from outside, masqueraded (Cluster policy)", netfilter.Arriving, "192.0.2.7", "tcp", "192.0.2.50:80",
					both2("10.244.0.10:80", "10.244.1.10:80")+"; masqueraded"),
				T("new clients spread over the endpoints", netfilter.Arriving, "10.244.1.5", "tcp", "10.96.50.1:80", both2("10.244.0.10:80", "10.244.1.10:80")+"; source kept"),
			},
		},
		{
			Name: "internal-traffic-policy-local",
			Model: &model.State{Services: []*model.ServicePort{
				itpLocal("node-local", "10.96.0.60", Ep("10.244.0.12", 53), Remote("10.244.1.12", 53)),
				itpLocal("elsewhere", "10.96.0.61", Remote("10.244.1.12", 53)),
			}},
			Opts: defaults,
			Traces: []TraceCase{
				T("only the endpoint on this node", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.60:53", "DNAT to 10.244.0.12:53 (100%); source kept"),
				T("no local endpoint: dropped, not rejected", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.61:53",
					"DROP by filter KUBE-SERVICES|DROP by ip kube-proxy service-endpoints-check"),
			},
		},
		{
			Name:  "terminating-endpoints",
			Model: &model.State{Services: []*model.ServicePort{DNS(Terminating(Ep("10.244.0.12", 53)), Terminating(Remote("10.244.1.12", 53)))}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("with no ready endpoint, serving terminating ones are used", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.53:53",
					both2("10.244.0.12:53", "10.244.1.12:53")+"; source kept"),
			},
		},
		{
			Name:  "nodeport-addresses",
			Model: &model.State{Services: []*model.ServicePort{Web(Ep("10.244.0.10", 80))}},
			Opts:  dataplane.Options{ClusterCIDR: ClusterCIDR, NodePortCIDRs: []netip.Prefix{netip.MustParsePrefix("192.168.77.0/24")}},
			Traces: []TraceCase{
				T("NodePort on a listed address", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.77.1:30450", "DNAT to 10.244.0.10:80 (100%); masqueraded"),
				T("not on the node's other addresses", netfilter.Arriving, "192.0.2.7", "tcp", "192.168.88.1:30450", none),
				T("not on 127.0.0.1", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30450", none),
			},
		},
		{
			Name:  "topology-hints",
			Model: &model.State{Services: []*model.ServicePort{DNS(Ep("10.244.0.12", 53), outOfZone)}},
			Opts:  defaults,
			Traces: []TraceCase{
				T("Cluster traffic stays in the zone the hints say", netfilter.Arriving, "10.244.0.5", "udp", "10.96.0.53:53", "DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
		{
			Name:  "ipv6",
			Model: &model.State{Services: []*model.ServicePort{Web(Ep("10.244.0.10", 80)), web6}},
			Opts:  dataplane.Options{IPv6: true, ClusterCIDR: netip.MustParsePrefix("fd00:10:244::/48"), LocalhostNodePorts: true},
			Traces: []TraceCase{
				T("IPv6 NodePort from outside", netfilter.Arriving, "fd00:77::2", "tcp", "[fd00:77::1]:30450",
					both2("[fd00:10:244::10]:80", "[fd00:10:244::11]:80")+"; masqueraded"),
				T("IPv6 cluster IP from a pod keeps its source", netfilter.Arriving, "fd00:10:244::20", "tcp", "[fd00:96::10]:80",
					both2("[fd00:10:244::10]:80", "[fd00:10:244::11]:80")+"; source kept"),
				T("the IPv4 cluster IP is not in the IPv6 rules", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.0.10:80", none),
				T("no localhost NodePorts over ::1", netfilter.Local, "::1", "tcp", "[::1]:30450", none),
			},
		},
		{
			// --detect-local-mode NodeCIDR: pods are the sources in this
			// node's pod range, not in the whole cluster CIDR.
			Name: "detect-local-node-cidr",
			Model: &model.State{Services: []*model.ServicePort{LB(Remote("10.244.1.10", 8443))},
				Node: model.Node{Name: "node-1", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}}},
			Opts: dataplane.Options{ClusterCIDR: ClusterCIDR, LocalByNodeCIDR: true},
			Traces: []TraceCase{
				T("a pod of this node keeps its source", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); source kept"),
				T("a pod of another node is masqueraded", netfilter.Arriving, "10.244.3.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); masqueraded"),
				T("a pod of this node reaching the NodePort is short-circuited", netfilter.Arriving, "10.244.0.5", "tcp", "192.168.77.1:31443",
					"DNAT to 10.244.1.10:8443 (100%); source kept"),
				T("a pod of another node is not", netfilter.Arriving, "10.244.3.5", "tcp", "192.168.77.1:31443",
					"DROP by filter KUBE-EXTERNAL-SERVICES|DROP by ip kube-proxy nodeport-endpoints-check"),
			},
		},
		{
			// --detect-local-mode BridgeInterface: pods are what arrives
			// on their bridge, whatever its source.
			Name:  "detect-local-bridge",
			Model: &model.State{Services: []*model.ServicePort{LB(Remote("10.244.1.10", 8443))}},
			Opts:  dataplane.Options{ClusterCIDR: ClusterCIDR, LocalInterface: "cbr0"},
			Traces: []TraceCase{
				T("from the pods' bridge: source kept", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); source kept").Via("cbr0"),
				T("a pod address from elsewhere is masqueraded", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); masqueraded").Via("eth0"),
				T("from the bridge to the NodePort: short-circuited", netfilter.Arriving, "10.244.0.5", "tcp", "192.168.77.1:31443", "DNAT to 10.244.1.10:8443 (100%); source kept").Via("cbr0"),
			},
		},
		{
			// --detect-local-mode InterfaceNamePrefix: pods are what
			// arrives on an interface whose name starts so.
			Name:  "detect-local-interface-prefix",
			Model: &model.State{Services: []*model.ServicePort{LB(Remote("10.244.1.10", 8443))}},
			Opts:  dataplane.Options{ClusterCIDR: ClusterCIDR, LocalInterface: "veth", LocalInterfacePrefix: true},
			Traces: []TraceCase{
				T("from a pod's veth: source kept", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); source kept").Via("veth1234"),
				T("from elsewhere: masqueraded", netfilter.Arriving, "10.244.0.5", "tcp", "10.96.40.4:443", "DNAT to 10.244.1.10:8443 (100%); masqueraded").Via("eth0"),
			},
		},
		{
			Name:  "no-cluster-cidr",
			Model: &model.State{Services: []*model.ServicePort{DNS(Ep("10.244.0.12", 53))}},
			Opts:  dataplane.Options{LocalhostNodePorts: true},
			Traces: []TraceCase{
				T("without a cluster CIDR cluster IP traffic keeps its source", netfilter.Arriving, "192.168.77.2", "udp", "10.96.0.53:53", "DNAT to 10.244.0.12:53 (100%); source kept"),
			},
		},
	}
}

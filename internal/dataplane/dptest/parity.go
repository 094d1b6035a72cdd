package dptest

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// NodeIP is the address of node-1, the node the behaviour cases run on.
var NodeIP = netip.MustParseAddr("192.168.77.1")

// PodCIDR is the cases' --cluster-cidr.
var PodCIDR = netip.MustParsePrefix("10.0.0.0/16")

// Case is one behaviour both dataplanes are held to, stated with the API
// objects a source would read (or, for Behaviours, the model's State) and
// what must happen to packets. Each mode renders it, compares the rules
// with its golden file and traces them.
type Case struct {
	Name         string
	Services     []*corev1.Service
	Slices       []*discoveryv1.EndpointSlice
	ServiceCIDRs []*networkingv1.ServiceCIDR
	// Model, when set, is the State itself, not built from objects.
	Model *model.State
	Opts  dataplane.Options
	// WantErrs are what Build reports, one part of each error's text.
	WantErrs []string
	Traces   []TraceCase
}

// State builds the case's State for node-1 as a source and Build would,
// and checks the errors it reports.
func (c Case) State(t *testing.T) model.State {
	t.Helper()
	if c.Model != nil {
		st := *c.Model
		if st.LocalAddrs == nil {
			st.LocalAddrs = Local
		}
		return st
	}
	var names model.Interner
	in := model.Input{Nodes: []*corev1.Node{{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: NodeIP.String()}}},
	}}}
	for _, s := range c.Services {
		in.Services = append(in.Services, model.NewService(s))
	}
	for _, s := range c.Slices {
		in.EndpointSlices = append(in.EndpointSlices, model.NewEndpointSlice(s, "node-1", &names))
	}
	for _, o := range c.ServiceCIDRs {
		in.ServiceCIDRs = append(in.ServiceCIDRs, model.NewServiceCIDR(o))
	}
	st, errs := model.Build(in, model.Node{Name: "node-1"})
	st.LocalAddrs = Local
	if len(errs) != len(c.WantErrs) {
		t.Fatalf("Build reported %v, want %d errors like %q", errs, len(c.WantErrs), c.WantErrs)
	}
	for i, e := range errs {
		if !strings.Contains(e.Error(), c.WantErrs[i]) {
			t.Errorf("error %d: %q, want it to contain %q", i, e, c.WantErrs[i])
		}
	}
	return st
}

// Local are the node's addresses when a case is traced.
var Local = []netip.Addr{NodeIP, netip.MustParseAddr("192.168.88.1"), netip.MustParseAddr("fd00:77::1")}

// Run renders every case in one mode (render returns the rules as text,
// written to testdata/DIR/NAME.EXT, and a tracer over them) and traces
// each case's packets.
func Run(t *testing.T, dir string, cases []Case, mode, ext string, render func(model.State, dataplane.Options) ([]byte, Tracer, error)) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			st := c.State(t)
			text, trace, err := render(st, c.Opts)
			if err != nil {
				t.Fatal(err)
			}
			if again, _, _ := render(st, c.Opts); string(again) != string(text) {
				t.Fatal("rendering is not deterministic")
			}
			Golden(t, filepath.Join("testdata", dir, c.Name+"."+ext), text)
			for _, tc := range c.Traces {
				CheckTrace(t, trace, Local, tc.In(mode))
			}
		})
	}
}

// In is tc as the mode named expects it: mode-specific results (a drop
// names the chain that drops) are written "iptables result|nftables result".
func (tc TraceCase) In(mode string) TraceCase {
	if ipt, nft, ok := strings.Cut(tc.Want, "|"); ok {
		tc.Want = ipt
		if mode == "nftables" {
			tc.Want = nft
		}
	}
	return tc
}

// Service builds a Service in namespace default.
func Service(name, clusterIP string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

// LoadBalancer makes s a LoadBalancer Service with these ingress IPs.
func LoadBalancer(s *corev1.Service, nodePort int32, ips ...string) {
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Spec.Ports[0].NodePort = nodePort
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
}

// Slice is an EndpointSlice of Service service for port 80 (unnamed).
func Slice(service string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	port, proto := int32(80), corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port, Protocol: &proto}},
		Endpoints:   eps,
	}
}

// Endpoint is a ready endpoint on node.
func Endpoint(ip, node string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: &node}
}

// TerminatingEndpoint is an endpoint on node that still serves while it
// goes.
func TerminatingEndpoint(ip, node string) discoveryv1.Endpoint {
	e := Endpoint(ip, node)
	f, t := false, true
	e.Conditions = discoveryv1.EndpointConditions{Ready: &f, Serving: &t, Terminating: &t}
	return e
}

// Parity are the behaviours in which svcproxy must do what upstream
// kube-proxy v1.37 does, in both modes.
func Parity() []Case {
	const (
		pod     = "10.0.0.2" // a pod on node-1 (in PodCIDR)
		outside = "203.0.113.9"
		node    = "192.168.77.1"
	)
	dnat := func(ep string) string { return "DNAT to " + ep + " (100%); source kept" }
	dnatMasq := func(ep string) string { return "DNAT to " + ep + " (100%); masqueraded" }
	cases := []Case{
		{
			// An ingress controller's pods calling their own LB IP from a
			// node that runs none of the Service's endpoints.
			Name: "local-policy-remote-endpoints",
			Services: []*corev1.Service{
				Service("ingress", "10.96.0.100", func(s *corev1.Service) {
					LoadBalancer(s, 3001, "1.2.3.4")
					s.Spec.ExternalIPs = []string{"192.168.99.22"}
					s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
					s.Spec.HealthCheckNodePort = 32001
				}),
				Service("ingress-going", "10.96.0.101", func(s *corev1.Service) {
					LoadBalancer(s, 3002, "1.2.3.5")
					s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
					s.Spec.HealthCheckNodePort = 32002
				}),
			},
			Slices: []*discoveryv1.EndpointSlice{
				Slice("ingress", Endpoint("10.180.0.2", "node-2")),
				Slice("ingress-going", TerminatingEndpoint("10.180.0.3", "node-2")),
			},
			Traces: []TraceCase{
				T("a pod reaches the LB IP: every endpoint, source kept", netfilter.Arriving, pod, "tcp", "1.2.3.4:80", dnat("10.180.0.2:80")),
				T("a pod reaches the external IP", netfilter.Arriving, pod, "tcp", "192.168.99.22:80", dnat("10.180.0.2:80")),
				T("a pod reaches the NodePort", netfilter.Arriving, pod, "tcp", node+":3001", dnat("10.180.0.2:80")),
				T("the node reaches the LB IP, masqueraded", netfilter.Local, node, "tcp", "1.2.3.4:80", dnatMasq("10.180.0.2:80")),
				T("outside traffic to the LB IP is dropped", netfilter.Arriving, outside, "tcp", "1.2.3.4:80",
					"DROP by filter KUBE-EXTERNAL-SERVICES|DROP by ip kube-proxy service-endpoints-check"),
				T("outside traffic to the NodePort is dropped", netfilter.Arriving, outside, "tcp", node+":3001",
					"DROP by filter KUBE-EXTERNAL-SERVICES|DROP by ip kube-proxy nodeport-endpoints-check"),
				T("a pod reaches a terminating remote endpoint", netfilter.Arriving, pod, "tcp", "1.2.3.5:80", dnat("10.180.0.3:80")),
				T("outside traffic to it is dropped", netfilter.Arriving, outside, "tcp", "1.2.3.5:80",
					"DROP by filter KUBE-EXTERNAL-SERVICES|DROP by ip kube-proxy service-endpoints-check"),
			},
		},
		{
			Name: "source-ranges",
			Services: []*corev1.Service{
				Service("fw", "10.96.0.110", func(s *corev1.Service) {
					LoadBalancer(s, 30110, "5.6.7.8")
					s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/25"}
				}),
				// The node's own address is in a range: a VIP bound on the
				// node loops back with itself as source.
				Service("fw-node", "10.96.0.111", func(s *corev1.Service) {
					LoadBalancer(s, 30111, "5.6.7.9")
					s.Spec.LoadBalancerSourceRanges = []string{"192.168.77.0/24"}
				}),
			},
			Slices: []*discoveryv1.EndpointSlice{
				Slice("fw", Endpoint("10.0.1.5", "node-1")),
				Slice("fw-node", Endpoint("10.0.1.6", "node-1")),
			},
			Traces: []TraceCase{
				T("a source in the range", netfilter.Arriving, "203.0.113.5", "tcp", "5.6.7.8:80", dnatMasq("10.0.1.5:80")),
				T("a source outside the range", netfilter.Arriving, "203.0.113.200", "tcp", "5.6.7.8:80",
					"DROP by filter KUBE-PROXY-FIREWALL|DROP by ip kube-proxy firewall-M6GJO2G2-default/fw/tcp/"),
				T("the LB IP itself is no allowed source when no range holds the node", netfilter.Arriving, "5.6.7.8", "tcp", "5.6.7.8:80",
					"DROP by filter KUBE-PROXY-FIREWALL|DROP by ip kube-proxy firewall-M6GJO2G2-default/fw/tcp/"),
				T("it is when a range holds the node", netfilter.Arriving, "5.6.7.9", "tcp", "5.6.7.9:80", dnatMasq("10.0.1.6:80")),
			},
		},
		{
			Name: "localhost-nodeports-off",
			Services: []*corev1.Service{Service("web", "10.96.0.120", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30120
			})},
			Slices: []*discoveryv1.EndpointSlice{Slice("web", Endpoint("10.0.1.7", "node-1"))},
			Opts:   dataplane.Options{NodePortCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.PrefixFrom(NodeIP, 32)}},
			Traces: []TraceCase{
				T("127.0.0.1 is listed but localhost NodePorts are off: untouched", netfilter.Local, "127.0.0.1", "tcp", "127.0.0.1:30120",
					"NONE (no rule changes the packet)"),
				T("the node's listed address serves", netfilter.Local, node, "tcp", node+":30120", dnatMasq("10.0.1.7:80")),
			},
		},
		{
			Name: "lb-ip-mode-proxy",
			Services: []*corev1.Service{Service("proxied", "10.96.0.130", func(s *corev1.Service) {
				LoadBalancer(s, 30130, "1.2.3.6")
				proxy := corev1.LoadBalancerIPModeProxy
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "1.2.3.7", IPMode: &proxy})
			})},
			Slices: []*discoveryv1.EndpointSlice{Slice("proxied", Endpoint("10.0.1.8", "node-1"))},
			Traces: []TraceCase{
				T("a VIP-mode LB IP is served here", netfilter.Arriving, outside, "tcp", "1.2.3.6:80", dnatMasq("10.0.1.8:80")),
				T("a Proxy-mode LB IP is left to the load balancer", netfilter.Arriving, outside, "tcp", "1.2.3.7:80",
					"NONE (no rule changes the packet)"),
			},
		},
		{
			// Turned from LoadBalancer to ClusterIP, the status not yet
			// cleared: upstream still serves the IP.
			Name: "lb-status-on-cluster-ip",
			Services: []*corev1.Service{Service("was-lb", "10.96.0.135", func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "1.2.3.8"}}
			})},
			Slices: []*discoveryv1.EndpointSlice{Slice("was-lb", Endpoint("10.0.1.13", "node-1"))},
			Traces: []TraceCase{
				T("the load balancer IP", netfilter.Arriving, outside, "tcp", "1.2.3.8:80", dnatMasq("10.0.1.13:80")),
			},
		},
		{
			// Stored by API servers before v1.22; read the legacy way.
			Name: "legacy-ip-forms",
			Services: []*corev1.Service{Service("old", "172.30.0.041", func(s *corev1.Service) {
				LoadBalancer(s, 30140, "5.6.7.010")
				s.Spec.ExternalIPs = []string{"1.2.3.004"}
				s.Spec.LoadBalancerSourceRanges = []string{"203.000.113.0/24"}
			})},
			Slices: []*discoveryv1.EndpointSlice{Slice("old", Endpoint("10.180.00.001", "node-1"))},
			WantErrs: []string{
				`spec.clusterIP: "172.30.0.041" has leading zeros, a legacy form: read as 172.30.0.41`,
				`spec.externalIPs[0]: "1.2.3.004" has leading zeros`,
				`status.loadBalancer.ingress[0].ip: "5.6.7.010" has leading zeros`,
				`spec.loadBalancerSourceRanges[0]: "203.000.113.0/24" has leading zeros`,
				`endpoints[0].addresses[0]: "10.180.00.001" has leading zeros`,
			},
			Traces: []TraceCase{
				T("the cluster IP", netfilter.Arriving, pod, "tcp", "172.30.0.41:80", dnat("10.180.0.1:80")),
				T("the external IP", netfilter.Arriving, outside, "tcp", "1.2.3.4:80", dnatMasq("10.180.0.1:80")),
				T("the LB IP from the source range", netfilter.Arriving, "203.0.113.7", "tcp", "5.6.7.10:80", dnatMasq("10.180.0.1:80")),
			},
		},
		{
			// Standalone: no API server allocates a missing nodePort.
			Name: "nodeport-missing",
			Services: []*corev1.Service{Service("two", "10.96.0.150", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.ExternalIPs = []string{"192.0.2.80"}
				s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30150}, {Name: "admin", Port: 81}}
			})},
			Slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := Slice("two", Endpoint("10.0.1.9", "node-1"))
				http, admin, p80, p81 := "http", "admin", int32(80), int32(81)
				s.Ports = []discoveryv1.EndpointPort{{Name: &http, Port: &p80}, {Name: &admin, Port: &p81}}
				return s
			}()},
			WantErrs: []string{"Service default/two: spec.ports[1].nodePort: required for type NodePort"},
			Traces: []TraceCase{
				T("the port without a nodePort keeps its cluster IP", netfilter.Arriving, pod, "tcp", "10.96.0.150:81", dnat("10.0.1.9:81")),
				T("and its external IP", netfilter.Arriving, outside, "tcp", "192.0.2.80:81", dnatMasq("10.0.1.9:81")),
				T("the other port keeps its NodePort", netfilter.Arriving, outside, "tcp", node+":30150", dnatMasq("10.0.1.9:80")),
			},
		},
		{
			Name:     "partial-node-hints",
			Services: []*corev1.Service{Service("hinted", "10.96.0.160", nil)},
			Slices: []*discoveryv1.EndpointSlice{Slice("hinted", func() discoveryv1.Endpoint {
				e := Endpoint("10.0.1.10", "node-1")
				e.Hints = &discoveryv1.EndpointHints{ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}}
				return e
			}(), Endpoint("10.0.2.10", "node-2"))},
			Traces: []TraceCase{
				T("node hints on some endpoints only: every endpoint", netfilter.Arriving, pod, "tcp", "10.96.0.160:80",
					"DNAT to 10.0.1.10:80 (50%), 10.0.2.10:80 (50%); source kept"),
			},
		},
		{
			// Upstream sorts endpoints by their "ip:port" text.
			Name:     "endpoint-order",
			Services: []*corev1.Service{Service("order", "10.96.0.170", nil)},
			Slices:   []*discoveryv1.EndpointSlice{Slice("order", Endpoint("10.0.1.4", "node-1"), Endpoint("10.0.1.12", "node-1"))},
			Traces: []TraceCase{
				// The golden files hold the order; the tracer sums per address.
				T("both endpoints", netfilter.Arriving, pod, "tcp", "10.96.0.170:80", "DNAT to 10.0.1.4:80 (50%), 10.0.1.12:80 (50%); source kept"),
			},
		},
		{
			// Only nftables mode drops these, as upstream.
			Name:         "unallocated-cluster-ips",
			Services:     []*corev1.Service{Service("there", "10.96.0.180", nil)},
			Slices:       []*discoveryv1.EndpointSlice{Slice("there", Endpoint("10.0.1.11", "node-1"))},
			ServiceCIDRs: []*networkingv1.ServiceCIDR{{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16"}}}},
			Traces: []TraceCase{
				T("an allocated cluster IP", netfilter.Arriving, pod, "tcp", "10.96.0.180:80", dnat("10.0.1.11:80")),
				T("an unallocated one", netfilter.Arriving, pod, "tcp", "10.96.0.181:80",
					"NONE (no rule changes the packet)|DROP by ip kube-proxy cluster-ips-check"),
				T("outside the Service CIDRs", netfilter.Arriving, pod, "tcp", "10.97.0.1:80", "NONE (no rule changes the packet)"),
			},
		},
		{
			Name: "affinity-external-ips-udp",
			Services: []*corev1.Service{Service("sticky", "10.96.0.200", func(s *corev1.Service) {
				s.Spec.ExternalIPs = []string{"192.0.2.200"}
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
			})},
			Slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := Slice("sticky", Endpoint("10.0.1.20", "node-1"), Endpoint("10.0.1.21", "node-1"), Endpoint("10.0.2.22", "node-2"))
				http, dns, p80, p53, udp := "http", "dns", int32(80), int32(53), corev1.ProtocolUDP
				s.Ports = []discoveryv1.EndpointPort{{Name: &http, Port: &p80}, {Name: &dns, Port: &p53, Protocol: &udp}}
				return s
			}()},
			Traces: []TraceCase{
				T("the external IP, over three endpoints", netfilter.Arriving, outside, "tcp", "192.0.2.200:80",
					"DNAT to 10.0.1.20:80 (33.3%), 10.0.1.21:80 (33.3%), 10.0.2.22:80 (33.3%); masqueraded"),
				T("UDP from a pod", netfilter.Arriving, pod, "udp", "10.96.0.200:53",
					"DNAT to 10.0.1.20:53 (33.3%), 10.0.1.21:53 (33.3%), 10.0.2.22:53 (33.3%); source kept"),
			},
		},
		{
			Name: "internal-traffic-policy-local",
			Services: []*corev1.Service{
				Service("node-local", "10.96.0.210", func(s *corev1.Service) {
					local := corev1.ServiceInternalTrafficPolicyLocal
					s.Spec.InternalTrafficPolicy = &local
				}),
				Service("elsewhere", "10.96.0.211", func(s *corev1.Service) {
					local := corev1.ServiceInternalTrafficPolicyLocal
					s.Spec.InternalTrafficPolicy = &local
				}),
			},
			Slices: []*discoveryv1.EndpointSlice{
				Slice("node-local", Endpoint("10.0.1.30", "node-1"), Endpoint("10.0.2.30", "node-2")),
				Slice("elsewhere", Endpoint("10.0.2.31", "node-2")),
			},
			Traces: []TraceCase{
				T("only the endpoint on this node", netfilter.Arriving, pod, "tcp", "10.96.0.210:80", dnat("10.0.1.30:80")),
				T("no local endpoint: dropped", netfilter.Arriving, pod, "tcp", "10.96.0.211:80",
					"DROP by filter KUBE-SERVICES|DROP by ip kube-proxy service-endpoints-check"),
			},
		},
		{
			// --iptables-masquerade-bit 10.
			Name: "masquerade-bit",
			Services: []*corev1.Service{Service("marked", "10.96.0.225", func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30225
			})},
			Slices: []*discoveryv1.EndpointSlice{Slice("marked", Endpoint("10.0.1.41", "node-1"))},
			Opts:   dataplane.Options{MasqueradeMark: 1 << 10},
			Traces: []TraceCase{
				T("outside traffic is masqueraded with the other mark", netfilter.Arriving, outside, "tcp", node+":30225", dnatMasq("10.0.1.41:80")),
				T("pod traffic is not", netfilter.Arriving, pod, "tcp", "10.96.0.225:80", dnat("10.0.1.41:80")),
			},
		},
		{
			Name:     "masquerade-all",
			Services: []*corev1.Service{Service("all", "10.96.0.220", nil)},
			Slices:   []*discoveryv1.EndpointSlice{Slice("all", Endpoint("10.0.1.40", "node-1"))},
			Opts:     dataplane.Options{MasqueradeAll: true},
			Traces: []TraceCase{
				T("pod traffic is masqueraded too", netfilter.Arriving, pod, "tcp", "10.96.0.220:80", dnatMasq("10.0.1.40:80")),
			},
		},
		{
			// Element comments over 128 bytes do not load back with nft -f.
			Name: "long-names",
			Services: []*corev1.Service{func() *corev1.Service {
				s := Service("s"+strings.Repeat("x", 62), "10.96.0.190", func(s *corev1.Service) {
					s.Spec.Ports[0].Name = "p" + strings.Repeat("y", 14)
				})
				s.Namespace = "n" + strings.Repeat("z", 62)
				return s
			}()},
			Traces: []TraceCase{
				T("no endpoints: rejected", netfilter.Arriving, pod, "tcp", "10.96.0.190:80",
					"REJECT by filter KUBE-SERVICES|REJECT by ip kube-proxy reject-chain"),
			},
		},
	}
	for i := range cases {
		cases[i].Opts.ClusterCIDR = PodCIDR
	}
	return cases
}

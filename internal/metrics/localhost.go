package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcproxy/svcproxy/internal/model"
)

// LocalhostNodePorts registers upstream's metrics of localhost NodePorts
// in nftables mode (KubeProxyNFTablesLocalhostNodePorts): the listeners,
// the listeners that could not be opened, and the packets the rules
// rejected, which rejected reads from the kernel's counters of a family
// ("IPv4", "IPv6") at each scrape.
func (m *Metrics) LocalhostNodePorts(families []string, rejected func(ipFamily string) (map[model.Protocol]uint64, error)) {
	m.localhostListeners = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_nftables_localhost_nodeport_listeners",
		Help: "Number of active localhost NodePort userspace proxy listeners."}, family)
	m.localhostFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total",
		Help: "Number of localhost NodePort userspace proxy listener creation failures."}, family)
	m.Registry.MustRegister(m.localhostListeners, m.localhostFailures, &rejectedCollector{families: families, read: rejected})
}

// SetLocalhostListeners records how many localhost NodePort listeners a
// family has.
func (m *Metrics) SetLocalhostListeners(ipFamily string, n int) {
	if m.localhostListeners != nil {
		m.localhostListeners.WithLabelValues(ipFamily).Set(float64(n))
	}
}

// LocalhostListenerFailed counts a localhost NodePort listener that could
// not be opened.
func (m *Metrics) LocalhostListenerFailed(ipFamily string) {
	if m.localhostFailures != nil {
		m.localhostFailures.WithLabelValues(ipFamily).Inc()
	}
}

var rejectedDesc = prometheus.NewDesc("kubeproxy_nftables_localhost_nodeport_rejected_packets_total",
	"Number of packets rejected on localhost NodePorts. UDP and SCTP are always rejected; TCP is rejected when the localhost NodePort proxy is not running",
	[]string{"ip_family", "protocol"}, nil)

// rejectedCollector reads the kernel's counters when scraped: they count
// in the kernel, not in this process.
type rejectedCollector struct {
	families []string
	read     func(ipFamily string) (map[model.Protocol]uint64, error)
}

func (c *rejectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- rejectedDesc }

func (c *rejectedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.families {
		counts, err := c.read(f)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(rejectedDesc, err)
			continue
		}
		for proto, n := range counts {
			ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(n), f, strings.ToUpper(string(proto)))
		}
	}
}

// Upstream's iptables-mode metrics read from nfacct counters (their names
// as iptables' rules use them, see internal/dataplane/iptables).
var nfacctMetrics = []struct {
	counter string
	desc    *prometheus.Desc
}{
	{"localhost_nps_accepted_pkts", prometheus.NewDesc("kubeproxy_iptables_localhost_nodeports_accepted_packets_total",
		"Number of packets accepted on nodeports of loopback interface", nil, nil)},
	{"ct_state_invalid_dropped_pkts", prometheus.NewDesc("kubeproxy_iptables_ct_state_invalid_dropped_packets_total",
		"packets dropped by iptables to work around conntrack problems", nil, nil)},
}

// NFAcct registers the metrics read from the kernel's nfacct counters at
// each scrape.
func (m *Metrics) NFAcct(read func(counter string) (uint64, error)) {
	m.Registry.MustRegister(nfacctCollector{read})
}

type nfacctCollector struct {
	read func(counter string) (uint64, error)
}

func (c nfacctCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, n := range nfacctMetrics {
		ch <- n.desc
	}
}

func (c nfacctCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range nfacctMetrics {
		v, err := c.read(n.counter)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(n.desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(n.desc, prometheus.CounterValue, float64(v))
	}
}

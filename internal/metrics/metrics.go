// Package metrics owns svcproxy's Prometheus metrics, under upstream
// kube-proxy's names where they exist, and the server that exposes them.
package metrics

import (
	"context"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/svcproxy/svcproxy/internal/serve"
)

// Metrics holds the collectors; one per process.
type Metrics struct {
	Registry     *prometheus.Registry
	syncDuration prometheus.Histogram
	lastSync     prometheus.Gauge
	// syncFailures counts failed syncs under the mode's upstream name
	// (iptables restore failures, nftables sync failures); partialFailures
	// the failed partial ones, which only iptables mode counts apart.
	syncFailures      prometheus.Counter
	partialFailures   prometheus.Counter
	nodePortConflicts *prometheus.GaugeVec
	rulesTotal        *prometheus.GaugeVec
	serviceChanges    prometheus.Counter
	endpointChanges   prometheus.Counter
	programming       prometheus.Histogram
}

// New registers the collectors of the named proxy mode in a fresh
// registry.
func New(mode string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubeproxy_sync_proxy_rules_duration_seconds",
			Help:    "SyncProxyRules latency in seconds",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced",
		}),
		nodePortConflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "svcproxy_nodeport_conflicts",
			Help: "Number of other processes holding a NodePort (listening, or as the local port of a connection)",
		}, []string{"port", "protocol"}),
	}
	if mode == "nftables" {
		m.syncFailures = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
			Help: "Cumulative proxy nftables sync failures",
		})
	} else {
		m.syncFailures = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
			Help: "Cumulative proxy iptables restore failures",
		})
		m.partialFailures = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
			Help: "Cumulative proxy iptables partial restore failures",
		})
		m.rulesTotal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_iptables_total",
			Help: "Total number of iptables rules owned by svcproxy",
		}, []string{"table"})
		m.Registry.MustRegister(m.partialFailures, m.rulesTotal)
	}
	m.serviceChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kubeproxy_sync_proxy_rules_service_changes_total",
		Help: "Cumulative Services added, changed or removed",
	})
	m.endpointChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total",
		Help: "Cumulative EndpointSlices added, changed or removed",
	})
	m.programming = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kubeproxy_network_programming_duration_seconds",
		Help:    "In-cluster network programming latency: from an endpoints change (its trigger time) to the rules being in the kernel",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	})
	m.Registry.MustRegister(m.syncDuration, m.lastSync, m.syncFailures, m.nodePortConflicts, m.serviceChanges, m.endpointChanges, m.programming,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveSync records one sync attempt.
func (m *Metrics) ObserveSync(took time.Duration, err error) {
	m.syncDuration.Observe(took.Seconds())
	if err != nil {
		m.syncFailures.Inc()
		return
	}
	m.lastSync.SetToCurrentTime()
}

// PartialRestoreFailed counts a failed partial sync (a full one follows).
// nftables mode counts it among its sync failures only, as upstream.
func (m *Metrics) PartialRestoreFailed() {
	if m.partialFailures != nil {
		m.partialFailures.Inc()
	}
}

// SetRules records how many rules svcproxy owns in a table (iptables mode:
// upstream's nftables mode has no such metric).
func (m *Metrics) SetRules(table string, n int) {
	if m.rulesTotal != nil {
		m.rulesTotal.WithLabelValues(table).Set(float64(n))
	}
}

// CountChanges adds to the Service and EndpointSlice change counters.
func (m *Metrics) CountChanges(services, slices int) {
	m.serviceChanges.Add(float64(services))
	m.endpointChanges.Add(float64(slices))
}

// ObserveProgramming records one change's way into the kernel.
func (m *Metrics) ObserveProgramming(d time.Duration) { m.programming.Observe(d.Seconds()) }

// SetNodePortConflict records how many processes hold a NodePort; 0
// removes the series.
func (m *Metrics) SetNodePortConflict(port int32, protocol string, holders int) {
	labels := prometheus.Labels{"port": strconv.Itoa(int(port)), "protocol": protocol}
	if holders == 0 {
		m.nodePortConflicts.Delete(labels)
		return
	}
	m.nodePortConflicts.With(labels).Set(float64(holders))
}

// ListenAndServe serves /metrics on addr until ctx ends, and with
// profiling Go's pprof handlers under /debug/pprof/.
func (m *Metrics) ListenAndServe(ctx context.Context, addr string, profiling bool) error {
	return serve.ListenAndServe(ctx, addr, m.Handler(profiling))
}

// Handler serves /metrics and, with profiling, /debug/pprof/.
func (m *Metrics) Handler(profiling bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

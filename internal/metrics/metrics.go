// Package metrics owns svcproxy's Prometheus metrics, under upstream
// kube-proxy's names and labels (ip_family on what a family's syncer does),
// and the server that exposes them with upstream's other pages (/proxyMode,
// /configz, /healthz, /flagz, /statusz).
package metrics

import (
	"context"
	"encoding/json"
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
	Registry *prometheus.Registry
	mode     string

	syncDuration, syncFull, syncPartial *prometheus.HistogramVec
	lastSync, lastQueued                *prometheus.GaugeVec
	programming                         *prometheus.HistogramVec
	endpointChangesPending              prometheus.Gauge
	serviceChangesPending               prometheus.Gauge
	endpointChanges, serviceChanges     prometheus.Counter
	noLocalEndpoints                    *prometheus.GaugeVec
	healthz, livez                      *prometheus.CounterVec
	nodePortConflicts                   *prometheus.GaugeVec
	conntrackDuration                   *prometheus.HistogramVec
	conntrackDeleted                    *prometheus.CounterVec
	// The SLI registry of /metrics/slis: the metrics port's own /healthz.
	sliRegistry       *prometheus.Registry
	healthcheck       *prometheus.GaugeVec
	healthchecksTotal *prometheus.CounterVec

	// iptables mode.
	restoreFailures, partialFailures *prometheus.CounterVec
	rulesTotal, rulesLast            *prometheus.GaugeVec
	// nftables mode.
	nftSyncFailures, nftCleanupFailures *prometheus.CounterVec
	// nftables mode's localhost NodePorts (see LocalhostNodePorts).
	localhostListeners *prometheus.GaugeVec
	localhostFailures  *prometheus.CounterVec

	// What /configz, /flagz and /statusz show.
	config  any
	flags   map[string]string
	version string
}

var family = []string{"ip_family"}

// New registers the collectors of the named proxy mode in a fresh
// registry.
func New(mode string) *Metrics {
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kubeproxy_" + name, Help: help, Buckets: buckets}, family)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_" + name, Help: help}, labels)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_" + name, Help: help}, labels)
	}
	syncBuckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	m := &Metrics{
		Registry:     prometheus.NewRegistry(),
		mode:         mode,
		syncDuration: hist("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets),
		syncFull:     hist("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		syncPartial:  hist("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		lastSync:     gauge("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced", family...),
		lastQueued:   gauge("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued", family...),
		// Upstream's buckets: from a quarter second to five minutes.
		programming: hist("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds",
			append(append(append([]float64{0.25, 0.5}, prometheus.LinearBuckets(1, 1, 59)...), prometheus.LinearBuckets(60, 5, 12)...), prometheus.LinearBuckets(120, 30, 7)...)),
		endpointChangesPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_endpoint_changes_pending", Help: "Pending proxy rules Endpoint changes"}),
		serviceChangesPending:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_service_changes_pending", Help: "Pending proxy rules Service changes"}),
		endpointChanges:        prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total", Help: "Cumulative proxy rules Endpoint changes"}),
		serviceChanges:         prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_service_changes_total", Help: "Cumulative proxy rules Service changes"}),
		noLocalEndpoints:       gauge("sync_proxy_rules_no_local_endpoints_total", "Number of services with a Local traffic policy and no endpoints", "traffic_policy", "ip_family"),
		healthz:                counter("proxy_healthz_total", "Cumulative proxy healthz HTTP status", "code"),
		livez:                  counter("proxy_livez_total", "Cumulative proxy livez HTTP status", "code"),
		conntrackDuration:      hist("conntrack_reconciler_sync_duration_seconds", "ReconcileConntrackFlowsLatency latency in seconds", syncBuckets),
		conntrackDeleted:       counter("conntrack_reconciler_deleted_entries_total", "Cumulative conntrack flows deleted by conntrack reconciler", family...),
		sliRegistry:            prometheus.NewRegistry(),
		healthcheck: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubernetes_healthcheck",
			Help: "This metric records the result of a single healthcheck."}, []string{"name", "type"}),
		healthchecksTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubernetes_healthchecks_total",
			Help: "This metric records the results of all healthcheck."}, []string{"name", "type", "status"}),
		nodePortConflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "svcproxy_nodeport_conflicts",
			Help: "Number of other processes holding a NodePort (listening, or as the local port of a connection)",
		}, []string{"port", "protocol"}),
	}
	m.Registry.MustRegister(m.syncDuration, m.syncFull, m.syncPartial, m.lastSync, m.lastQueued, m.programming,
		m.endpointChangesPending, m.serviceChangesPending, m.endpointChanges, m.serviceChanges, m.noLocalEndpoints,
		m.healthz, m.livez, m.nodePortConflicts, m.conntrackDuration, m.conntrackDeleted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.sliRegistry.MustRegister(m.healthcheck, m.healthchecksTotal)
	if mode == "nftables" {
		m.nftSyncFailures = counter("sync_proxy_rules_nftables_sync_failures_total", "Cumulative proxy nftables sync failures", family...)
		m.nftCleanupFailures = counter("sync_proxy_rules_nftables_cleanup_failures_total", "Cumulative proxy nftables cleanup failures", family...)
		m.Registry.MustRegister(m.nftSyncFailures, m.nftCleanupFailures)
	} else {
		m.restoreFailures = counter("sync_proxy_rules_iptables_restore_failures_total", "Cumulative proxy iptables restore failures", family...)
		m.partialFailures = counter("sync_proxy_rules_iptables_partial_restore_failures_total", "Cumulative proxy iptables partial restore failures", family...)
		m.rulesTotal = gauge("sync_proxy_rules_iptables_total", "Total number of iptables rules owned by svcproxy", "table", "ip_family")
		m.rulesLast = gauge("sync_proxy_rules_iptables_last", "Number of iptables rules written by svcproxy in the last sync", "table", "ip_family")
		m.Registry.MustRegister(m.restoreFailures, m.partialFailures, m.rulesTotal, m.rulesLast)
	}
	return m
}

// SyncDone records one sync of a family's rules: full or partial, how long
// it took, and whether the kernel took it.
func (m *Metrics) SyncDone(ipFamily string, full bool, took time.Duration, err error) {
	m.syncDuration.WithLabelValues(ipFamily).Observe(took.Seconds())
	if full {
		m.syncFull.WithLabelValues(ipFamily).Observe(took.Seconds())
	} else {
		m.syncPartial.WithLabelValues(ipFamily).Observe(took.Seconds())
	}
	switch {
	case err == nil:
		m.lastSync.WithLabelValues(ipFamily).SetToCurrentTime()
	case m.nftSyncFailures != nil:
		m.nftSyncFailures.WithLabelValues(ipFamily).Inc()
	default:
		m.restoreFailures.WithLabelValues(ipFamily).Inc()
		if !full {
			m.partialFailures.WithLabelValues(ipFamily).Inc()
		}
	}
}

// SetRules records how many rules svcproxy owns in a table (iptables mode:
// upstream's nftables mode has no such metric).
func (m *Metrics) SetRules(ipFamily, table string, total, written int) {
	if m.rulesTotal != nil {
		m.rulesTotal.WithLabelValues(table, ipFamily).Set(float64(total))
		m.rulesLast.WithLabelValues(table, ipFamily).Set(float64(written))
	}
}

// CleanupFailed counts a failed deletion of chains no longer used
// (nftables mode).
func (m *Metrics) CleanupFailed(ipFamily string) {
	if m.nftCleanupFailures != nil {
		m.nftCleanupFailures.WithLabelValues(ipFamily).Inc()
	}
}

// Queued records changes waiting for a sync of these families.
func (m *Metrics) Queued(services, slices int, families []string) {
	m.serviceChanges.Add(float64(services))
	m.endpointChanges.Add(float64(slices))
	m.serviceChangesPending.Add(float64(services))
	m.endpointChangesPending.Add(float64(slices))
	if services+slices > 0 {
		for _, f := range families {
			m.lastQueued.WithLabelValues(f).SetToCurrentTime()
		}
	}
}

// Synced records that the pending changes are in the kernel.
func (m *Metrics) Synced() {
	m.serviceChangesPending.Set(0)
	m.endpointChangesPending.Set(0)
}

// ObserveProgramming records one change's way into the kernel.
func (m *Metrics) ObserveProgramming(ipFamily string, d time.Duration) {
	m.programming.WithLabelValues(ipFamily).Observe(d.Seconds())
}

// SetNoLocalEndpoints records how many Service ports with a Local policy
// have endpoints, but none on this node, per policy ("Internal",
// "External").
func (m *Metrics) SetNoLocalEndpoints(policy, ipFamily string, n int) {
	m.noLocalEndpoints.WithLabelValues(policy, ipFamily).Set(float64(n))
}

// CountHealthCheck counts an answer of /healthz (path "healthz") or /livez.
func (m *Metrics) CountHealthCheck(path string, code int) {
	c := m.livez
	if path == "healthz" {
		c = m.healthz
	}
	c.WithLabelValues(strconv.Itoa(code)).Inc()
}

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

// ConntrackReconciled records one round of deleting a family's stale
// conntrack entries (upstream's conntrack reconciler metrics).
func (m *Metrics) ConntrackReconciled(ipFamily string, took time.Duration, deleted int) {
	m.conntrackDuration.WithLabelValues(ipFamily).Observe(took.Seconds())
	m.conntrackDeleted.WithLabelValues(ipFamily).Add(float64(deleted))
}

// SetConfig is what /configz answers: the settings in force.
func (m *Metrics) SetConfig(c any) { m.config = c }

// ListenAndServe serves the handler on addr until ctx ends.
func (m *Metrics) ListenAndServe(ctx context.Context, addr string, profiling bool) error {
	return serve.ListenAndServe(ctx, addr, m.Handler(profiling))
}

// Handler serves the pages of upstream's metrics server: /metrics,
// /metrics/slis, /proxyMode, /configz, /healthz, /flagz and /statusz, and
// with profiling
// Go's pprof handlers under /debug/pprof/.
func (m *Metrics) Handler(profiling bool) http.Handler {
	mux := http.NewServeMux()
	var paths []string // for /statusz, as upstream's lists its pages
	handle := func(path string, h http.HandlerFunc) {
		mux.HandleFunc(path, h)
		paths = append(paths, path)
	}
	handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP)
	handle("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		textPage(w)
		_, _ = w.Write([]byte(m.mode))
	})
	handle("/configz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"svcproxy": m.config})
	})
	handle("/metrics/slis", promhttp.HandlerFor(m.sliRegistry, promhttp.HandlerOpts{}).ServeHTTP)
	handle("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// The page's one check, "ping", as upstream's: its result is what
		// /metrics/slis reports.
		m.healthcheck.WithLabelValues("ping", "healthz").Set(1)
		m.healthchecksTotal.WithLabelValues("ping", "healthz", "success").Inc()
		textPage(w)
		_, _ = w.Write([]byte("ok"))
	})
	handle("/flagz", m.flagz)
	handle("/statusz", func(w http.ResponseWriter, r *http.Request) { m.statusz(w, r, paths) })
	if profiling {
		handle("/debug/pprof/", pprof.Index)
		handle("/debug/pprof/cmdline", pprof.Cmdline)
		handle("/debug/pprof/profile", pprof.Profile)
		handle("/debug/pprof/symbol", pprof.Symbol)
		handle("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

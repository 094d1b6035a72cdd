package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// BenchmarkChurn holds both proxies to a stream of endpoint changes, as a
// rolling update of many Deployments makes: against an API server holding
// SVCPROXY_BENCH_SERVICES Services × 10 endpoints (10000 unless set), a
// load generator patches EndpointSlices at 20, 100 and 500 changes a second
// for SVCPROXY_CHURN_SECONDS (60 unless set), each patch moving one
// endpoint and stamped with endpoints.kubernetes.io/last-change-trigger-
// time, as the EndpointSlice controller stamps its writes. For upstream
// kube-proxy v1.37.2 and svcproxy in turn, with the same flags
// (--iptables-min-sync-period 50ms), it reports per rate the changes
// written, network programming latency p50/p99 (trigger time to the sync
// that put the change in the kernel, from each proxy's own "network
// programming" log lines at -v=4: the histogram's first bucket is 250 ms),
// the syncs run (full ones apart) and the CPU used (make bench-churn), and
// trigger time to a watch event in the bench itself: the floor the API
// server and the machine set under both proxies.
// SVCPROXY_CHURN_PROFILE=DIR keeps a CPU profile of svcproxy at each rate.
func BenchmarkChurn(b *testing.B) {
	n := benchServices(b, 10000, 10000)
	seconds := 60
	if v := os.Getenv("SVCPROXY_CHURN_SECONDS"); v != "" {
		var err error
		if seconds, err = strconv.Atoi(v); err != nil || seconds < 1 {
			b.Fatalf("SVCPROXY_CHURN_SECONDS=%q: want a number of seconds", v)
		}
	}
	kubeProxy := filepath.Join(kubeBinaries(b), "kube-proxy")
	if _, err := os.Stat(kubeProxy); err != nil {
		b.Skip("kube-proxy not built: run make kube-tools")
	}
	sl := apiScaleLab(b, n)
	var table []string
	for _, mode := range benchModes {
		for _, name := range []string{"kube-proxy", "svcproxy"} {
			if name == "kube-proxy" && mode == "iptables" && n > 5000 {
				continue // its first sync does not finish (see BenchmarkCompareKubeProxy)
			}
			b.Run(fmt.Sprintf("mode=%s/services=%d/proxy=%s", mode, n, name), func(b *testing.B) {
				for b.Loop() {
					for _, r := range sl.churn(b, kubeProxy, name, mode, n, []int{20, 100, 500}, time.Duration(seconds)*time.Second) {
						table = append(table, fmt.Sprintf("%-8s %-10s %s", mode, name, r))
					}
				}
			})
		}
	}
	b.Logf("%d Services x 10 endpoints, %d s per rate:\nmode     proxy      rate/s  written/s  p50 ms  p99 ms  syncs (full)  CPU cores  watch p50 p99 ms\n%s",
		n, seconds, strings.Join(table, "\n"))
}

// churn starts the proxy, waits for its first sync, and runs the load
// generator at each rate in turn, returning a report line per rate.
func (sl *scaleLab) churn(b *testing.B, kubeProxy, name, mode string, n int, rates []int, d time.Duration) []string {
	more := []string{"--iptables-min-sync-period", "50ms", "--metrics-bind-address", "127.0.0.1:10249", "--v", "4"}
	if name == "svcproxy" {
		more = append(more, "--profiling")
	}
	p := sl.startProxy(b, kubeProxy, name, mode, more...)
	defer func() {
		p.Kill()
		_, _ = syncerIn(b, mode, sl.w.node.Name, 0).Cleanup(context.Background())
	}()
	sl.w.answered(b, p, sl.w.node.IP.String()+":32701", "web-1", 10*time.Minute)
	time.Sleep(3 * time.Second) // past the first sync's follow-ups
	var out []string
	for _, rate := range rates {
		logFrom := len(p.Output())
		syncs0, full0 := sl.syncCounts(b)
		cpu0 := cpuSeconds(b, p.Pid())
		if dir := os.Getenv("SVCPROXY_CHURN_PROFILE"); dir != "" && name == "svcproxy" {
			// A CPU profile of the middle of the run, for finding where
			// the time goes (go tool pprof).
			go func() {
				time.Sleep(d / 4)
				out := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", name, mode, rate))
				if _, err := sl.w.node.Run(context.Background(), "curl", "-s", "-o", out,
					fmt.Sprintf("http://127.0.0.1:10249/debug/pprof/profile?seconds=%d", int(d.Seconds()/2))); err != nil {
					b.Logf("profile: %v", err)
				}
			}()
		}
		delivered := sl.watchDelivery(b)
		written := sl.generate(b, n, rate, d)
		time.Sleep(2 * time.Second) // the last changes reach the kernel
		floor := delivered()
		cpu := cpuSeconds(b, p.Pid()) - cpu0
		syncs1, full1 := sl.syncCounts(b)
		lat := programmingLatencies(p.Output()[logFrom:])
		if len(lat) == 0 {
			b.Fatalf("%s logged no network programming latency at %d changes/s", name, rate)
		}
		out = append(out, fmt.Sprintf("%6d %10.0f %7.0f %7.0f %6d (%d) %10.2f %9.0f %7.0f",
			rate, float64(written)/d.Seconds(), quantile(lat, 0.5), quantile(lat, 0.99), syncs1-syncs0, full1-full0, cpu/(d.Seconds()+2),
			quantile(floor, 0.5), quantile(floor, 0.99)))
	}
	return out
}

// quantile is the q-quantile of ds in milliseconds (0 for none).
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Sorted(slices.Values(ds))
	return ds[min(len(ds)-1, int(q*float64(len(ds))))].Seconds() * 1000
}

// watchDelivery watches the EndpointSlices from the bench, as a proxy
// does, and returns a function that stops it and returns, for each change
// seen, trigger time to the watch event: the floor under any proxy's
// network programming latency that the API server and this machine set
// (on 2 cores it shares them with the generator and the proxy).
func (sl *scaleLab) watchDelivery(b *testing.B) func() []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	// From now on: a watch from no version would open with every slice.
	list, err := sl.admin.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatalf("list EndpointSlices: %v", err)
	}
	w, err := sl.admin.DiscoveryV1().EndpointSlices("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatalf("watch EndpointSlices: %v", err)
	}
	var out []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			if t, err := time.Parse(time.RFC3339Nano, es.Annotations[corev1.EndpointsLastChangeTriggerTime]); err == nil {
				out = append(out, time.Since(t))
			}
		}
	}()
	return func() []time.Duration {
		cancel()
		w.Stop()
		<-done
		return out
	}
}

// generate patches EndpointSlices at rate a second for d, from workers
// enough to keep up (each patch is one API call), and returns how many it
// wrote. Each patch moves the first endpoint of the next Service's slice
// to its other address, round robin over the n Services.
func (sl *scaleLab) generate(b *testing.B, n, rate int, d time.Duration) int64 {
	ticks := make(chan int, rate)
	var written, failed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ticks {
				svc := i % n
				moved := (i / n) % 2
				patch, err := json.Marshal(churnPatch(svc, moved))
				if err != nil {
					b.Error(err)
					return
				}
				_, err = sl.admin.DiscoveryV1().EndpointSlices(fmt.Sprintf("ns%d", svc%100)).Patch(context.Background(),
					fmt.Sprintf("s%d-x", svc), types.MergePatchType, patch, metav1.PatchOptions{})
				if err != nil {
					failed.Add(1)
					continue
				}
				written.Add(1)
			}
		}()
	}
	t := time.NewTicker(time.Second / time.Duration(rate))
	end := time.After(d)
	i := sl.next
loop:
	for {
		select {
		case <-end:
			break loop
		case <-t.C:
			select {
			case ticks <- i:
				i++
			default: // the workers are behind: the rate written says so
			}
		}
	}
	t.Stop()
	close(ticks)
	wg.Wait()
	sl.next = i
	if f := failed.Load(); f > 0 {
		b.Logf("%d patches failed at %d changes/s", f, rate)
	}
	return written.Load()
}

// churnPatch is a merge patch of Service svc's slice: its ten endpoints
// (as createScale made them), the first at its other address when moved
// is 1, and the trigger time now.
func churnPatch(svc, moved int) map[string]any {
	var eps []discoveryv1.Endpoint
	for e := 0; e < 10; e++ {
		k := svc*10 + e
		ip := fmt.Sprintf("10.%d.%d.%d", 128+k>>16, (k>>8)&255, k&255)
		if e == 0 && moved == 1 {
			ip = fmt.Sprintf("10.%d.%d.%d", 192+k>>16, (k>>8)&255, k&255)
		}
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptrTo("node-2")})
	}
	return map[string]any{
		"metadata":  map[string]any{"annotations": map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}},
		"endpoints": eps,
	}
}

// programmingLatencies are the latencies a proxy logged at -v=4: upstream's
// "Network programming" lines (elapsed, in seconds) and svcproxy's
// "network programming" ones (took, a duration).
func programmingLatencies(log string) []time.Duration {
	var out []time.Duration
	for _, m := range programmingLine.FindAllStringSubmatch(log, -1) {
		if m[1] != "" {
			if s, err := strconv.ParseFloat(m[1], 64); err == nil {
				out = append(out, time.Duration(s*float64(time.Second)))
			}
		} else if d, err := time.ParseDuration(m[2]); err == nil {
			out = append(out, d)
		}
	}
	return out
}

var programmingLine = regexp.MustCompile(`(?i)network programming"? .*?(?:elapsed=([0-9.e+-]+)|took="?([0-9.]+[a-zµ]+))`)

// syncCounts are the proxy's syncs so far, and its full syncs, from its
// metrics.
func (sl *scaleLab) syncCounts(b *testing.B) (syncs, full int) {
	m, err := sl.w.node.Run(context.Background(), "curl", "-s", "http://127.0.0.1:10249/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	for _, line := range strings.Split(m, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.Contains(f[0], `ip_family="IPv4"`) {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch {
		case strings.HasPrefix(f[0], "kubeproxy_sync_proxy_rules_duration_seconds_count"):
			syncs = int(v)
		case strings.HasPrefix(f[0], "kubeproxy_sync_full_proxy_rules_duration_seconds_count"):
			full = int(v)
		}
	}
	return syncs, full
}

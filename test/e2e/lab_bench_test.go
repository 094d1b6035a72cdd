package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
	"github.com/svcproxy/svcproxy/internal/model"
)

// benchLab is a lab for benchmarks: one node, two pods, a client, and with
// controlPlane a namespace for etcd and the API server.
func benchLab(b *testing.B, controlPlane bool) *world {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Build(ctx, lab.Config{Prefix: fmt.Sprintf("svb%d", os.Getpid()%100000), Nodes: 1, ControlPlane: controlPlane,
		Pods: []lab.PodSpec{{Name: "web-1", TCP: []int{80}}, {Name: "web-2", TCP: []int{80}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	return &world{t: b, lab: l, dir: b.TempDir(), stateDir: b.TempDir(), node: l.Nodes[0]}
}

// target is a Service on NodePort 32767 served by the pod podIP on node,
// named to sort after every synthetic Service: in iptables mode its rules
// are the last the first packet is matched against.
func target(podIP, node string) *model.ServicePort {
	return &model.ServicePort{
		Name:     model.ServicePortName{Namespace: "zz", Name: "target"},
		Protocol: model.TCP, ClusterIP: netip.MustParseAddr("10.97.255.250"), Port: 80, NodePort: 32767,
		Endpoints: []model.Endpoint{{IP: netip.MustParseAddr(podIP), Port: 80, NodeName: node, IsLocal: true, Ready: true, Serving: true}},
	}
}

// BenchmarkFirstPacket is connection setup time (TCP connect, client to a
// NodePort on a node, DNAT to a pod on it) with N Services × 10 endpoints
// installed, in both modes: the cost of dispatch on a new connection.
//
// It is measured in pairs: the lab has two nodes alike, one with 100
// Services and one with N, and the client connects to each in turn. The
// two medians then share the machine's state, which on this machine moves
// single runs by ±15%: the ratio of the two (pct-vs-100) is the figure,
// and with N = 100 it shows what is left of the noise.
//
//	go test -run XXX -bench FirstPacket -benchtime 2000x ./test/e2e
func BenchmarkFirstPacket(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	ctx := context.Background()
	l, err := lab.Build(ctx, lab.Config{Prefix: fmt.Sprintf("svf%d", os.Getpid()%100000), Nodes: 2,
		Pods: []lab.PodSpec{{Name: "web-a", Node: 0, TCP: []int{80}}, {Name: "web-b", Node: 1, TCP: []int{80}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	base, scaled := l.Nodes[0], l.Nodes[1]
	sync := func(b *testing.B, mode string, node *lab.Node, n int, podIP string) {
		st := model.Synthetic(n, 10)
		st.Services = append(st.Services, target(podIP, node.NodeName))
		s := syncerIn(b, mode, node.Name, 0)
		if err := s.Sync(ctx, st); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = s.Cleanup(ctx) })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := l.Client.WaitHTTP(wctx, node.IP.String()+":32767"); err != nil {
			b.Fatal(err)
		}
	}
	connect := func(b *testing.B, addr string) time.Duration {
		start := time.Now()
		c, err := l.Client.DialContext(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		// Closed with a reset, not into TIME_WAIT: thousands of connections
		// a minute would use up the client's ephemeral ports, and connect()
		// would then spend milliseconds finding one.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		return d
	}
	p50 := func(ts []time.Duration) time.Duration {
		slices.Sort(ts)
		return ts[len(ts)/2]
	}
	for _, mode := range benchModes {
		b.Run("mode="+mode, func(b *testing.B) {
			sync(b, mode, base, 100, "10.244.0.10")
			sizes := []int{100, 1000, 10000, 30000}
			if mode == "nftables" {
				// iptables mode takes minutes to program 100k.
				sizes = append(sizes, 100000)
			}
			for _, n := range sizes {
				b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
					sync(b, mode, scaled, n, "10.244.1.10")
					var atBase, atN []time.Duration
					for b.Loop() {
						atBase = append(atBase, connect(b, base.IP.String()+":32767"))
						atN = append(atN, connect(b, scaled.IP.String()+":32767"))
					}
					slices.Sort(atN)
					mBase, mN := p50(atBase), atN[len(atN)/2]
					b.ReportMetric(float64(mN.Microseconds()), "µs-p50")
					b.ReportMetric(float64(atN[len(atN)*99/100].Microseconds()), "µs-p99")
					b.ReportMetric(float64(mBase.Microseconds()), "µs-p50-at-100")
					b.ReportMetric(100*(float64(mN)/float64(mBase)-1), "pct-vs-100")
				})
			}
		})
	}
}

// writeScale writes n Services × 10 endpoints as manifests (files of 500
// Services and their EndpointSlices), NodePorts on the first 2700.
func writeScale(b *testing.B, dir string, n int) {
	var f strings.Builder
	flush := func(i int) {
		if f.Len() > 0 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("scale-%05d.yaml", i)), []byte(f.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			f.Reset()
		}
	}
	for i := 0; i < n; i++ {
		typ, np := "ClusterIP", ""
		if i < 2700 {
			typ, np = "NodePort", fmt.Sprintf(", nodePort: %d", 30000+i)
		}
		fmt.Fprintf(&f, `apiVersion: v1
kind: Service
metadata: {name: s%[1]d, namespace: ns%[2]d}
spec:
  type: %[3]s
  clusterIP: %[4]s
  ports: [{name: http, port: 80, targetPort: 8080%[5]s}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s%[1]d-x, namespace: ns%[2]d, labels: {kubernetes.io/service-name: s%[1]d}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
`, i, i%100, typ, scaleClusterIP(i), np)
		for e := 0; e < 10; e++ {
			k := i*10 + e
			fmt.Fprintf(&f, "- addresses: [\"10.%d.%d.%d\"]\n  nodeName: node-2\n", 128+k>>16, (k>>8)&255, k&255)
		}
		f.WriteString("---\n")
		if (i+1)%500 == 0 {
			flush(i)
		}
	}
	flush(n)
}

// The cluster IPs of the Services sorted first and last, in the lab API
// server's service range and apart from the synthetic ones.
const firstIP, lastIP = "10.111.250.2", "10.111.250.1"

// scaleClusterIP is the cluster IP of synthetic Service i: from 10.96.1.0
// on (the range's first addresses are the API server's own), room for a
// million in the lab's 10.96.0.0/12.
func scaleClusterIP(i int) string {
	j := i + 256
	return fmt.Sprintf("10.%d.%d.%d", 96+j>>16, (j>>8)&255, j&255)
}

// lastWeb is the Service sorted last (programmed by the last transaction).
// Its namespace "zz" sorts after every synthetic Service.
func lastWeb(podIP string) string { return webServiceIn("zz", "web", lastIP, 32701, podIP) }

// BenchmarkLabSync runs the svcproxy binary in the lab's node over
// manifests with SVCPROXY_BENCH_SERVICES (10k unless set, up to 100k)
// Services × 10 endpoints, as an operator would, and reports what
// measureSync measures.
//
//	go test -run XXX -bench LabSync -benchtime 1x ./test/e2e
func BenchmarkLabSync(b *testing.B) {
	n := benchServices(b, 10000, 100000)
	w := benchLab(b, false)
	writeScale(b, w.dir, n)
	// Namespace "aa" sorts before every synthetic Service.
	w.write("aa-first.yaml", webServiceIn("aa", "web", firstIP, 32702, "10.244.0.10"))
	for _, mode := range benchModes {
		b.Run(fmt.Sprintf("mode=%s/services=%d", mode, n), func(b *testing.B) {
			for b.Loop() {
				w.write("zz-last.yaml", lastWeb("10.244.0.10"))
				w.measureSync(b, mode, []string{"--manifests", w.dir}, func(ip string) { w.write("zz-last.yaml", lastWeb(ip)) })
			}
		})
	}
}

// measureSync starts svcproxy in mode with the source given by args and
// reports what measureProxy measures (five endpoint changes; the sync
// period is short here, so that two periodic syncs come within the run).
func (w *world) measureSync(b *testing.B, mode string, args []string, setLast func(ip string)) {
	f := w.measureProxy(b, func() *lab.Proc {
		p, err := w.lab.Start(&w.node.NS, binary, append([]string{"run", "--hostname-override", "node-1",
			"--cluster-cidr", "10.244.0.0/16", "--state-dir", w.stateDir, "--proxy-mode", mode,
			"--metrics-bind-address", "", "--healthz-bind-address", "", "--iptables-sync-period", syncPeriod.String()}, args...)...)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}, mode, setLast, 5)
	f.report(b)
}

// proxyFigures are what measureProxy measures of one proxy's run.
type proxyFigures struct {
	firstNodePort, allServices time.Duration
	// listed is start to svcproxy's "API server caches synced" (0 when it
	// did not log it): what programming while the lists stream in could
	// at most save of allServices.
	listed               time.Duration
	changeP50, changeP99 time.Duration
	rssMiB, cpuSeconds   float64
}

func (f proxyFigures) report(b *testing.B) {
	b.ReportMetric(f.firstNodePort.Seconds(), "s-first-nodeport")
	b.ReportMetric(f.allServices.Seconds(), "s-all-services")
	if f.listed > 0 {
		b.ReportMetric(f.listed.Seconds(), "s-lists-done")
	}
	b.ReportMetric(float64(f.changeP50.Milliseconds()), "ms-endpoint-change-p50")
	b.ReportMetric(float64(f.changeP99.Milliseconds()), "ms-endpoint-change-p99")
	b.ReportMetric(f.rssMiB, "MiB-peak-rss")
	b.ReportMetric(f.cpuSeconds, "cpu-s")
}

// measureProxy starts a proxy on the node (start) and measures: start to
// the first and the last Service answering on their NodePorts, changes
// endpoint changes (setLast, written to the source) to traffic, and, after
// two sync periods more, the process's peak RSS and CPU time. The node's
// rules of mode are removed afterwards.
func (w *world) measureProxy(b *testing.B, start func() *lab.Proc, mode string, setLast func(ip string), changes int) proxyFigures {
	first, last := w.node.IP.String()+":32702", w.node.IP.String()+":32701"
	t0 := time.Now()
	p := start()
	defer func() {
		p.Kill()
		_, _ = syncerIn(b, mode, w.node.Name, 0).Cleanup(context.Background())
	}()
	var f proxyFigures
	w.answered(b, p, first, "web-1", 10*time.Minute)
	f.firstNodePort = time.Since(t0)
	w.answered(b, p, last, "web-1", 10*time.Minute)
	f.allServices = time.Since(t0)
	f.listed = logTime(p.Output(), "API server caches synced", t0)
	var took []time.Duration
	for i := range changes {
		pod, ip := "web-2", "10.244.0.11"
		if i%2 == 1 {
			pod, ip = "web-1", "10.244.0.10"
		}
		time.Sleep(1200 * time.Millisecond) // past minSyncPeriod
		c0 := time.Now()
		setLast(ip)
		w.answered(b, p, last, pod, time.Minute)
		took = append(took, time.Since(c0))
	}
	slices.Sort(took)
	f.changeP50, f.changeP99 = took[len(took)/2], took[min(len(took)-1, len(took)*99/100)]
	time.Sleep(2*syncPeriod + time.Second)
	f.rssMiB = float64(peakRSS(b, p.Pid())) / (1 << 20)
	f.cpuSeconds = cpuSeconds(b, p.Pid())
	return f
}

// logTime is when the first klog line of out holding msg was written,
// from t0 (0 if there is none). klog stamps the time of day only.
func logTime(out, msg string, t0 time.Time) time.Duration {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.Contains(line, msg) {
			continue
		}
		tod, err := time.ParseInLocation("15:04:05.000000", f[1], time.Local)
		if err != nil {
			continue
		}
		at := time.Date(t0.Year(), t0.Month(), t0.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
		return at.Sub(t0)
	}
	return 0
}

// answered waits (at most limit) until addr answers from pod, with the
// proxy p running; the benchmark fails if p exits first.
func (w *world) answered(b *testing.B, p *lab.Proc, addr, pod string, limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		a, err := w.lab.Client.HTTPGet(ctx, addr)
		if err == nil && a.Pod == pod {
			return
		}
		if ctx.Err() != nil || p.Exited() {
			b.Fatalf("%s never answered from %s (proxy exited: %v):\n%s", addr, pod, p.Exited(), p.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cpuSeconds is the CPU time (user and system) the process has used.
func cpuSeconds(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command (which may hold spaces), from field 3 on:
	// utime and stime are fields 14 and 15, in clock ticks (100 a second).
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// syncPeriod is the sync period of measureSync's runs.
const syncPeriod = 4 * time.Second

// peakRSS is the process's VmHWM in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

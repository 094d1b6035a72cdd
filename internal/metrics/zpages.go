package metrics

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"time"
)

// started is when the process began, for /statusz's uptime.
var started = time.Now()

// SetFlags is what /flagz answers: every flag with its value.
func (m *Metrics) SetFlags(f map[string]string) { m.flags = f }

// SetVersion is the version /statusz reports.
func (m *Metrics) SetVersion(v string) { m.version = v }

// zpagePaths are the pages the metrics server has, listed by /statusz as
// upstream's is.
var zpagePaths = []string{"/configz", "/flagz", "/healthz", "/metrics", "/proxyMode", "/statusz"}

// flagz answers with the flags in force, one "name=value" line each,
// sorted, under a title line: the text form of kube-proxy's /flagz, for
// people and not for parsers.
func (m *Metrics) flagz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "\nsvcproxy flagz\nFor people reading: the format may change from one release to the next.\n\n")
	names := make([]string, 0, len(m.flags))
	for n := range m.flags {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "%s=%s\n", n, m.flags[n])
	}
}

// statusz answers with when the process started, for how long it has run,
// its Go and svcproxy versions, and the pages the server has: the text
// form of kube-proxy's /statusz.
func (m *Metrics) statusz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "\nsvcproxy statusz\nFor people reading: the format may change from one release to the next.\n\n")
	fmt.Fprintf(w, "Started: %s\nUp: %s\nGo version: %s\nBinary version: %s\nProxy mode: %s\nPaths: %v\n",
		started.Format(time.RFC1123), time.Since(started).Round(time.Second), runtime.Version(), m.version, m.mode, zpagePaths)
}

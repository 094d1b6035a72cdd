package metrics

import (
	"fmt"
	"maps"
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

// textPage starts a plain-text answer.
func textPage(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
}

// zpage starts the text form of one of kube-proxy's z-pages: a title line
// and a word that it is for people, not for parsers.
func zpage(w http.ResponseWriter, name string) {
	textPage(w)
	fmt.Fprintf(w, "\nsvcproxy %s\nFor people reading: the format may change from one release to the next.\n\n", name)
}

// flagz answers with the flags in force, one "name=value" line each,
// sorted: the text form of kube-proxy's /flagz.
func (m *Metrics) flagz(w http.ResponseWriter, _ *http.Request) {
	zpage(w, "flagz")
	for _, n := range slices.Sorted(maps.Keys(m.flags)) {
		fmt.Fprintf(w, "%s=%s\n", n, m.flags[n])
	}
}

// statusz answers with when the process started, for how long it has run,
// its Go and svcproxy versions, and the server's pages: the text form of
// kube-proxy's /statusz.
func (m *Metrics) statusz(w http.ResponseWriter, paths []string) {
	zpage(w, "statusz")
	fmt.Fprintf(w, "Started: %s\nUp: %s\nGo version: %s\nBinary version: %s\nProxy mode: %s\nPaths: %v\n",
		started.Format(time.RFC1123), time.Since(started).Round(time.Second), runtime.Version(), m.version, m.mode, slices.Sorted(slices.Values(paths)))
}

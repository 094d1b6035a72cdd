package metrics

import (
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"runtime"
	"slices"
	"strings"
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

// zGroup is the API group of the z-pages' structured forms.
const zGroup = "config.k8s.io"

// structured reads a z-page request's Accept header as upstream's pages
// do: "application/json;as=KIND;g=config.k8s.io;v=v1beta1" (or v1alpha1)
// asks for the structured form (version returned), text or anything else
// for the text form (""); false when only JSON of a form svcproxy does not
// serve is acceptable (406, as upstream).
func structured(r *http.Request, kind string) (version string, ok bool) {
	accept := strings.TrimSpace(r.Header.Get("Accept"))
	if accept == "" {
		return "", true
	}
	for _, part := range strings.Split(accept, ",") {
		typ, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch typ {
		case "text/plain", "text/*", "*/*":
			return "", true
		case "application/json":
			if params["as"] == kind && params["g"] == zGroup && (params["v"] == "v1beta1" || params["v"] == "v1alpha1") {
				return params["v"], true
			}
		}
	}
	return "", false
}

// writeStructured answers with obj as JSON, or 406 when the Accept header
// asks for nothing svcproxy serves.
func writeStructured(w http.ResponseWriter, r *http.Request, kind string, text func(), fields func(version string) map[string]any) {
	v, ok := structured(r, kind)
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("only text/plain or application/json;as=%s;g=%s;v=v1beta1 (or v1alpha1)", kind, zGroup), http.StatusNotAcceptable)
	case v == "":
		text()
	default:
		obj := fields(v)
		obj["kind"], obj["apiVersion"], obj["metadata"] = kind, zGroup+"/"+v, map[string]string{"name": "svcproxy"}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(obj)
	}
}

// flagz answers with the flags in force, one "name=value" line each,
// sorted: kube-proxy's /flagz, or its structured form (Flagz).
func (m *Metrics) flagz(w http.ResponseWriter, r *http.Request) {
	writeStructured(w, r, "Flagz", func() { m.flagzText(w) }, func(string) map[string]any {
		return map[string]any{"flags": m.flags}
	})
}

func (m *Metrics) flagzText(w http.ResponseWriter) {
	zpage(w, "flagz")
	for _, n := range slices.Sorted(maps.Keys(m.flags)) {
		fmt.Fprintf(w, "%s=%s\n", n, m.flags[n])
	}
}

// statusz answers with when the process started, for how long it has run,
// its Go and svcproxy versions, and the server's pages: kube-proxy's
// /statusz, or its structured form (Statusz).
func (m *Metrics) statusz(w http.ResponseWriter, r *http.Request, paths []string) {
	writeStructured(w, r, "Statusz", func() { m.statuszText(w, paths) }, func(string) map[string]any {
		return map[string]any{"startTime": started.UTC().Format(time.RFC3339), "uptimeSeconds": int64(time.Since(started).Seconds()),
			"goVersion": runtime.Version(), "binaryVersion": m.version, "paths": slices.Sorted(slices.Values(paths))}
	})
}

func (m *Metrics) statuszText(w http.ResponseWriter, paths []string) {
	zpage(w, "statusz")
	fmt.Fprintf(w, "Started: %s\nUp: %s\nGo version: %s\nBinary version: %s\nProxy mode: %s\nPaths: %v\n",
		started.Format(time.RFC1123), time.Since(started).Round(time.Second), runtime.Version(), m.version, m.mode, slices.Sorted(slices.Values(paths)))
}

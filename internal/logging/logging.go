// Package logging writes svcproxy's logs in the klog header format operators
// know from kube-proxy ("E0707 20:57:38.679876 1 file.go:12] message
// key=value"), through log/slog.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// New returns a logger at the given verbosity: 0-3 log info and above, 4 and
// more also debug, like kube-proxy's -v.
func New(w io.Writer, verbosity int) *slog.Logger {
	level := slog.LevelInfo
	if verbosity >= 4 {
		level = slog.LevelDebug
	}
	return slog.New(&handler{w: w, level: level, mu: &sync.Mutex{}, pid: os.Getpid()})
}

type handler struct {
	w      io.Writer
	level  slog.Level
	mu     *sync.Mutex
	pid    int
	attrs  string
	prefix string // group prefix for keys
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	sev := byte('I')
	switch {
	case r.Level >= slog.LevelError:
		sev = 'E'
	case r.Level >= slog.LevelWarn:
		sev = 'W'
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteByte(sev)
	b.WriteString(t.Format("0102 15:04:05.000000"))
	fmt.Fprintf(&b, " %7d ", h.pid)
	if r.PC != 0 {
		fs := runtime.CallersFrames([]uintptr{r.PC})
		f, _ := fs.Next()
		b.WriteString(filepath.Base(f.File))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(f.Line))
	} else {
		b.WriteString("???")
	}
	b.WriteString("] ")
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.prefix, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(prefix + a.Key)
	b.WriteByte('=')
	switch a.Value.Kind() {
	case slog.KindString:
		b.WriteString(strconv.Quote(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			b.WriteString(strconv.Quote(err.Error()))
			return
		}
		b.WriteString(strconv.Quote(fmt.Sprint(a.Value.Any())))
	default:
		b.WriteString(a.Value.String())
	}
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range attrs {
		writeAttr(&b, h.prefix, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.prefix += name + "."
	return &c
}

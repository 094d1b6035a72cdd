package kube

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestWatchErrorsAreLoggedRateLimited(t *testing.T) {
	var buf bytes.Buffer
	w := &watchErrors{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), every: time.Hour}
	refused := errors.New("dial tcp 10.0.0.1:6443: connect: connection refused")
	h := w.handler("services")
	h(context.Background(), nil, refused)
	h(context.Background(), nil, refused)
	h(context.Background(), nil, io.EOF)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("log:\n%s", buf.String())
	}
	for i, want := range []string{"level=ERROR", "level=DEBUG", "level=DEBUG"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q, want %s", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[0], "resource=services") {
		t.Errorf("the first error does not say what failed: %s", lines[0])
	}
	if w.count() != 2 {
		t.Errorf("count = %d: an ended watch is no failure", w.count())
	}
}

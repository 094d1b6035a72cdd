package dataplane

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type countingMetrics struct{ syncs int }

func (c *countingMetrics) SyncDone(string, bool, time.Duration, error) { c.syncs++ }
func (c *countingMetrics) SetRules(string, string, int, int)           {}
func (c *countingMetrics) CleanupFailed(string)                        {}

func TestSyncLogSaysFullSyncsAtInfo(t *testing.T) {
	var buf bytes.Buffer
	m := &countingMetrics{}
	l := SyncLog{SyncerMetrics: m, Log: slog.New(slog.NewTextHandler(&buf, nil))}
	l.SyncDone("IPv4", true, time.Second, nil)
	l.SyncDone("IPv4", false, time.Millisecond, nil)
	l.SyncDone("IPv4", true, time.Second, errors.New("iptables-restore: line 3 failed"))
	if got := strings.TrimSpace(buf.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, `level=INFO msg="full sync: every rule rewritten" ipFamily=IPv4`) {
		t.Errorf("at info, want the one successful full sync only:\n%s", got)
	}
	if m.syncs != 3 {
		t.Errorf("metrics saw %d syncs, want all 3", m.syncs)
	}
}

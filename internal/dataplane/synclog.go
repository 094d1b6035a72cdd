package dataplane

import (
	"log/slog"
	"time"
)

// SyncLog logs each family's syncs as they are recorded: full ones (every
// rule rewritten, hourly and after the rules were disturbed) at info, the
// partial ones in between at debug (-v 4). Failures are the runner's to log.
type SyncLog struct {
	SyncerMetrics
	Log *slog.Logger
}

func (l SyncLog) SyncDone(ipFamily string, full bool, took time.Duration, err error) {
	switch {
	case err != nil:
	case full:
		l.Log.Info("full sync: every rule rewritten", "ipFamily", ipFamily, "took", took.Round(time.Millisecond))
	default:
		l.Log.Debug("partial sync: changed Services rewritten", "ipFamily", ipFamily, "took", took.Round(time.Millisecond))
	}
	l.SyncerMetrics.SyncDone(ipFamily, full, took, err)
}

package conntrack

import (
	"testing"

	"github.com/svcproxy/svcproxy/internal/config"
)

// nf_conntrack_max as kube-proxy works it out: per CPU, at least Min, at
// most 1M; nothing without a per-CPU value.
func TestMax(t *testing.T) {
	for _, tc := range []struct {
		perCore, floor int32
		cpus, want     int
	}{
		{32768, 131072, 2, 131072},
		{32768, 131072, 8, 262144},
		{32768, 0, 64, 1 << 20},
		{0, 131072, 8, 0},
	} {
		if got := Max(config.Conntrack{MaxPerCore: tc.perCore, Min: tc.floor}, tc.cpus); got != tc.want {
			t.Errorf("%d per core, min %d, %d CPUs: %d, want %d", tc.perCore, tc.floor, tc.cpus, got, tc.want)
		}
	}
}

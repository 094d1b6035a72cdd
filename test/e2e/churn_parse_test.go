package e2e

import (
	"testing"
	"time"
)

// Both proxies' -v=4 lines give their latencies.
func TestProgrammingLatencies(t *testing.T) {
	log := `I1206 09:04:48.756378   12053 proxier.go:1891] "Network programming" endpoint="ns1/s1" elapsed=0.152
I1206 09:04:48.756378   12034 observers.go:52] network programming endpointSlice=ns1/s1-x took=12.5ms
I1206 09:04:48.756378   12034 observers.go:52] synced rules servicePorts=3 took=3ms`
	got := programmingLatencies(log)
	want := []time.Duration{152 * time.Millisecond, 12500 * time.Microsecond}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v", got, want)
	}
}

package conntrack

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/config"
	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// maxLimit caps MaxPerCore × CPUs, as upstream.
const maxLimit = 1 << 20

// Max is the nf_conntrack_max the settings ask for on a node with cpus
// CPUs (0: none).
func Max(s config.Conntrack, cpus int) int {
	if s.MaxPerCore <= 0 {
		return 0
	}
	return min(max(int(s.MaxPerCore)*cpus, int(s.Min)), maxLimit)
}

// hashsizeParam is the conntrack table's bucket count, a module parameter.
var hashsizeParam = "/sys/module/nf_conntrack/parameters/hashsize"

// Apply sets the conntrack sysctls as kube-proxy does: nf_conntrack_max
// raised (never lowered) with the hash table at a quarter of it, the
// timeouts set. nf_conntrack_max and the hash size are kernel-wide (only
// writable from the host's network namespace); the timeouts are the
// network namespace's. What cannot be set is logged and skipped: the
// proxy works without it. It reports whether tcp_be_liberal is on.
func Apply(s config.Conntrack, log *slog.Logger) (liberal bool) {
	if want := Max(s, runtime.NumCPU()); want > 0 {
		cur, err := sysctl.Get("net.netfilter.nf_conntrack_max")
		if n, _ := strconv.Atoi(cur); err != nil || n < want {
			set(log, "net.netfilter.nf_conntrack_max", strconv.Itoa(want))
		}
		if b, err := os.ReadFile(hashsizeParam); err == nil {
			if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n < want/4 {
				if err := os.WriteFile(hashsizeParam, []byte(strconv.Itoa(want/4)), 0o640); err != nil {
					log.Warn("cannot raise the conntrack hash size", "want", want/4, "err", err)
				} else {
					log.Info("set the conntrack hash size", "hashsize", want/4)
				}
			}
		}
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"net.netfilter.nf_conntrack_tcp_timeout_established", s.TCPEstablishedTimeout},
		{"net.netfilter.nf_conntrack_tcp_timeout_close_wait", s.TCPCloseWaitTimeout},
		{"net.netfilter.nf_conntrack_udp_timeout", s.UDPTimeout},
		{"net.netfilter.nf_conntrack_udp_timeout_stream", s.UDPStreamTimeout},
	} {
		if t.d > 0 {
			set(log, t.name, strconv.Itoa(int(t.d/time.Second)))
		}
	}
	if s.TCPBeLiberal {
		set(log, "net.netfilter.nf_conntrack_tcp_be_liberal", "1")
	}
	v, _ := sysctl.Get("net.netfilter.nf_conntrack_tcp_be_liberal")
	return v != "" && v != "0"
}

func set(log *slog.Logger, name, value string) {
	changed, err := sysctl.Ensure(name, value)
	switch {
	case err != nil:
		log.Warn(fmt.Sprintf("cannot set %s=%s (kube-proxy would stop here; svcproxy goes on)", name, value), "err", err)
	case changed:
		log.Info(fmt.Sprintf("set %s=%s", name, value))
	}
}

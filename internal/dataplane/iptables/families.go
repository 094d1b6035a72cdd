package iptables

import (
	"os"
	"os/exec"
)

// IPv6Exec runs ip6tables-save and ip6tables-restore.
var IPv6Exec = Exec{SaveCmd: "ip6tables-save", RestoreCmd: "ip6tables-restore"}

// HaveIPv6 reports whether this node can carry IPv6 Service rules: the
// kernel has IPv6 and ip6tables is installed.
func HaveIPv6() bool {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		return false
	}
	_, err := exec.LookPath(IPv6Exec.RestoreCmd)
	return err == nil
}

// Family is "IPv4" or "IPv6".
func (s *Syncer) Family() string {
	if s.Options.IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

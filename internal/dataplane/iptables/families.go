package iptables

import (
	"os/exec"

	"github.com/svcproxy/svcproxy/internal/dataplane"
)

// IPv6Exec runs ip6tables-save and ip6tables-restore.
var IPv6Exec = Exec{SaveCmd: "ip6tables-save", RestoreCmd: "ip6tables-restore"}

// HaveIPv6 reports whether this node can carry IPv6 Service rules: the
// kernel has IPv6 and ip6tables is installed.
func HaveIPv6() bool {
	if !dataplane.KernelHasIPv6() {
		return false
	}
	_, err := exec.LookPath(IPv6Exec.RestoreCmd)
	return err == nil
}

// Family is "IPv4" or "IPv6".
func (s *Syncer) Family() string { return dataplane.FamilyName(s.Options.IPv6) }

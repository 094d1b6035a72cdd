package iptables

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/svcproxy/svcproxy/internal/model"
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

// Families syncs one Syncer per IP family (iptables, ip6tables). Each
// family is its own transaction: a failure in one leaves the other applied.
type Families []*Syncer

func (fs Families) Sync(ctx context.Context, st *model.State) error {
	var errs []error
	for _, s := range fs {
		if err := s.Sync(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.family(), err))
		}
	}
	return errors.Join(errs...)
}

// ForceFull makes the next sync of every family a full one.
func (fs Families) ForceFull() {
	for _, s := range fs {
		s.ForceFull()
	}
}

// Cleanup removes svcproxy's rules of every family.
func (fs Families) Cleanup(ctx context.Context) (bool, error) {
	any := false
	var errs []error
	for _, s := range fs {
		removed, err := s.Cleanup(ctx)
		any = any || removed
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.family(), err))
		}
	}
	return any, errors.Join(errs...)
}

func (s *Syncer) family() string {
	if s.Options.IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

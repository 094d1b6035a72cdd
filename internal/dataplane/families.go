// Package dataplane holds what the proxy modes (iptables, nftables) share:
// the syncer contract and one syncer per IP family.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Syncer programs one IP family of one proxy mode.
type Syncer interface {
	Sync(ctx context.Context, st *model.State) error
	// ForceFull makes the next sync re-read the kernel and rewrite
	// everything (after someone else flushed the rules).
	ForceFull()
	// Cleanup removes every rule svcproxy installed in this mode and
	// family, and reports whether there was any.
	Cleanup(ctx context.Context) (bool, error)
	// Family is "IPv4" or "IPv6", for messages.
	Family() string
}

// KernelHasIPv6 reports whether the kernel has IPv6.
func KernelHasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// HostAddrs are the addresses of this network namespace's interfaces.
func HostAddrs() []netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// WithHostAddrs syncs every state with this host's addresses as they are
// at that moment (State.LocalAddrs), so that an address added later serves
// NodePorts from the next sync on, as upstream.
type WithHostAddrs struct{ Families }

func (d WithHostAddrs) Sync(ctx context.Context, st *model.State) error {
	c := *st
	c.LocalAddrs = HostAddrs()
	return d.Families.Sync(ctx, &c)
}

// FamilyName is "IPv4" or "IPv6", as Syncer.Family says it.
func FamilyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// Loopback is the family's loopback range: 127.0.0.0/8 or ::1/128.
func Loopback(v6 bool) netip.Prefix {
	if v6 {
		return netip.MustParsePrefix("::1/128")
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// Families syncs one Syncer per IP family. Each family is its own
// transaction: a failure in one leaves the other applied.
type Families []Syncer

func (fs Families) Sync(ctx context.Context, st *model.State) error {
	var errs []error
	for _, s := range fs {
		if err := s.Sync(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Family(), err))
		}
	}
	return errors.Join(errs...)
}

// FollowUp is the soonest follow-up sync any family wants (see
// proxy.FollowUp); 0 when none does.
func (fs Families) FollowUp() time.Duration {
	var soonest time.Duration
	for _, s := range fs {
		if f, ok := s.(interface{ FollowUp() time.Duration }); ok {
			if d := f.FollowUp(); d > 0 && (soonest == 0 || d < soonest) {
				soonest = d
			}
		}
	}
	return soonest
}

// ForceFull makes the next sync of every family a full one.
func (fs Families) ForceFull() {
	for _, s := range fs {
		s.ForceFull()
	}
}

// Release hands every family's rules over to the proxy that starts next,
// where the mode's layout needs it (a Syncer with a Release method).
func (fs Families) Release(ctx context.Context) error {
	var errs []error
	for _, s := range fs {
		if r, ok := s.(interface{ Release(context.Context) error }); ok {
			if err := r.Release(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Family(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes the rules of every family.
func (fs Families) Cleanup(ctx context.Context) (bool, error) {
	any := false
	var errs []error
	for _, s := range fs {
		removed, err := s.Cleanup(ctx)
		any = any || removed
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Family(), err))
		}
	}
	return any, errors.Join(errs...)
}

// Monitor checks every interval, once rules were synced (synced reports
// that), whether svcproxy's rules are still in the kernel, and calls resync
// when present says they are gone: someone flushed them (a firewall reload,
// iptables -F -X, nft flush ruleset).
func Monitor(ctx context.Context, interval time.Duration, log *slog.Logger, what string, present func(context.Context) bool, synced func() bool, resync func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if synced() && !present(ctx) && ctx.Err() == nil {
			log.Warn(what + " gone: the rules were flushed; re-syncing all rules")
			resync()
		}
	}
}

package model

import (
	"fmt"
	"net/netip"

	netutils "k8s.io/utils/net"
)

// Addresses and CIDRs are read as upstream kube-proxy reads them: strictly
// when they are in canonical form, and otherwise the legacy way, which takes
// IPv4 octets with leading zeros as decimal ("10.180.00.001" is 10.180.0.1).
// API servers before v1.22 stored such addresses, and a cluster upgraded
// since still holds them; refusing them would drop those Services when the
// node switches proxies. Each legacy form is reported as a warning.

// parseAddr reads an IP address; legacy is set when it was not written in
// a form netip accepts.
func parseAddr(s string) (a netip.Addr, legacy bool, err error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), false, nil
	}
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		return netip.Addr{}, false, fmt.Errorf("%q is not an IP address", s)
	}
	a, _ = netip.AddrFromSlice(ip)
	return a.Unmap(), true, nil
}

// parsePrefix reads a CIDR, masked; legacy as for parseAddr.
func parsePrefix(s string) (p netip.Prefix, legacy bool, err error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), false, nil
	}
	_, n, err := netutils.ParseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("%q is not a CIDR", s)
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true, nil
}

// legacyWarning is the warning for a field written in a legacy form.
func legacyWarning(field, written string, read fmt.Stringer) *ObjectError {
	return &ObjectError{Field: field, Warning: true, Kept: true,
		Err: fmt.Errorf("%q has leading zeros, a legacy form: read as %s, as upstream kube-proxy does; write it as %s", written, read, read)}
}

package iptables

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nfacct counters upstream's iptables mode counts in (its rules match
// them with -m nfacct), under upstream's names: localhost NodePort packets
// accepted, and INVALID packets dropped in KUBE-FORWARD.
const (
	NFAcctLocalhostNodePorts = "localhost_nps_accepted_pkts"
	NFAcctInvalidDropped     = "ct_state_invalid_dropped_pkts"
)

// nfnetlink's accounting subsystem (linux/netfilter/nfnetlink_acct.h).
const (
	nfnlSubsysAcct = 7
	acctNew        = 0
	acctGet        = 1
	attrName       = 1
	attrPackets    = 2
)

// EnsureNFAcct makes the counters in the process's network namespace
// (those that exist stay as they are): false when the kernel has no
// nfacct, and the rules then count in none.
func EnsureNFAcct() error {
	for _, name := range []string{NFAcctLocalhostNodePorts, NFAcctInvalidDropped} {
		_, err := nfacctRequest(acctNew, netlink.Create|netlink.Acknowledge, name)
		if err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("nfacct: create %s: %w", name, err)
		}
	}
	return nil
}

// NFAcctPackets is how many packets the named counter has counted.
func NFAcctPackets(name string) (uint64, error) {
	// A dump of all counters: the kernel's answer to a GET of one name
	// does not come back as the request's reply.
	msgs, err := nfacctRequest(acctGet, netlink.Dump, "")
	if err != nil {
		return 0, fmt.Errorf("nfacct: read %s: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		var got string
		var packets uint64
		for ad.Next() {
			switch ad.Type() {
			case attrName:
				got = ad.String()
			case attrPackets:
				if len(ad.Bytes()) == 8 {
					packets = binary.BigEndian.Uint64(ad.Bytes())
				}
			}
		}
		if got == name {
			return packets, nil
		}
	}
	return 0, fmt.Errorf("nfacct: no counter %s", name)
}

func nfacctRequest(msgType uint16, flags netlink.HeaderFlags, name string) ([]netlink.Message, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var attrs []byte
	if name != "" {
		ae := netlink.NewAttributeEncoder()
		ae.String(attrName, name)
		if attrs, err = ae.Encode(); err != nil {
			return nil, err
		}
	}
	// nfgenmsg: family, version, resource id.
	data := append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...)
	return c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysAcct<<8 | msgType), Flags: netlink.Request | flags},
		Data:   data,
	})
}

package nftables

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The endpoints maps are keyed by a numgen value, a plain 32-bit integer.
// nft has no type name for that: it declares such a map by the expression
// whose values it holds ("typeof numgen random mod 16384 : ip daddr . th
// dport") and keeps that expression in the set's user data, where it finds
// it again to list the map and to load that listing back. google/nftables
// writes no such user data, and without it nft lists the map with a type
// the listing cannot be loaded with ("datatype mismatch"). So the map is
// created with an integer key and the user data nft itself writes for that
// declaration, added to google/nftables' message on its way out.

// endpointsTypeof is the endpoints maps' declaration, as nft lists it.
func endpointsTypeof(v6 bool) string {
	return "numgen random mod " + strconv.Itoa(slotsPerRange) + " : " + ipWord(v6) + " daddr . th dport"
}

// Tags of nft's set user data (libnftnl udata.h), and ids of the
// expressions and protocol fields in it (nftables' expression and payload
// tables).
const (
	udataKeyByteorder  = 0
	udataDataByteorder = 1
	udataKeyTypeof     = 3
	udataDataTypeof    = 4
	udataDataInterval  = 6
	udataComment       = 7

	typeofID   = 0 // the expression's id
	typeofData = 1 // its attributes, nested

	exprPayload = 7
	exprConcat  = 13
	exprNumgen  = 23

	byteorderHost = 1

	protoIP, protoIP6, protoTH  = 12, 13, 11
	fieldIPDaddr, fieldIP6Daddr = 12, 9
	fieldTHDport                = 2
)

// udata builds nft's user data: a tag byte, a length byte, the value.
type udata []byte

func (u udata) u32(tag byte, v uint32) udata {
	return binary.NativeEndian.AppendUint32(append(u, tag, 4), v)
}

func (u udata) nest(tag byte, inner udata) udata {
	return append(append(u, tag, byte(len(inner))), inner...)
}

// typeofExpr is a typeof expression: its id and its attributes.
func typeofExpr(id uint32, attrs udata) udata {
	return udata(nil).u32(typeofID, id).nest(typeofData, attrs)
}

// payload is a protocol field, as in "ip daddr".
func payload(proto, field uint32) udata {
	return typeofExpr(exprPayload, udata(nil).u32(0, proto).u32(1, field))
}

// endpointsUserdata is the user data nft writes for an endpoints map.
func endpointsUserdata(v6 bool, comment string) []byte {
	ip, daddr := uint32(protoIP), uint32(fieldIPDaddr)
	if v6 {
		ip, daddr = protoIP6, fieldIP6Daddr
	}
	key := typeofExpr(exprNumgen, udata(nil).u32(0, unix.NFT_NG_RANDOM).u32(1, slotsPerRange).u32(2, 0))
	// A concatenation nests its parts by position.
	parts := udata(nil).nest(0, payload(ip, daddr)).nest(1, payload(protoTH, fieldTHDport))
	u := udata(nil).u32(udataKeyByteorder, byteorderHost).u32(udataDataByteorder, 0).
		nest(udataKeyTypeof, key).nest(udataDataTypeof, typeofExpr(exprConcat, parts)).
		u32(udataDataInterval, 0)
	if comment != "" {
		u = append(u, udataComment, byte(len(comment)+1))
		u = append(append(u, comment...), 0)
	}
	return u
}

// withEndpointsTypeof gives a message creating an endpoints map nft's user
// data; other messages are returned as they are. The attributes are walked
// as bytes and copied as they are (decoding them would lose their flags).
func withEndpointsTypeof(m netlink.Message) netlink.Message {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSET) || len(m.Data) < 4 {
		return m
	}
	var name string
	var kept []byte
	for b := m.Data[4:]; len(b) >= 4; {
		n := int(binary.NativeEndian.Uint16(b))
		if n < 4 || n > len(b) {
			return m
		}
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if typ == unix.NFTA_SET_NAME {
			name = strings.TrimRight(string(b[4:n]), "\x00")
		}
		next := min(nlaAlign(n), len(b))
		if typ != unix.NFTA_SET_USERDATA {
			kept = append(kept, b[:next]...)
		}
		b = b[next:]
	}
	if !isEndpointMap(name) {
		return m
	}
	ud := endpointsUserdata(m.Data[0] == unix.NFPROTO_IPV6, endpointMapSet(name).Comment)
	kept = binary.NativeEndian.AppendUint16(kept, uint16(4+len(ud)))
	kept = binary.NativeEndian.AppendUint16(kept, unix.NFTA_SET_USERDATA)
	kept = append(append(kept, ud...), make([]byte, nlaAlign(4+len(ud))-4-len(ud))...)
	m.Data = append(m.Data[:4:4], kept...)
	return m
}

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

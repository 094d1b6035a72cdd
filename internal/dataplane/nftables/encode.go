package nftables

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file turns statements into the netlink expressions nft would send
// for the same text. The e2e tests hold the two together: what the kernel
// lists after an apply must equal Ruleset.List.

// The registers: NFT_REG_1 for single matches, NFT_REG32_00 onwards for
// concatenated keys.
const (
	reg1     = 1
	reg32_00 = 8
)

func addrOffset(v6, src bool) (offset, length uint32) {
	switch {
	case v6 && src:
		return 8, 16
	case v6:
		return 24, 16
	case src:
		return 12, 4
	default:
		return 16, 4
	}
}

func loadAddr(v6, src bool, reg uint32) *expr.Payload {
	off, l := addrOffset(v6, src)
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l}
}

func addrBytes(a netip.Addr) []byte { return a.AsSlice() }

func ne32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func protoNum(p string) byte {
	switch p {
	case "udp":
		return unix.IPPROTO_UDP
	case "sctp":
		return unix.IPPROTO_SCTP
	default:
		return unix.IPPROTO_TCP
	}
}

// protoName is protoNum the other way round.
func protoName(n byte) string {
	switch n {
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return "tcp"
}

func (m matchAddr) exprs(v6 bool) []expr.Any {
	_, l := addrOffset(v6, m.src)
	op := expr.CmpOpEq
	if m.neg {
		op = expr.CmpOpNeq
	}
	out := []expr.Any{loadAddr(v6, m.src, reg1)}
	p := m.p.Masked()
	if !m.p.IsSingleIP() {
		mask := netip.PrefixFrom(netip.IPv6Unspecified(), p.Bits())
		if !v6 {
			mask = netip.PrefixFrom(netip.IPv4Unspecified(), p.Bits())
		}
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: l, Mask: prefixMask(mask), Xor: make([]byte, l)})
	}
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: addrBytes(p.Addr())})
}

// prefixMask is the netmask of a prefix's length, as bytes.
func prefixMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

func l4(proto string, reg uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{protoNum(proto)}},
	}
}

func loadDport(reg uint32) *expr.Payload {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func (m matchPort) exprs(bool) []expr.Any {
	return append(l4(m.proto, reg1), loadDport(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(m.port)})
}

func (m matchL4) exprs(bool) []expr.Any { return l4(m.proto, reg1) }

func (m matchFibLocal) exprs(bool) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, ResultADDRTYPE: true, FlagSADDR: m.src, FlagDADDR: !m.src},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ne32(unix.RTN_LOCAL)},
	}
}

func (matchCtNew) exprs(bool) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne32(expr.CtStateBitNEW), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ne32(0)},
	}
}

func (m matchAddrSet) exprs(v6 bool) []expr.Any {
	return []expr.Any{loadAddr(v6, m.src, reg1), &expr.Lookup{SourceRegister: reg1, SetName: m.set}}
}

// An interface name is compared as the kernel holds it: IFNAMSIZ bytes,
// NUL-padded; a prefix only over its own bytes.
func (m matchIifname) exprs(bool) []expr.Any {
	data := []byte(m.name)
	if !m.prefix {
		data = append(data, make([]byte, unix.IFNAMSIZ-len(data))...)
	}
	op := expr.CmpOpEq
	if m.neg {
		op = expr.CmpOpNeq
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1}, &expr.Cmp{Op: op, Register: reg1, Data: data}}
}

func (m matchMarkClear) exprs(bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne32(m.mark), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ne32(0)},
	}
}

func (v verdict) netlink() *expr.Verdict {
	switch v.kind {
	case vJump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.chain}
	case vGoto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.chain}
	case vReturn:
		return &expr.Verdict{Kind: expr.VerdictReturn}
	default:
		return &expr.Verdict{Kind: expr.VerdictDrop}
	}
}

func (v verdict) exprs(bool) []expr.Any { return []expr.Any{v.netlink()} }

func (c counterRef) exprs(bool) []expr.Any {
	return []expr.Any{&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: c.name}}
}

func (reject) exprs(v6 bool) []expr.Any {
	// nft's default: ICMP(v6) port unreachable.
	code := uint8(3)
	if v6 {
		code = 4
	}
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}
}

func (n numgenPick) exprs(bool) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: uint32(n.mod), Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ne32(0)},
	}
}

func (d dnat) exprs(v6 bool) []expr.Any {
	fam := uint32(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: addrBytes(d.addr)},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(d.port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: 2},
	}
}

func setMark(mask, xor uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne32(mask), Xor: ne32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

func (m markOr) exprs(bool) []expr.Any  { return setMark(^m.mark, m.mark) }
func (m markXor) exprs(bool) []expr.Any { return setMark(^uint32(0), m.mark) }

func (masq) exprs(bool) []expr.Any { return []expr.Any{&expr.Masq{FullyRandom: true}} }

// loadKeys loads a concatenation of fields into the registers from
// reg32_00 on, each field in as many 4-byte registers as it needs.
func loadKeys(keys []keyField, v6 bool) []expr.Any {
	var out []expr.Any
	reg := uint32(reg32_00)
	for _, k := range keys {
		switch k {
		case fSaddr, fDaddr:
			out = append(out, loadAddr(v6, k == fSaddr, reg))
			if v6 {
				reg += 4
			} else {
				reg++
			}
		case fL4Proto:
			out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg})
			reg++
		case fDport:
			out = append(out, loadDport(reg))
			reg++
		}
	}
	return out
}

func (v vmapLookup) exprs(v6 bool) []expr.Any {
	return append(loadKeys(v.keys, v6), &expr.Lookup{SourceRegister: reg32_00, DestRegister: 0, IsDestRegSet: true, SetName: v.m})
}

func (u updateSet) exprs(v6 bool) []expr.Any {
	return []expr.Any{loadAddr(v6, true, reg1), &expr.Dynset{SrcRegKey: reg1, SetName: u.set, Operation: unix.NFT_DYNSET_OP_UPDATE}}
}

// ipsDstNAT is the conntrack status bit of a connection whose destination
// was rewritten.
const ipsDstNAT = 1 << 5

func (matchCtDNAT) exprs(bool) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ne32(ipsDstNAT), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ne32(0)},
	}
}

func (m matchSet) exprs(v6 bool) []expr.Any {
	return append(loadKeys(m.keys, v6), &expr.Lookup{SourceRegister: reg32_00, SetName: m.set})
}

func (d dnatMap) exprs(v6 bool) []expr.Any {
	fam, portReg := uint32(unix.NFPROTO_IPV4), uint32(reg32_00+1)
	if v6 {
		fam, portReg = unix.NFPROTO_IPV6, reg32_00+4
	}
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: slotsPerRange, Type: unix.NFT_NG_RANDOM, Offset: d.offset()},
		// The map's keys are big-endian, so that its ranges compare as
		// numbers.
		&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: endpointMap(d.id)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: portReg},
	}
}

package nftables

import (
	"encoding/binary"
	"fmt"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// conn is a netlink connection to nf_tables with buffers big enough for
// one transaction of a large sync.
func newConn(netns int) (*gnft.Conn, error) {
	opts := []gnft.ConnOption{gnft.AsLasting(), gnft.WithSockOptions(bigBuffers)}
	if netns != 0 {
		opts = append(opts, gnft.WithNetNSFd(netns))
	}
	c, err := gnft.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// bigBuffers lets a transaction of thousands of objects go out in one
// sendmsg, and asks for acknowledgements without the request echoed back.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][3]int{
			{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 1 << 30},
			{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1 << 28},
			{unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1},
		} {
			if serr = unix.SetsockoptInt(int(fd), o[0], o[1], o[2]); serr != nil {
				serr = fmt.Errorf("setsockopt %d: %w", o[1], serr)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// batch is one transaction being built: netlink messages queued on conn,
// plus the kernel state it leads to once committed.
type batch struct {
	c     *gnft.Conn
	table *gnft.Table
	v6    bool
	ops   int
}

func (b *batch) chain(name string) *gnft.Chain { return &gnft.Chain{Name: name, Table: b.table} }

// addRules queues the rules of a chain that exists (or is added) in this
// transaction.
func (b *batch) addRules(chain string, rules []Rule) {
	c := b.chain(chain)
	for _, r := range rules {
		var exprs []expr.Any
		for _, s := range r.Stmts {
			exprs = append(exprs, s.exprs(b.v6)...)
		}
		nr := &gnft.Rule{Table: b.table, Chain: c, Exprs: exprs}
		if r.Comment != "" {
			nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
		}
		b.c.AddRule(nr)
		b.ops++
	}
}

// setFor is the netlink description of a named set or map.
func (b *batch) setFor(s Set) *gnft.Set {
	types := make([]gnft.SetDatatype, len(s.Keys))
	for i, k := range s.Keys {
		switch k {
		case "addr":
			types[i] = gnft.TypeIPAddr
			if b.v6 {
				types[i] = gnft.TypeIP6Addr
			}
		case "proto":
			types[i] = gnft.TypeInetProto
		case "port":
			types[i] = gnft.TypeInetService
		}
	}
	ns := &gnft.Set{Table: b.table, Name: s.Name, KeyType: types[0], Comment: s.Comment}
	if len(types) > 1 {
		ns.KeyType, ns.Concatenation = gnft.MustConcatSetType(types...), true
	}
	if s.IsMap {
		ns.IsMap, ns.DataType = true, gnft.TypeVerdict
	}
	if s.Timeout > 0 {
		ns.Dynamic, ns.HasTimeout, ns.Timeout = true, true, timeoutDuration(s.Timeout)
	}
	return ns
}

// elementKey is the element's key as the kernel stores it: each field of a
// concatenation padded to 4 bytes.
func elementKey(keys []string, e Element) []byte {
	var b []byte
	for _, k := range keys {
		switch k {
		case "addr":
			b = append(b, e.Addr.AsSlice()...)
		case "proto":
			b = append(b, protoNum(e.Proto), 0, 0, 0)
		case "port":
			b = binary.BigEndian.AppendUint16(b, e.Port)
			if len(keys) > 1 {
				b = append(b, 0, 0)
			}
		}
	}
	return b
}

func (b *batch) element(s Set, e Element) gnft.SetElement {
	ne := gnft.SetElement{Key: elementKey(s.Keys, e), Comment: e.Comment}
	if s.IsMap {
		ne.VerdictData = e.Verdict.netlink()
	}
	return ne
}

// verdictOf reads back a map element's verdict.
func verdictOf(v *expr.Verdict) verdict {
	if v == nil {
		return verdict{}
	}
	switch v.Kind {
	case expr.VerdictJump:
		return jump(v.Chain)
	case expr.VerdictGoto:
		return goTo(v.Chain)
	case expr.VerdictReturn:
		return returnV()
	default:
		return drop()
	}
}

package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// conns are a Syncer's two ways to the kernel. Reads go through
// google/nftables as usual. Writes are built by google/nftables and handed
// to a sender (through its dial hook) that sends each transaction in one
// sendmsg without asking for an acknowledgement per message: the kernel
// answers a transaction synchronously and reports errors anyway, and at
// 10k Services the acknowledgements and the echoed rules (one message per
// object, 400k per full sync) took a third of the sync's time.
type conns struct {
	read, write *gnft.Conn
	send        *sender
}

func newConns(netns int) (*conns, error) {
	c, err := newWritePath(netns)
	if err != nil {
		return nil, err
	}
	opts := []gnft.ConnOption{gnft.AsLasting(), gnft.WithSockOptions(bigBuffers)}
	if netns != 0 {
		opts = append(opts, gnft.WithNetNSFd(netns))
	}
	if c.read, err = gnft.New(opts...); err != nil {
		c.send.nl.Close()
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// newWritePath is conns without the read side.
func newWritePath(netns int) (*conns, error) {
	snd, err := dialSender(netns)
	if err != nil {
		return nil, err
	}
	c := &conns{send: snd}
	c.drop()
	return c, nil
}

// drop forgets the messages queued and not sent: a transaction given up.
// A Conn that is not lasting is only a queue (gnft.New cannot fail then).
func (c *conns) drop() { c.write, _ = gnft.New(gnft.WithTestDial(c.send.dial)) }

// flush sends the queued transaction and returns the kernel's verdict on it.
func (c *conns) flush() error {
	c.send.err = nil
	if err := c.write.Flush(); err != nil {
		return err
	}
	return c.send.err
}

// sender sends google/nftables' batches on its own netlink socket.
type sender struct {
	nl  *netlink.Conn
	seq uint32
	// base is the sequence number of the last batch's first message.
	base uint32
	err  error
}

// kernelError is the kernel's refusal of one message of a batch: index is
// the message's place among the batch's operations (after its begin
// marker), -1 when unknown.
type kernelError struct {
	errno syscall.Errno
	index int
}

func (e *kernelError) Error() string { return e.errno.Error() }
func (e *kernelError) Unwrap() error { return e.errno }

func dialSender(netns int) (*sender, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	if err := bigBuffers(nl); err != nil {
		nl.Close()
		return nil, fmt.Errorf("size nftables netlink socket buffers: %w", err)
	}
	return &sender{nl: nl}, nil
}

// ack is what google/nftables reads back for each message it sent.
var ack = netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}

// dial is google/nftables' view of the socket: a batch to send, or (req nil)
// a read of the next acknowledgement.
func (s *sender) dial(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return []netlink.Message{ack}, nil
	}
	for i := range req {
		req[i] = withEndpointsTypeof(req[i])
	}
	if err := s.send(req); err != nil {
		s.err = fmt.Errorf("send transaction: %w", err)
		return nil, nil
	}
	// The kernel has processed the batch by the time sendmsg returns; what
	// it has to say (errors only) is already queued.
	s.err = s.drain()
	return nil, nil
}

// send writes the batch into one buffer sized up front and sends it in one
// sendmsg. Neither an acknowledgement nor (for rules) an echo of each object
// created is asked for: the kernel would build and queue one message per
// object.
func (s *sender) send(req []netlink.Message) error {
	size := 0
	for _, m := range req {
		size += nlmsgAlign(unix.NLMSG_HDRLEN + len(m.Data))
	}
	buf := make([]byte, 0, size)
	s.base = s.seq + 1
	for _, m := range req {
		s.seq++
		n := unix.NLMSG_HDRLEN + len(m.Data)
		buf = binary.NativeEndian.AppendUint32(buf, uint32(n))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Type))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Flags&^(netlink.Acknowledge|netlink.Echo)))
		buf = binary.NativeEndian.AppendUint32(buf, s.seq)
		buf = binary.NativeEndian.AppendUint32(buf, 0)
		buf = append(buf, m.Data...)
		buf = append(buf, make([]byte, nlmsgAlign(n)-n)...)
	}
	rc, err := s.nl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// drain reads what the kernel queued, without waiting, and returns the
// first error it reports.
func (s *sender) drain() error {
	rc, err := s.nl.SyscallConn()
	if err != nil {
		return err
	}
	var first error
	buf := make([]byte, 1<<16)
	for {
		n := 0
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			return true
		}); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return first
		}
		if rerr != nil {
			return fmt.Errorf("read the kernel's answer: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse the kernel's answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 && first == nil {
				if errno := -int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
					ke := &kernelError{errno: syscall.Errno(errno), index: -1}
					// The refused message's header follows the errno: its
					// sequence number says which operation failed.
					if len(m.Data) >= 4+unix.NLMSG_HDRLEN {
						seq := binary.NativeEndian.Uint32(m.Data[4+8:])
						ke.index = int(seq) - int(s.base) - 1
					}
					first = ke
				}
			}
		}
	}
}

// bigBuffers lets a transaction of thousands of objects go out in one
// sendmsg, and has errors come back without the request echoed.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][3]int{
			{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 1 << 30},
			{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1 << 24},
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

// setFor is the netlink description of a named set or map.
func (e *netlinkEmitter) setFor(s Set) *gnft.Set {
	types := make([]gnft.SetDatatype, len(s.Keys))
	for i, k := range s.Keys {
		switch k {
		case "addr":
			types[i] = gnft.TypeIPAddr
			if e.v6 {
				types[i] = gnft.TypeIP6Addr
			}
		case "proto":
			types[i] = gnft.TypeInetProto
		case "port":
			types[i] = gnft.TypeInetService
		case "slot":
			// A plain integer, declared to nft by its expression (see
			// withEndpointsTypeof).
			types[i] = gnft.TypeInteger
		}
	}
	ns := &gnft.Set{Table: e.table, Name: s.Name, KeyType: types[0], Comment: s.Comment}
	if len(types) > 1 {
		// Without the concatenation flag and field lengths, as nft writes
		// a concatenated key that is not an interval (upstream's maps):
		// the kernel refuses to add a set again with other flags, and
		// svcproxy and kube-proxy add each other's maps on a takeover.
		ns.KeyType = gnft.MustConcatSetType(types...)
	}
	switch {
	case s.Endpoints:
		addr := gnft.TypeIPAddr
		if e.v6 {
			addr = gnft.TypeIP6Addr
		}
		// Big-endian keys: the kernel compares ranges byte by byte.
		ns.IsMap, ns.Interval, ns.KeyByteOrder = true, true, binaryutil.BigEndian
		ns.DataType = gnft.MustConcatSetType(addr, gnft.TypeInetService)
	case s.IsMap:
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
			b, _ = e.Addr.AppendBinary(b)
		case "proto":
			b = append(b, protoNum(e.Proto), 0, 0, 0)
		case "port":
			b = binary.BigEndian.AppendUint16(b, e.Port)
			if len(keys) > 1 {
				b = append(b, 0, 0)
			}
		case "slot":
			b = binary.BigEndian.AppendUint32(b, e.Slots[0])
		}
	}
	return b
}

// elements are an element as the kernel holds it. A range of the endpoints
// map is two: its first value with the endpoint ("addr . port", the port
// padded to 4 bytes), and the value after its last, marked as the end.
func (e *netlinkEmitter) elements(s Set, el Element) []gnft.SetElement {
	ne := gnft.SetElement{Key: elementKey(s.Keys, el), Comment: el.Comment}
	switch {
	case s.Endpoints:
		val, _ := el.Target.Addr().AppendBinary(make([]byte, 0, 20))
		val = append(val, 0, 0, 0, 0)
		binary.BigEndian.PutUint16(val[len(val)-4:], el.Target.Port())
		ne.Val = val
		return []gnft.SetElement{ne, {Key: binary.BigEndian.AppendUint32(nil, el.Slots[1]+1), IntervalEnd: true}}
	case s.IsMap:
		ne.VerdictData = el.Verdict.netlink()
	}
	return []gnft.SetElement{ne}
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

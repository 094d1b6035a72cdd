package nftables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"sigs.k8s.io/knftables"
)

// emitter takes the operations of one transaction on the table and commits
// them. The syncer decides what to send (plan and record); the emitter only
// sends it: netlinkEmitter to the kernel, fakeEmitter to knftables' Fake,
// on which tests run whole sequences of syncs without root. Every operation
// is named, so that a transaction the kernel refuses says what it refused.
type emitter interface {
	addTable()
	addBaseChain(c BaseChain)
	addChain(name string)
	flushChain(name string)
	deleteChain(name string)
	addRules(chain string, rules []Rule)
	addSet(s Set)
	flushSet(s Set)
	deleteSet(s Set)
	addElements(s Set, els []Element)
	// deleteElements deletes by key (and an endpoints map's range by its
	// slots).
	deleteElements(s Set, els []Element)
	addCounter(name string)
	deleteCounter(name string)
	deleteTable()
	// ops is how many operations wait to be committed.
	ops() int
	// commit sends them as one transaction.
	commit() error
	// discard gives them up.
	discard()
}

// opLog names the operations of a transaction, in order.
type opLog []string

func (l *opLog) add(format string, a ...any) { *l = append(*l, fmt.Sprintf(format, a...)) }

// netlinkEmitter queues google/nftables messages, one per operation, and
// sends them through the sender.
type netlinkEmitter struct {
	conn  *conns
	table *gnft.Table
	v6    bool
	names opLog
	// adds are the elements to add, by set, sent at the end of the
	// transaction in few messages: the kernel looks each message's set up
	// by name in a list, and a first sync of 100k Services sent half a
	// million of them.
	adds     map[string]*pendingAdds
	addOrder []string
}

// pendingAdds are the elements a transaction adds to one set, not yet in
// a message.
type pendingAdds struct {
	set   Set
	els   []gnft.SetElement
	bytes int
}

// addBytesPerMessage caps what one message's elements take: an element
// list is an attribute, whose length has 16 bits.
const addBytesPerMessage = 32 << 10

func (e *netlinkEmitter) chain(name string) *gnft.Chain {
	return &gnft.Chain{Name: name, Table: e.table}
}

func (e *netlinkEmitter) addTable() {
	e.conn.write.AddTable(e.table)
	e.names.add("add table %s", e.table.Name)
}

func (e *netlinkEmitter) addBaseChain(bc BaseChain) {
	hook, prio := hookOf(bc.Hook), gnft.ChainPriority(bc.Priority)
	e.conn.write.AddChain(&gnft.Chain{Name: bc.Name, Table: e.table, Type: gnft.ChainType(bc.Type), Hooknum: &hook, Priority: &prio})
	e.names.add("add base chain %s", bc.Name)
}

func (e *netlinkEmitter) addChain(name string) {
	e.conn.write.AddChain(e.chain(name))
	e.names.add("add chain %s", name)
}

func (e *netlinkEmitter) flushChain(name string) {
	e.conn.write.FlushChain(e.chain(name))
	e.names.add("flush chain %s", name)
}

func (e *netlinkEmitter) deleteChain(name string) {
	e.conn.write.DelChain(e.chain(name))
	e.names.add("delete chain %s", name)
}

func (e *netlinkEmitter) addRules(chain string, rules []Rule) {
	c := e.chain(chain)
	for _, r := range rules {
		var exprs []expr.Any
		for _, s := range r.Stmts {
			exprs = append(exprs, s.exprs(e.v6)...)
		}
		nr := &gnft.Rule{Table: e.table, Chain: c, Exprs: exprs}
		if r.Comment != "" {
			nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
		}
		e.conn.write.AddRule(nr)
		e.names.add("add rule to chain %s", chain)
	}
}

func (e *netlinkEmitter) addSet(s Set) {
	_ = e.conn.write.AddSet(e.setFor(s), nil)
	e.names.add("add %s %s", setKind(s), s.Name)
}

func (e *netlinkEmitter) flushSet(s Set) {
	e.conn.write.FlushSet(e.setFor(s))
	e.names.add("flush %s %s", setKind(s), s.Name)
}

func (e *netlinkEmitter) deleteSet(s Set) {
	e.conn.write.DelSet(&gnft.Set{Table: e.table, Name: s.Name})
	e.names.add("delete %s %s", setKind(s), s.Name)
}

func (e *netlinkEmitter) addCounter(name string) {
	e.conn.write.AddObj(&gnft.CounterObj{Table: e.table, Name: name})
	e.names.add("add counter %s", name)
}

func (e *netlinkEmitter) deleteCounter(name string) {
	e.conn.write.DeleteObject(&gnft.CounterObj{Table: e.table, Name: name})
	e.names.add("delete counter %s", name)
}

// addElements queues the elements: they go in a message of their set's
// once it is full, or at the end of the transaction (see sendAdds), so
// after everything queued before them. That keeps the order a transaction
// needs: a map element jumps to a chain added before it, and an element
// deleted and added again (a new value, a range moved) is deleted first.
// (No element is deleted after it is added in one transaction: the
// Services that want an element keep it.)
func (e *netlinkEmitter) addElements(s Set, els []Element) {
	if e.adds == nil {
		e.adds = map[string]*pendingAdds{}
	}
	p := e.adds[s.Name]
	if p == nil {
		p = &pendingAdds{set: s}
		e.adds[s.Name] = p
		e.addOrder = append(e.addOrder, s.Name)
	}
	for _, el := range els {
		for _, ne := range e.elements(s, el) {
			p.els = append(p.els, ne)
			p.bytes += elementBytes(&ne)
		}
	}
	if p.bytes >= addBytesPerMessage {
		e.send(p)
	}
}

// elementBytes is about what an element takes in a message, its
// attributes' headers included.
func elementBytes(el *gnft.SetElement) int {
	n := 64 + len(el.Key) + len(el.Val) + len(el.Comment)
	if el.VerdictData != nil {
		n += len(el.VerdictData.Chain)
	}
	return n
}

// sendAdds queues the messages of the elements addElements kept.
func (e *netlinkEmitter) sendAdds() {
	for _, name := range e.addOrder {
		e.send(e.adds[name])
	}
	e.adds, e.addOrder = nil, nil
}

// send queues messages of p's elements, each at most about
// addBytesPerMessage (a range's end stays with its start).
func (e *netlinkEmitter) send(p *pendingAdds) {
	set := e.setFor(p.set)
	for els := p.els; len(els) > 0; {
		n, size := 0, 0
		for n < len(els) && (size < addBytesPerMessage || els[n].IntervalEnd) {
			size += elementBytes(&els[n])
			n++
		}
		_ = e.conn.write.SetAddElements(set, els[:n])
		e.names.add("add %d elements to %s %s", n, setKind(p.set), p.set.Name)
		els = els[n:]
	}
	// The messages hold copies: the list can be filled again.
	p.els, p.bytes = p.els[:0], 0
}

func (e *netlinkEmitter) deleteElements(s Set, els []Element) {
	var ns []gnft.SetElement
	for _, el := range els {
		if s.Endpoints {
			ns = append(ns, gnft.SetElement{Key: binary.BigEndian.AppendUint32(nil, el.Slots[0])},
				gnft.SetElement{Key: binary.BigEndian.AppendUint32(nil, el.Slots[1]+1), IntervalEnd: true})
			continue
		}
		ns = append(ns, gnft.SetElement{Key: elementKey(s.Keys, el)})
	}
	_ = e.conn.write.SetDeleteElements(e.setFor(s), ns)
	e.names.add("delete %s from %s %s", describe(s, els), setKind(s), s.Name)
}

func (e *netlinkEmitter) deleteTable() {
	e.conn.write.DelTable(e.table)
	e.names.add("delete table %s", e.table.Name)
}

func (e *netlinkEmitter) ops() int { return len(e.names) + len(e.addOrder) }

// commit sends the transaction; an error names the operation the kernel
// refused.
func (e *netlinkEmitter) commit() error {
	e.sendAdds()
	names := e.names
	e.names = nil
	err := e.conn.flush()
	var ke *kernelError
	if errors.As(err, &ke) && ke.index >= 0 && ke.index < len(names) {
		return fmt.Errorf("%s: %w", names[ke.index], ke.errno)
	}
	return err
}

func (e *netlinkEmitter) discard() {
	e.conn.drop()
	e.names, e.adds, e.addOrder = nil, nil, nil
}

// fakeEmitter applies the operations to knftables' Fake, which checks
// every reference as the kernel would (a jump to a missing chain, an
// element of a missing map).
type fakeEmitter struct {
	fake  *knftables.Fake
	tx    *knftables.Transaction
	v6    bool
	names opLog
	// sent gets the names of the operations of each committed
	// transaction, for tests to say what a sync sent.
	sent *[]string
}

func newFakeEmitter(fake *knftables.Fake, v6 bool, sent *[]string) *fakeEmitter {
	return &fakeEmitter{fake: fake, tx: fake.NewTransaction(), v6: v6, sent: sent}
}

func (e *fakeEmitter) addTable() {
	e.tx.Add(&knftables.Table{})
	e.names.add("add table")
}

func (e *fakeEmitter) addBaseChain(c BaseChain) {
	e.tx.Add(knftBaseChain(c))
	e.names.add("add base chain %s", c.Name)
}

func (e *fakeEmitter) addChain(name string) {
	e.tx.Add(&knftables.Chain{Name: name})
	e.names.add("add chain %s", name)
}

func (e *fakeEmitter) flushChain(name string) {
	e.tx.Flush(&knftables.Chain{Name: name})
	e.names.add("flush chain %s", name)
}

func (e *fakeEmitter) deleteChain(name string) {
	e.tx.Delete(&knftables.Chain{Name: name})
	e.names.add("delete chain %s", name)
}

func (e *fakeEmitter) addRules(chain string, rules []Rule) {
	for _, r := range rules {
		e.tx.Add(knftRule(chain, r, e.v6))
		e.names.add("add rule to chain %s", chain)
	}
}

func (e *fakeEmitter) addSet(s Set) {
	e.tx.Add(knftSet(s, e.v6))
	e.names.add("add %s %s", setKind(s), s.Name)
}

func (e *fakeEmitter) flushSet(s Set) {
	e.tx.Flush(knftSet(s, e.v6))
	e.names.add("flush %s %s", setKind(s), s.Name)
}

func (e *fakeEmitter) deleteSet(s Set) {
	e.tx.Delete(knftSet(s, e.v6))
	e.names.add("delete %s %s", setKind(s), s.Name)
}

func (e *fakeEmitter) addElements(s Set, els []Element) {
	for _, el := range els {
		e.tx.Add(knftElement(s, el, true))
	}
	e.names.add("add %s to %s %s", describe(s, els), setKind(s), s.Name)
}

func (e *fakeEmitter) deleteElements(s Set, els []Element) {
	for _, el := range els {
		e.tx.Delete(knftElement(s, el, false))
	}
	e.names.add("delete %s from %s %s", describe(s, els), setKind(s), s.Name)
}

func (e *fakeEmitter) addCounter(name string) {
	e.tx.Add(&knftables.Counter{Name: name})
	e.names.add("add counter %s", name)
}

func (e *fakeEmitter) deleteCounter(name string) {
	e.tx.Delete(&knftables.Counter{Name: name})
	e.names.add("delete counter %s", name)
}

func (e *fakeEmitter) deleteTable() {
	e.tx.Delete(&knftables.Table{})
	e.names.add("delete table")
}

func (e *fakeEmitter) ops() int { return len(e.names) }

func (e *fakeEmitter) commit() error {
	tx, names := e.tx, e.names
	e.tx, e.names = e.fake.NewTransaction(), nil
	if err := e.fake.Run(context.Background(), tx); err != nil {
		return err
	}
	*e.sent = append(*e.sent, names...)
	return nil
}

func (e *fakeEmitter) discard() { e.tx, e.names = e.fake.NewTransaction(), nil }

func setKind(s Set) string {
	if s.IsMap {
		return "map"
	}
	return "set"
}

// describe names elements for messages: the first one's key, and how many
// more.
func describe(s Set, els []Element) string {
	if len(els) == 0 {
		return "no element"
	}
	d := "element " + joinKey(els[0].keyParts(s))
	if len(els) > 1 {
		d += " and " + strconv.Itoa(len(els)-1) + " more"
	}
	return d
}

func joinKey(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += " . "
		}
		out += p
	}
	return out
}

// decodeKey is the element whose kernel key is b (see elementKey).
func decodeKey(keys []string, b []byte, v6 bool) Element {
	var e Element
	for _, k := range keys {
		switch k {
		case "addr":
			n := addrLen(v6)
			if len(b) < n {
				return e
			}
			e.Addr, _ = netip.AddrFromSlice(b[:n])
			b = b[n:]
		case "proto":
			if len(b) < 4 {
				return e
			}
			e.Proto = protoName(b[0])
			b = b[4:]
		case "port":
			if len(b) < 2 {
				return e
			}
			e.Port = binary.BigEndian.Uint16(b)
			b = b[min(len(b), 4):]
		case "slot":
			if len(b) < 4 {
				return e
			}
			e.Slots[0] = binary.BigEndian.Uint32(b)
			e.Slots[1] = e.Slots[0]
			b = b[4:]
		}
	}
	return e
}

package iptables

import (
	"bytes"
	"iter"
	"slices"
	"strings"

	"github.com/svcproxy/svcproxy/internal/netfilter"
)

// jump is a rule in a built-in chain that sends traffic into our chains.
type jump struct {
	table, from, to, comment string
	extra                    []string
}

// jumps are upstream kube-proxy's jumps from the built-in chains, in the
// order they are inserted (each is inserted at the top of its chain).
var jumps = []jump{
	{"filter", "INPUT", chainExternalServices, "kubernetes externally-visible service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainExternalServices, "kubernetes externally-visible service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "INPUT", chainNodePorts, "kubernetes health check service ports", nil},
	{"filter", "FORWARD", chainServices, "kubernetes service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "OUTPUT", chainServices, "kubernetes service portals", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainForward, "kubernetes forwarding rules", nil},
	{"filter", "INPUT", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "OUTPUT", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "FORWARD", chainProxyFirewall, "kubernetes load balancer firewall", []string{"-m", "conntrack", "--ctstate", "NEW"}},
	{"filter", "INPUT", chainFirewall, "", nil},
	{"filter", "OUTPUT", chainFirewall, "", nil},
	{"nat", "OUTPUT", chainServices, "kubernetes service portals", nil},
	{"nat", "PREROUTING", chainServices, "kubernetes service portals", nil},
	{"nat", "POSTROUTING", chainPostrouting, "kubernetes postrouting rules", nil},
}

func (j jump) args() []string {
	args := slices.Clone(j.extra)
	if j.comment != "" {
		args = append(args, "-m", "comment", "--comment", quote(j.comment))
	}
	return append(args, "-j", j.to)
}

// present reports whether the built-in chain already has this jump.
func (j jump) present(cur *netfilter.Ruleset) bool {
	if cur == nil {
		return false
	}
	c := cur.Table(j.table).Chain(j.from)
	if c == nil {
		return false
	}
	for _, r := range c.Rules {
		if r.Target == j.to && r.Comment() == j.comment {
			return true
		}
	}
	return false
}

// isOwnedChain reports whether svcproxy created a chain of this name.
func isOwnedChain(name string) bool {
	switch name {
	case chainServices, chainExternalServices, chainNodePorts, chainPostrouting, chainMarkMasq,
		chainForward, chainFirewall, chainProxyFirewall, ChainCanary:
		return true
	}
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Compose returns the iptables-restore --noflush input that takes the kernel
// from cur (parsed iptables-save output; nil for an empty kernel) to rs in
// one transaction: our chains rewritten, missing jumps from built-in chains
// inserted, and per-Service chains that are no longer needed flushed and
// deleted. Rules and chains that are not ours are never named, so they are
// left alone.
func Compose(rs *Ruleset, cur *netfilter.Ruleset) []byte {
	return composeTables(rs.natTables(), staleIn(cur, rs), func(j jump) bool { return !j.present(cur) })
}

// staleIn lists, per table, the per-Service chains cur has and rs does not.
func staleIn(cur *netfilter.Ruleset, rs *Ruleset) map[string][]string {
	stale := map[string][]string{}
	if cur == nil {
		return stale
	}
	want := wanted(rs)
	for _, t := range cur.Tables {
		for _, c := range t.ChainNames() {
			if !want[t.Name][c] && isPerService(c) {
				stale[t.Name] = append(stale[t.Name], c)
			}
		}
	}
	return stale
}

// DefaultChunkServices is how many Service ports one transaction of a large
// sync carries. A single iptables-restore --noflush grows quadratically
// with its size; transactions of this size keep a sync linear (2k
// Services × 10 endpoints: 30.6 s in one transaction, 2.8 s in chunks).
const DefaultChunkServices = 250

// ComposeChunks returns the restore inputs that take the kernel from cur to
// rs, to be applied in order:
//
//  1. the chains every Service needs (KUBE-MARK-MASQ, KUBE-POSTROUTING);
//  2. the chains of perChunk Service ports at a time, each Service port's
//     chains (SVC, SVL, EXT, FW, SEP) always in one transaction, so that no
//     Service is ever half-programmed;
//  3. the dispatch chains (KUBE-SERVICES, KUBE-NODEPORTS), the filter table,
//     the jumps from built-in chains and the deletion of stale chains.
//
// New Services become reachable only in the last step, after their chains
// exist. When rs has at most perChunk Service ports it is one transaction,
// exactly Compose's.
func ComposeChunks(rs *Ruleset, cur *netfilter.Ruleset, perChunk int) [][]byte {
	return slices.Collect(Chunks(rs, cur, perChunk))
}

// Chunks yields ComposeChunks' transactions one at a time, each composed
// only when asked for: a sync applies one before the next exists, so the
// restore input of 10k Services (30 MiB) is never in memory all at once.
// ChunkCount says how many there are.
func Chunks(rs *Ruleset, cur *netfilter.Ruleset, perChunk int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		if ChunkCount(rs, perChunk) == 1 {
			yield(Compose(rs, cur))
			return
		}
		if !yield(natTransaction(rs.fixedNatChains, rs.fixedNatRules)) {
			return
		}
		for i := 0; i < len(rs.ServiceSpans); i += perChunk {
			group := rs.ServiceSpans[i:min(i+perChunk, len(rs.ServiceSpans))]
			first, last := group[0], group[len(group)-1]
			if !yield(natTransaction(rs.natChains[first.ChainsFrom:last.ChainsTo], rs.portRules(nil, group))) {
				return
			}
		}
		yield(composeTables(dispatchTables(rs), staleIn(cur, rs), func(j jump) bool { return !j.present(cur) }))
	}
}

// ChunkCount is how many transactions Chunks yields.
func ChunkCount(rs *Ruleset, perChunk int) int {
	if perChunk <= 0 || len(rs.ServiceSpans) <= perChunk {
		return 1
	}
	return 2 + (len(rs.ServiceSpans)+perChunk-1)/perChunk
}

// dispatchTables are the tables of the last transaction of a chunked sync:
// nat reduced to the dispatch chains, the other tables whole.
func dispatchTables(rs *Ruleset) []TableRules {
	var final []TableRules
	for _, t := range rs.Tables {
		if t.Name == "nat" {
			t = TableRules{Name: "nat", Chains: []string{chainServices, chainNodePorts, ChainCanary}, Rules: rs.dispatch}
		}
		final = append(final, t)
	}
	return final
}

// Applied is what a sync left in the kernel, for the partial syncs after
// it: per Service port a fingerprint of its nat chains, rules and lines in
// the shared chains, those lines themselves and its chains.
type Applied struct {
	spans map[string]appliedSpan
	// tail are the node's own last lines of nat KUBE-SERVICES.
	tail []string
}

type appliedSpan struct {
	sum      uint64
	dispatch [3][]string
	chains   []string
}

// Record returns what applying rs leaves in the kernel.
func Record(rs *Ruleset) *Applied {
	a := &Applied{spans: make(map[string]appliedSpan, len(rs.ServiceSpans)), tail: splitRules(rs.natTail)}
	for _, sp := range rs.ServiceSpans {
		a.spans[sp.Key] = record(rs, sp)
	}
	return a
}

// record keeps what is needed of a Service port's part of rs, copied: a
// Renderer reuses rs's buffers.
func record(rs *Ruleset, sp Span) appliedSpan {
	return appliedSpan{sum: sp.sum, dispatch: dispatchLines(rs, sp), chains: slices.Clone(rs.natChains[sp.ChainsFrom:sp.ChainsTo])}
}

// dispatchLines are a Service port's lines in each shared buffer.
func dispatchLines(rs *Ruleset, sp Span) [3][]string {
	var out [3][]string
	for k, r := range sp.Dispatch {
		if r[1] > r[0] {
			out[k] = splitRules(rs.shared[k][r[0]:r[1]])
		}
	}
	return out
}

// splitRules splits rules, one a line.
func splitRules(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// ComposePartial returns the transactions that take the kernel from prev
// (what the last sync applied) to rs. Only the chains of Service ports that
// changed or are new are rewritten, and only their lines in the shared
// chains are edited (-D the old, -I or -A the new); chains of removed Service
// ports and endpoints are deleted. Up to perChunk changed Service ports go in
// one transaction with the edits; more are chunked, whole Services each,
// and the edits come last. No transactions are returned when nothing
// changed. It trusts prev: full syncs and the canary monitor catch outside
// changes. next is what the kernel holds once the transactions are applied,
// built from the fingerprints computed here (Record would compute them
// again).
func ComposePartial(rs *Ruleset, prev *Applied, perChunk int) (txs [][]byte, next *Applied) {
	if perChunk <= 0 {
		perChunk = DefaultChunkServices
	}
	next = &Applied{spans: make(map[string]appliedSpan, len(rs.ServiceSpans)), tail: splitRules(rs.natTail)}
	var changed []Span
	var edits [3][]string
	var stale []string
	for _, sp := range rs.ServiceSpans {
		old, known := prev.spans[sp.Key]
		if known && old.sum == sp.sum {
			next.spans[sp.Key] = old
			continue
		}
		changed = append(changed, sp)
		cur := record(rs, sp)
		next.spans[sp.Key] = cur
		edits = addEdits(edits, old.dispatch, cur.dispatch)
		stale = appendMissing(stale, old.chains, cur.chains)
	}
	var removed []string
	for key := range prev.spans {
		if _, ok := next.spans[key]; !ok {
			removed = append(removed, key)
		}
	}
	slices.Sort(removed) // deterministic output
	for _, key := range removed {
		edits = addEdits(edits, prev.spans[key].dispatch, [3][]string{})
		stale = append(stale, prev.spans[key].chains...)
	}
	slices.Sort(stale)
	// The node's own lines change with its NodePort addresses: deleted
	// and appended again, so that they stay last.
	var tail []string
	if !slices.Equal(prev.tail, next.tail) {
		for _, l := range prev.tail {
			tail = append(tail, "-D"+strings.TrimPrefix(l, "-A"))
		}
		tail = append(tail, next.tail...)
	}
	if len(changed) == 0 && len(stale) == 0 && len(tail)+len(edits[0])+len(edits[1])+len(edits[2]) == 0 {
		return nil, next
	}
	chainsOf := func(spans []Span) ([]string, []byte) {
		var chains []string
		var rules []byte
		for _, sp := range spans {
			chains = append(chains, rs.natChains[sp.ChainsFrom:sp.ChainsTo]...)
			rules = rs.portRules(rules, []Span{sp})
		}
		return chains, rules
	}
	var out [][]byte
	var last []Span
	if len(changed) <= perChunk {
		last = changed
	} else {
		for i := 0; i < len(changed); i += perChunk {
			chains, rules := chainsOf(changed[i:min(i+perChunk, len(changed))])
			out = append(out, natTransaction(chains, rules))
		}
	}
	chains, rules := chainsOf(last)
	b := append([]byte("*nat\n"), declare(append(chains, stale...))...)
	b = append(b, rules...)
	for _, e := range append(append(edits[0], edits[1]...), tail...) {
		b = append(append(b, e...), '\n')
	}
	for _, c := range stale {
		b = append(append(append(b, "-X "...), c...), '\n')
	}
	b = append(b, "COMMIT\n"...)
	if len(edits[2]) > 0 {
		b = append(b, "*filter\n"...)
		for _, e := range edits[2] {
			b = append(append(b, e...), '\n')
		}
		b = append(b, "COMMIT\n"...)
	}
	return append(out, b), next
}

// appendMissing appends the names in old that are not in cur.
func appendMissing(dst, old, cur []string) []string {
	if len(old)*len(cur) < 4096 {
		for _, c := range old {
			if !slices.Contains(cur, c) {
				dst = append(dst, c)
			}
		}
		return dst
	}
	in := make(map[string]bool, len(cur))
	for _, c := range cur {
		in[c] = true
	}
	for _, c := range old {
		if !in[c] {
			dst = append(dst, c)
		}
	}
	return dst
}

// addEdits turns a Service port's old and new lines in the shared chains
// into -D and -I/-A edits, none when they are the same. New nat dispatch
// lines are inserted at the top, so the NodePort jump stays last: last line
// first, so that the Service's lines keep their order (a localhost
// NodePort's counted rule must come before its plain one).
func addEdits(edits [3][]string, old, cur [3][]string) [3][]string {
	for k := range old {
		if slices.Equal(old[k], cur[k]) {
			continue
		}
		for _, l := range old[k] {
			edits[k] = append(edits[k], "-D"+strings.TrimPrefix(l, "-A"))
		}
		if sharedTables[k] != "nat" {
			edits[k] = append(edits[k], cur[k]...)
			continue
		}
		for _, l := range slices.Backward(cur[k]) {
			chain, rest, _ := strings.Cut(strings.TrimPrefix(l, "-A "), " ")
			edits[k] = append(edits[k], "-I "+chain+" 1 "+rest)
		}
	}
	return edits
}

func declare(chains []string) []byte {
	var b []byte
	for _, c := range chains {
		b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
	}
	return b
}

// natTransaction declares and fills nat chains in one transaction.
func natTransaction(chains []string, rules ...[]byte) []byte {
	b := []byte("*nat\n")
	for _, c := range chains {
		b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
	}
	for _, r := range rules {
		b = append(b, r...)
	}
	return append(b, "COMMIT\n"...)
}

// wanted are all chains rs declares, per table.
func wanted(rs *Ruleset) map[string]map[string]bool {
	w := map[string]map[string]bool{}
	for _, t := range rs.Tables {
		w[t.Name] = make(map[string]bool, len(t.Chains))
		for _, c := range t.Chains {
			w[t.Name][c] = true
		}
	}
	return w
}

// composeTables writes one transaction: tables' chains declared and
// filled, the jumps missing says are missing inserted, and the stale chains
// (per table) flushed and deleted.
func composeTables(tables []TableRules, stale map[string][]string, missing func(jump) bool) []byte {
	total := 4096
	for _, t := range tables {
		// A declaration is ":NAME - [0:0]", a deletion "-X NAME".
		total += t.size() + 48*(len(t.Chains)+len(stale[t.Name]))
	}
	b := make([]byte, 0, total)
	for _, t := range tables {
		b = append(append(append(b, '*'), t.Name...), '\n')
		for _, c := range t.Chains {
			b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
		}
		for _, c := range stale[t.Name] {
			b = append(append(append(b, ':'), c...), " - [0:0]\n"...)
		}
		for _, r := range t.Rules {
			b = append(b, r...)
		}
		for _, j := range jumps {
			if j.table == t.Name && missing(j) {
				b = append(b, "-I "+j.from+" "+strings.Join(j.args(), " ")+"\n"...)
			}
		}
		for _, c := range stale[t.Name] {
			b = append(append(append(b, "-X "...), c...), '\n')
		}
		b = append(b, "COMMIT\n"...)
	}
	return b
}

func isPerService(name string) bool {
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// cleanupChunk is how many chains one cleanup transaction flushes or
// deletes: a --noflush restore costs more than linearly in its size, so a
// node with 10k Services is cleaned in many small restores, not one.
const cleanupChunk = 2500

// CleanupInput returns the restore inputs that remove everything svcproxy
// installed in cur, to run in order: its jumps from built-in chains, then
// its chains flushed, then deleted (a chain can go once nothing jumps to
// it). It returns nil when there is nothing to remove.
func CleanupInput(cur *netfilter.Ruleset) [][]byte {
	var jumps, flushes, deletes [][]byte
	for _, t := range cur.Tables {
		var owned []string
		var b bytes.Buffer
		for _, c := range t.Chains {
			if isOwnedChain(c.Name) && c.Policy == "-" {
				owned = append(owned, c.Name)
				continue
			}
			for _, r := range c.Rules {
				if isOwnedChain(r.Target) {
					b.WriteString("-D " + c.Name + " " + r.Text + "\n")
				}
			}
		}
		if b.Len() > 0 {
			jumps = append(jumps, []byte("*"+t.Name+"\n"+b.String()+"COMMIT\n"))
		}
		for from := 0; from < len(owned); from += cleanupChunk {
			part := owned[from:min(from+cleanupChunk, len(owned))]
			var f, d bytes.Buffer
			f.WriteString("*" + t.Name + "\n")
			d.WriteString("*" + t.Name + "\n")
			for _, c := range part {
				f.WriteString(":" + c + " - [0:0]\n")
				d.WriteString("-X " + c + "\n")
			}
			f.WriteString("COMMIT\n")
			d.WriteString("COMMIT\n")
			flushes, deletes = append(flushes, f.Bytes()), append(deletes, d.Bytes())
		}
	}
	return append(append(jumps, flushes...), deletes...)
}

package model

// presence follows which objects one input list after another holds.
// Sources keep an object in its place in their lists while it stays (see
// source.Ordered), so comparing a list with the last one place by place
// finds what came and went: at 10k objects a pass of pointer compares, not
// a map of every object for every snapshot.
type presence[T comparable] struct {
	last []T
	// count is how many times each object of the last list is in it
	// (sources may repeat one).
	count map[T]int
}

// update makes in the last list and returns the objects it holds that the
// last one did not (came) and those of the last one it no longer holds
// (went), each once.
func (p *presence[T]) update(in []T) (came, went []T) {
	if p.count == nil {
		p.count = make(map[T]int, len(in))
	}
	n := min(len(in), len(p.last))
	var plus, minus []T
	for i := range n {
		if in[i] != p.last[i] {
			plus, minus = append(plus, in[i]), append(minus, p.last[i])
		}
	}
	plus, minus = append(plus, in[n:]...), append(minus, p.last[n:]...)
	// Additions first: an object that only moved goes up before it goes
	// down, and so neither comes nor goes.
	for _, o := range plus {
		p.count[o]++
		if p.count[o] == 1 {
			came = append(came, o)
		}
	}
	for _, o := range minus {
		if p.count[o]--; p.count[o] == 0 {
			delete(p.count, o)
			went = append(went, o)
		}
	}
	p.last = in
	return came, went
}

// distinct is how many different objects the last list holds.
func (p *presence[T]) distinct() int { return len(p.count) }

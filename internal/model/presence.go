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
	minus, plus := unmatched(p.last, in)
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

// unmatched returns the objects of prev and of cur that are not in the
// other list at the same place: a pass of compares when sources keep
// objects in their places.
func unmatched[T comparable](prev, cur []T) (p, c []T) {
	both := min(len(prev), len(cur))
	for i := range both {
		if prev[i] != cur[i] {
			p, c = append(p, prev[i]), append(c, cur[i])
		}
	}
	return append(p, prev[both:]...), append(c, cur[both:]...)
}

// distinct is how many different objects the last list holds.
func (p *presence[T]) distinct() int { return len(p.count) }

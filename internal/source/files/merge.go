package files

import (
	"slices"

	"github.com/svcproxy/svcproxy/internal/model"
)

// merged is the last merge, kept so that a file edited in place costs the
// objects it holds rather than a merge of the whole folder (at 100k
// Services, 160 ms of maps of every object for each endpoint change).
type merged struct {
	names []string
	in    model.Input
	errs  []error
	// at is where each file's Services and EndpointSlices are in in (-1:
	// left out, defined in an earlier file).
	at map[string]places
}

type places struct{ services, slices []int }

// patch returns the last merge with the edited files' objects in place of
// their old ones, when that is what a merge would give: the same files, and
// each edited file without errors, defining the same objects (kind, name,
// and for a slice its Service) in the same order, and no Nodes or
// ServiceCIDRs. ok is false otherwise.
func (m *merged) patch(names []string, old, cur map[string]fileEntry, edited []string) (in model.Input, errs []error, ok bool) {
	if m.at == nil || !slices.Equal(names, m.names) {
		return model.Input{}, nil, false
	}
	for _, p := range edited {
		o, c := old[p], cur[p]
		if len(o.errs)+len(c.errs)+len(o.nodes)+len(c.nodes)+len(o.cidrs)+len(c.cidrs) > 0 ||
			!slices.EqualFunc(o.services, c.services, func(a, b *model.Service) bool { return a.Key() == b.Key() }) ||
			!slices.EqualFunc(o.slices, c.slices, func(a, b *model.EndpointSlice) bool {
				return a.Key() == b.Key() && a.ServiceKey() == b.ServiceKey()
			}) {
			return model.Input{}, nil, false
		}
	}
	in = m.in
	in.Services, in.EndpointSlices = slices.Clone(in.Services), slices.Clone(in.EndpointSlices)
	for _, p := range edited {
		at := m.at[p]
		for i, s := range cur[p].services {
			if j := at.services[i]; j >= 0 {
				in.Services[j] = s
			}
		}
		for i, s := range cur[p].slices {
			if j := at.slices[i]; j >= 0 {
				in.EndpointSlices[j] = s
			}
		}
	}
	m.in = in
	return in, slices.Clip(m.errs), true
}

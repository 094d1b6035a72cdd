package model

import (
	"reflect"
	"time"
)

// ChangeSet is what changed between two snapshots.
type ChangeSet struct {
	Services, EndpointSlices int
	// Triggers are the trigger times (endpoints.kubernetes.io/last-change-
	// trigger-time) of the EndpointSlices that changed, for measuring
	// network programming latency.
	Triggers []Trigger
}

// Trigger is when a change to an EndpointSlice of one IP family happened.
type Trigger struct {
	At time.Time
	V6 bool
	// Slice is the EndpointSlice's key, for logs.
	Slice string
}

// Changes compares two snapshots object by object: by resourceVersion when
// the API server set one, by content otherwise (manifest files).
func Changes(prev, cur Input) ChangeSet {
	var cs ChangeSet
	cs.Services = countChanged(prev.Services, cur.Services, nil)
	cs.EndpointSlices = countChanged(prev.EndpointSlices, cur.EndpointSlices, func(s *EndpointSlice) {
		if !s.trigger.IsZero() {
			cs.Triggers = append(cs.Triggers, Trigger{At: s.trigger, V6: len(s.keys) > 0 && s.keys[0].v6, Slice: s.Key()})
		}
	})
	return cs
}

// lastChangeTriggerTime is set by the EndpointSlice controller to when
// the change that caused the slice update happened.
const lastChangeTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"

// object is what Changes needs of Services and EndpointSlices.
type object interface {
	comparable
	Key() string
	version() string
}

func (s *Service) version() string       { return s.ResourceVersion }
func (s *EndpointSlice) version() string { return s.ResourceVersion }

func countChanged[T object](prev, cur []T, changed func(T)) int {
	// Sources hand out an unchanged object as the same pointer, mostly in
	// its place (see presence): those are passed over place by place, and
	// the rest matched by pointer, without building keys for them.
	prev, cur = unmatched(prev, cur)
	same := make(map[T]bool, len(prev))
	for _, o := range prev {
		same[o] = true
	}
	var c []T
	for _, o := range cur {
		if same[o] {
			delete(same, o)
			continue
		}
		c = append(c, o)
	}
	// same now holds the previous objects no current one is: changed or
	// removed ones.
	old := make(map[string]T, len(same))
	for o := range same {
		old[o.Key()] = o
	}
	n := 0
	for _, o := range c {
		k := o.Key()
		p, ok := old[k]
		delete(old, k)
		switch {
		case !ok:
		case o.version() != "" && o.version() == p.version():
			continue
		case o.version() == "" && reflect.DeepEqual(o, p):
			continue
		}
		n++
		if changed != nil {
			changed(o)
		}
	}
	return n + len(old) // removed objects
}

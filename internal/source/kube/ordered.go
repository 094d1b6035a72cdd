package kube

import (
	"slices"
	"sync"

	"k8s.io/client-go/tools/cache"
)

// ordered keeps one informer's objects in a list that changes only where
// they do: an updated object takes its old one's place, a new one goes at
// the end, and a deleted one's place goes to the last. The model compares
// one snapshot with the last place by place, so that at 10k Services an
// endpoint change costs a pass of pointer compares rather than a listing
// of the informer cache in map order and a map of every object.
type ordered[T any] struct {
	mu    sync.Mutex
	items []T
	keys  []string // items[i]'s key
	at    map[string]int
}

// handler keeps o up to date with an informer whose cache holds what read
// returns for it (objects of other types are left out), calling changed
// after each event.
func (o *ordered[T]) handler(read func(any) (T, bool), changed func()) cache.ResourceEventHandler {
	set := func(obj any) {
		if v, ok := read(obj); ok {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				o.set(key, v)
			}
		}
		changed()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				o.remove(key)
			}
			changed()
		},
	}
}

func (o *ordered[T]) set(key string, v T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.at == nil {
		o.at = map[string]int{}
	}
	if i, ok := o.at[key]; ok {
		o.items[i] = v
		return
	}
	o.at[key] = len(o.items)
	o.items, o.keys = append(o.items, v), append(o.keys, key)
}

func (o *ordered[T]) remove(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, ok := o.at[key]
	if !ok {
		return
	}
	delete(o.at, key)
	last := len(o.items) - 1
	if i != last {
		o.items[i], o.keys[i] = o.items[last], o.keys[last]
		o.at[o.keys[i]] = i
	}
	var zero T
	o.items[last] = zero
	o.items, o.keys = o.items[:last], o.keys[:last]
}

// list is a copy of the objects, for a snapshot: the model keeps it.
func (o *ordered[T]) list() []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.items)
}

package kube

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// defaultListPageSize is how many objects one page of a list holds. Not
// client-go's 500: for every page the API server's cache (v1.37) gathers
// all the objects after where the page starts, so a list costs objects² /
// page size. At 100k Services × 10 endpoints, pages of 500 took 80 s to
// list, pages of 10,000 3.4 s; such a page of EndpointSlices is about 30 MB
// of API objects at once.
const defaultListPageSize = 10000

// pagedList lists and watches Services or EndpointSlices for an informer.
// A list is asked for in pages, and each page is read into the model's
// objects (read) before the next is asked for: the proxy never holds the
// whole list as API objects. At 100k Services × 10 endpoints an unpaged
// list peaked at 1,060 MiB RSS, a paged one at 730 MiB.
//
// It also tells the reflector not to stream the list instead
// (WatchListClient): streamed, the same 100k took four times as long on a
// busy two-core node (14.6 s against 3.4 s), the API server sending each
// object as its own event.
type pagedList struct {
	c        rest.Interface
	resource string
	tweak    func(*metav1.ListOptions)
	// read turns an API object into the model's (Source.read).
	read     func(any) (any, error)
	pageSize int64
	watch    *cache.ListWatch
}

func newPagedList(c rest.Interface, resource string, tweak func(*metav1.ListOptions), read func(any) (any, error), pageSize int64) *pagedList {
	if pageSize <= 0 {
		pageSize = defaultListPageSize
	}
	return &pagedList{c: c, resource: resource, tweak: tweak, read: read, pageSize: pageSize,
		watch: listWatch(c, resource, tweak)}
}

// ListWithContext lists every page. The result holds the model's objects
// (which the informer's transform then passes over) and the resource
// version of the last page, which the watch starts from.
func (l *pagedList) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	l.tweak(&opts)
	opts.Limit = l.pageSize
	// Always a consistent list, whatever version the reflector asks for:
	// one "not older than" a version is what it wants, and a consistent
	// one is that. It is paged, and served from the API server's cache
	// since v1.31 (its continuations since v1.34). Asked with a limit,
	// "any version" ("0") would come whole, and a version the reflector
	// saw would be an exact match: after an API server restart that old
	// state again, from etcd, and a watch from it refused.
	opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	var items []runtime.RawExtension
	for page := 1; ; page++ {
		obj, err := l.c.Get().Resource(l.resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Get()
		if err != nil {
			return nil, fmt.Errorf("list %s, page %d: %w", l.resource, page, err)
		}
		lm, err := meta.ListAccessor(obj)
		if err != nil {
			return nil, fmt.Errorf("list %s, page %d: %w", l.resource, page, err)
		}
		objs, err := meta.ExtractList(obj)
		if err != nil {
			return nil, fmt.Errorf("list %s, page %d: %w", l.resource, page, err)
		}
		if items == nil {
			// The first page says roughly how many there are.
			n := len(objs)
			if rest := lm.GetRemainingItemCount(); rest != nil {
				n += int(*rest)
			}
			items = make([]runtime.RawExtension, 0, n)
		}
		for _, o := range objs {
			m, err := l.read(o)
			if err != nil {
				return nil, fmt.Errorf("list %s, page %d: %w", l.resource, page, err)
			}
			ro, ok := m.(runtime.Object)
			if !ok {
				return nil, fmt.Errorf("list %s, page %d: read as %T, not an object the informer can hold", l.resource, page, m)
			}
			items = append(items, runtime.RawExtension{Object: ro})
		}
		if lm.GetContinue() == "" {
			return &metav1.List{ListMeta: metav1.ListMeta{ResourceVersion: lm.GetResourceVersion()}, Items: items}, nil
		}
		// A continuation carries its own resource version; the API
		// server refuses one with another.
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = lm.GetContinue(), "", ""
	}
}

func (l *pagedList) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.watch.WatchWithContext(ctx, opts)
}

// IsWatchListSemanticsUnSupported keeps the reflector to lists (see
// pagedList).
func (l *pagedList) IsWatchListSemanticsUnSupported() bool { return true }

// List and Watch complete cache.ListerWatcher, which informers are made
// from; their reflectors call the forms with a context.
func (l *pagedList) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *pagedList) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

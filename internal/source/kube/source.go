// Package kube is the cluster source: client-go shared informers on
// Services, EndpointSlices, ServiceCIDRs and this node's Node object (through a client for
// just those, see Client), turned into the same snapshots the files source
// produces, and Events. client-go types stop here.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/source"
)

// Label selectors as upstream kube-proxy uses them: Services owned by another
// proxy and headless Services are never even listed.
const (
	serviceSelector = "!" + model.ServiceProxyNameLabel + ",!service.kubernetes.io/headless"
	sliceSelector   = "!" + model.ServiceProxyNameLabel + ",!service.kubernetes.io/headless," + discoveryv1.LabelServiceName
)

// Origin is where the objects of this source come from, as their errors
// say it.
const Origin = "API server"

// Source watches the API server.
type Source struct {
	Client   *Client
	NodeName string
	Log      *slog.Logger
	// Settle coalesces bursts of events into one snapshot.
	Settle time.Duration
	// ListPageSize is how many Services or EndpointSlices one page of a
	// list holds (0: defaultListPageSize).
	ListPageSize int64

	mu       sync.Mutex
	services cache.Store
	// names shares the node names of the endpoints the cache holds.
	names model.Interner
}

// Events records Kubernetes Events as "svcproxy" from node, on the
// Services of this source's cache (a source.EventSource).
func (s *Source) Events(node string) source.Events { return NewEvents(s.Client, node, s.ServiceUID) }

// ServiceUID returns a Service's UID from the informer cache ("" if unknown).
func (s *Source) ServiceUID(namespace, name string) types.UID {
	s.mu.Lock()
	store := s.services
	s.mu.Unlock()
	if store == nil {
		return ""
	}
	if obj, ok, err := store.GetByKey(namespace + "/" + name); err == nil && ok {
		if svc, ok := obj.(cachedService); ok {
			return types.UID(svc.UID)
		}
	}
	return ""
}

// Run calls onChange with a full snapshot once the caches have synced, and
// after every change, until ctx ends. Before the first sync nothing is
// delivered, so the rules in the kernel are left alone. When the API server
// goes away the informers keep retrying and the last snapshot stays in force;
// when it comes back they catch up and a new snapshot follows.
func (s *Source) Run(ctx context.Context, onChange func(model.Input, []error)) error {
	svcs := cache.NewSharedIndexInformer(newPagedList(s.Client.core, "services",
		func(o *metav1.ListOptions) { o.LabelSelector = serviceSelector }, s.read, s.ListPageSize), &corev1.Service{}, 0, nil)
	slices := cache.NewSharedIndexInformer(newPagedList(s.Client.discovery, "endpointslices",
		func(o *metav1.ListOptions) { o.LabelSelector = sliceSelector }, s.read, s.ListPageSize), &discoveryv1.EndpointSlice{}, 0, nil)
	nodes := cache.NewSharedIndexInformer(listWatch(s.Client.core, "nodes",
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.NodeName).String()
		}),
		&corev1.Node{}, 0, nil)
	informers := []cache.SharedIndexInformer{svcs, slices, nodes}
	resources := []string{"services", "endpointslices", "nodes"}
	synced := []cache.InformerSynced{svcs.HasSynced, slices.HasSynced, nodes.HasSynced}
	var cidrs cache.SharedIndexInformer
	if s.serviceCIDRsServed(ctx) {
		cidrs = cache.NewSharedIndexInformer(listWatch(s.Client.networking, "servicecidrs", func(*metav1.ListOptions) {}), &networkingv1.ServiceCIDR{}, 0, nil)
		informers, synced = append(informers, cidrs), append(synced, cidrs.HasSynced)
		resources = append(resources, "servicecidrs")
	}
	errs := &watchErrors{log: s.Log, every: 30 * time.Second}

	dirty := make(chan struct{}, 1)
	poke := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	var services ordered[*model.Service]
	var endpointSlices ordered[*model.EndpointSlice]
	handlers := map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		svcs:   services.handler(serviceOf, poke),
		slices: endpointSlices.handler(sliceOf, poke),
	}
	for i, inf := range informers {
		handler, ok := handlers[inf]
		if !ok {
			handler = cache.ResourceEventHandlerFuncs{
				AddFunc:    func(any) { poke() },
				UpdateFunc: func(any, any) { poke() },
				DeleteFunc: func(any) { poke() },
			}
		}
		if err := inf.SetTransform(s.read); err != nil {
			return fmt.Errorf("watch the API server: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(errs.handler(resources[i])); err != nil {
			return fmt.Errorf("watch the API server: %w", err)
		}
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch the API server: %w", err)
		}
		// The first snapshot waits for the handlers too: the ordered
		// lists are theirs, and a snapshot missing Services would take
		// their rules out of the kernel.
		synced = append(synced, reg.HasSynced)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ictx, stop := context.WithCancel(ctx)
	defer stop()
	for _, inf := range informers {
		wg.Go(func() { inf.RunWithContext(ictx) })
	}
	s.Log.Info("waiting for the API server caches to sync; the rules in the kernel are left as they are until then")
	if !s.waitForSync(ctx, errs, synced) {
		return ctx.Err()
	}
	s.Log.Info("API server caches synced", "afterErrors", errs.count())
	s.mu.Lock()
	s.services = svcs.GetStore()
	s.mu.Unlock()
	poke()

	settle := s.Settle
	if settle == 0 {
		// Short: an endpoint change waits this long before the model is
		// built. Events during a build are coalesced into the next one
		// anyway, and syncs by minSyncPeriod.
		settle = 5 * time.Millisecond
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(settle):
		}
		in := model.Input{Services: services.list(), EndpointSlices: endpointSlices.list()}
		if o, ok, err := nodes.GetStore().GetByKey(s.NodeName); err == nil && ok {
			if n, ok := o.(*corev1.Node); ok {
				in.Nodes = []*corev1.Node{n}
			}
		}
		if cidrs != nil {
			for _, o := range cidrs.GetStore().List() {
				if c, ok := o.(cachedServiceCIDR); ok {
					in.ServiceCIDRs = append(in.ServiceCIDRs, c.ServiceCIDR)
				}
			}
		}
		onChange(in, nil)
	}
}

// waitForSync waits for the informers' first lists. While it waits, it asks
// the API server itself now and then, so that a refused connection (which
// the informers retry in silence) is logged; once synced, it stops asking.
func (s *Source) waitForSync(ctx context.Context, errs *watchErrors, synced []cache.InformerSynced) bool {
	done := make(chan bool, 1)
	go func() { done <- cache.WaitForCacheSync(ctx.Done(), synced...) }()
	probe := time.NewTimer(2 * time.Second)
	defer probe.Stop()
	for {
		select {
		case ok := <-done:
			return ok
		case <-probe.C:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.Client.core.Get().Resource("services").Param("limit", "1").Do(pctx).Error()
			cancel()
			if err != nil && ctx.Err() == nil {
				errs.report("services", err)
			}
			probe.Reset(errs.every)
		}
	}
}

// serviceCIDRsServed reports whether ServiceCIDRs can be watched. An API
// server before v1.33 may not serve them, and an RBAC role written for
// an older svcproxy may not grant them: then svcproxy goes on without
// (nftables mode then does not drop traffic to unallocated cluster IPs),
// rather than never syncing. Any other answer (the API server not up yet)
// is left to the informer, which retries.
func (s *Source) serviceCIDRsServed(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.Client.networking.Get().Resource("servicecidrs").Param("limit", "1").Do(ctx).Error()
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		s.Log.Warn("not watching ServiceCIDRs: traffic to unallocated cluster IPs is not dropped in nftables mode", "err", err)
		return false
	}
	return true
}

// read turns a Service or EndpointSlice into what the model keeps of it
// (model.NewService, model.NewEndpointSlice) before the informer caches it:
// at 10k Services the API objects would be most of the proxy's memory.
// Anything else (this node's Node object, or an object read already) is
// kept as it is.
func (s *Source) read(obj any) (any, error) {
	// Errors name the API server as where their object came from.
	switch o := obj.(type) {
	case *corev1.Service:
		svc := model.NewService(o)
		svc.Source = Origin
		return cachedService{svc}, nil
	case *discoveryv1.EndpointSlice:
		es := model.NewEndpointSlice(o, s.NodeName, &s.names)
		es.Source = Origin
		return cachedSlice{es}, nil
	case *networkingv1.ServiceCIDR:
		c := model.NewServiceCIDR(o)
		c.Source = Origin
		return cachedServiceCIDR{c}, nil
	}
	return obj, nil
}

// serviceOf and sliceOf are the model's objects the informer caches hold.
func serviceOf(o any) (*model.Service, bool) {
	c, ok := o.(cachedService)
	return c.Service, ok
}

func sliceOf(o any) (*model.EndpointSlice, bool) {
	c, ok := o.(cachedSlice)
	return c.EndpointSlice, ok
}

// cachedService and cachedSlice are how the informer caches hold the model's
// objects: the caches key and version objects through their metadata.
type cachedService struct{ *model.Service }

// GetObjectKind and DeepCopyObject make the cached objects runtime.Objects,
// as lists hand them to the informer (pagedList). A copy is the object
// itself: the model's objects are never changed once read.
func (c cachedService) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (c cachedService) DeepCopyObject() runtime.Object   { return c }
func (c cachedSlice) GetObjectKind() schema.ObjectKind   { return schema.EmptyObjectKind }
func (c cachedSlice) DeepCopyObject() runtime.Object     { return c }

func (c cachedService) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name, ResourceVersion: c.ResourceVersion, UID: types.UID(c.UID)}
}

type cachedSlice struct{ *model.EndpointSlice }

func (c cachedSlice) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name, ResourceVersion: c.ResourceVersion}
}

type cachedServiceCIDR struct{ *model.ServiceCIDR }

func (c cachedServiceCIDR) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: c.Name, ResourceVersion: c.ResourceVersion}
}

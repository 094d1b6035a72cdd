package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
)

// Client is what svcproxy asks of the API server: lists and watches of
// Services, EndpointSlices, ServiceCIDRs and its Node, and Events. It is
// three REST clients (core/v1, discovery.k8s.io/v1, networking.k8s.io/v1)
// over one connection, not client-go's
// generated clientset: that registers every API type of every group when
// the program starts, which costs each node about 5 MB of memory, in
// standalone mode too.
type Client struct {
	core, discovery, networking rest.Interface
}

// scheme knows the types svcproxy reads and writes.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(discoveryv1.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
}

// NewClient connects as rc says (QPS, Burst and ContentType included).
func NewClient(rc *rest.Config) (*Client, error) {
	cfg := *rc
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("API client: burst must be above 0 when QPS is")
		}
		// One limit for both groups, as one clientset would have.
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	group := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := cfg
		c.GroupVersion, c.APIPath = &gv, apiPath
		c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(&c, hc)
		if err != nil {
			return nil, fmt.Errorf("API client for %s: %w", gv, err)
		}
		return rc, nil
	}
	var cl Client
	if cl.core, err = group(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if cl.discovery, err = group(discoveryv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if cl.networking, err = group(networkingv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return &cl, nil
}

// listWatch lists and watches one resource in every namespace, with the
// options tweak sets (selectors).
func listWatch(c rest.Interface, resource string, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	return cache.NewFilteredListWatchFromClient(c, resource, metav1.NamespaceAll, tweak)
}

// The Events API, as record.EventSink.
type eventSink struct{ c rest.Interface }

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(context.TODO()).Into(out)
	return out, err
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(context.TODO()).Into(out)
	return out, err
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).Body(data).Do(context.TODO()).Into(out)
	return out, err
}

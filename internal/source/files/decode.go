// Package files is the standalone source: a folder of Service and
// EndpointSlice manifests (and the Node and ServiceCIDR objects that say
// what the API server would), read the way `kubectl apply -f DIR` reads them and
// watched for changes.
package files

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Objects are what one file contributes.
type Objects struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Nodes give a node's zone (for topology hints) in standalone mode.
	Nodes []*corev1.Node
	// ServiceCIDRs give the ranges cluster IPs come from.
	ServiceCIDRs []*networkingv1.ServiceCIDR
	// Ignored counts objects of kinds the proxy does not use (Deployments,
	// ConfigMaps, ...), which a folder for kubectl apply may well contain.
	Ignored int
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// Decode reads every object of one manifest file: YAML with any number of
// documents, JSON, and List objects. An object that cannot be used is
// reported by position and name, and the file's other objects are kept.
func Decode(path string, data []byte) (Objects, []error) {
	var objs Objects
	var errs []error
	if utilyaml.IsJSONBuffer(data[:min(len(data), sniffLen)]) {
		// kubectl's reader: a JSON stream, or YAML that opens with a brace
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), sniffLen)
		for doc := 1; ; doc++ {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, syntaxError(path, doc, err))
				// The decoder cannot find the next document after a syntax error.
				break
			}
			errs = append(errs, decodeDocument(path, doc, raw, &objs)...)
		}
		return objs, errs
	}
	texts, splitErr := splitDocuments(data)
	for i, text := range texts {
		doc := i + 1
		raw, ok := plainJSON(text)
		if !ok {
			var full json.RawMessage
			if err := yaml.Unmarshal(text, &full); err != nil {
				// Documents are split on their separators: the next one
				// can still be read.
				errs = append(errs, syntaxError(path, doc, err))
				continue
			}
			raw = full
		}
		errs = append(errs, decodeDocument(path, doc, raw, &objs)...)
	}
	if splitErr != nil {
		errs = append(errs, syntaxError(path, len(texts)+1, splitErr))
	}
	return objs, errs
}

// sniffLen is how much of a file kubectl looks at to tell JSON from YAML.
const sniffLen = 4096

func syntaxError(path string, doc int, err error) error {
	return &model.ObjectError{Source: path, Object: fmt.Sprintf("document %d", doc), Err: fmt.Errorf("not valid YAML or JSON: %w", err)}
}

func decodeDocument(path string, doc int, raw []byte, objs *Objects) []error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	return decodeObject(path, fmt.Sprintf("document %d", doc), raw, objs)
}

func decodeObject(path, pos string, raw []byte, objs *Objects) []error {
	var tm typeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return []error{&model.ObjectError{Source: path, Object: pos, Err: fmt.Errorf("not a Kubernetes object: %w", err)}}
	}
	where := pos
	if tm.Metadata.Name != "" {
		where = namespaced(tm.Metadata.Namespace, tm.Metadata.Name)
	}
	fail := func(field string, err error) []error {
		return []error{&model.ObjectError{Source: path, Kind: tm.Kind, Object: where, Field: field, Err: err}}
	}
	switch {
	case tm.Kind == "":
		return fail("kind", fmt.Errorf("required"))
	case tm.APIVersion == "":
		return fail("apiVersion", fmt.Errorf("required"))
	case strings.HasSuffix(tm.Kind, "List") && tm.Items != nil:
		var errs []error
		for i, item := range tm.Items {
			errs = append(errs, decodeObject(path, fmt.Sprintf("%s items[%d]", pos, i), item, objs)...)
		}
		return errs
	case tm.Kind == "Service":
		if tm.APIVersion != "v1" {
			return fail("apiVersion", fmt.Errorf("%q: Service is served as apiVersion v1", tm.APIVersion))
		}
		svc := &corev1.Service{}
		if err := strictUnmarshal(raw, svc); err != nil {
			return fail("", err)
		}
		if svc.Namespace == "" {
			svc.Namespace = corev1.NamespaceDefault
		}
		objs.Services = append(objs.Services, svc)
	case tm.Kind == "EndpointSlice":
		if tm.APIVersion != "discovery.k8s.io/v1" {
			return fail("apiVersion", fmt.Errorf("%q: EndpointSlice is served as apiVersion discovery.k8s.io/v1", tm.APIVersion))
		}
		s := &discoveryv1.EndpointSlice{}
		if err := strictUnmarshal(raw, s); err != nil {
			return fail("", err)
		}
		if s.Namespace == "" {
			s.Namespace = corev1.NamespaceDefault
		}
		objs.EndpointSlices = append(objs.EndpointSlices, s)
	case tm.Kind == "ServiceCIDR" && tm.APIVersion == "networking.k8s.io/v1":
		c := &networkingv1.ServiceCIDR{}
		if err := strictUnmarshal(raw, c); err != nil {
			return fail("", err)
		}
		objs.ServiceCIDRs = append(objs.ServiceCIDRs, c)
	case tm.Kind == "Node" && tm.APIVersion == "v1":
		n := &corev1.Node{}
		if err := strictUnmarshal(raw, n); err != nil {
			return fail("", err)
		}
		objs.Nodes = append(objs.Nodes, n)
	default:
		objs.Ignored++
	}
	return nil
}

// strictUnmarshal refuses unknown and duplicate fields, as kubectl's strict
// validation does: a misspelt "nodeport" must not silently become no port.
func strictUnmarshal(raw []byte, v any) error {
	strict, err := sjson.UnmarshalStrict(raw, v)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

func namespaced(ns, name string) string {
	if ns == "" {
		ns = corev1.NamespaceDefault
	}
	return ns + "/" + name
}

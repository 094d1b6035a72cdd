package files

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/svcproxy/svcproxy/internal/model"
)

// Dir is a folder of manifests, or one manifest file (as kubectl apply -f
// takes either). It re-reads only files that changed.
type Dir struct {
	Path string
	// Node is this node's name: endpoints on it are marked local as they
	// are read (model.NewEndpointSlice).
	Node string
	// Log gets what Run has to say about the folder (nil: nothing).
	Log   *slog.Logger
	cache map[string]fileEntry
	last  merged
	// names shares the node names of the endpoints the files list.
	names model.Interner
}

// fileEntry is what one file holds, as the model keeps it: the API objects
// are dropped once read.
type fileEntry struct {
	modTime  time.Time
	size     int64
	services []*model.Service
	slices   []*model.EndpointSlice
	nodes    []*corev1.Node
	cidrs    []*model.ServiceCIDR
	errs     []error
}

// IsManifest reports whether a file name is one kubectl apply -f DIR reads.
func IsManifest(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

// Load reads the folder. changed reports whether any file was added, edited
// or removed since the last Load. err is set only when the folder itself
// cannot be read; problems with single files or objects are in objErrs.
func (d *Dir) Load() (in model.Input, objErrs []error, changed bool, err error) {
	paths, err := d.files()
	if err != nil {
		return model.Input{}, nil, false, err
	}
	if d.cache == nil {
		d.cache = map[string]fileEntry{}
	}
	seen := map[string]bool{}
	var names []string
	type job struct {
		path string
		fe   fileEntry
	}
	var todo []job
	for _, p := range paths {
		info, err := os.Stat(p) // follows symlinks, as kubectl does
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		names = append(names, p)
		seen[p] = true
		if old, ok := d.cache[p]; ok && old.modTime.Equal(info.ModTime()) && old.size == info.Size() {
			continue
		}
		changed = true
		todo = append(todo, job{path: p, fe: fileEntry{modTime: info.ModTime(), size: info.Size()}})
	}
	// Files are independent: decode them on every core (YAML parsing is
	// most of the cost of a large folder).
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func(j *job) {
			defer func() { <-sem; wg.Done() }()
			data, err := os.ReadFile(j.path)
			if err != nil {
				j.fe.errs = []error{&model.ObjectError{Source: j.path, Object: "file", Err: err}}
				return
			}
			var objs Objects
			objs, j.fe.errs = Decode(j.path, data)
			fe := &j.fe
			fe.services = make([]*model.Service, len(objs.Services))
			for i, o := range objs.Services {
				fe.services[i] = model.NewService(o)
				fe.services[i].Source = j.path
			}
			fe.slices = make([]*model.EndpointSlice, len(objs.EndpointSlices))
			for i, o := range objs.EndpointSlices {
				fe.slices[i] = model.NewEndpointSlice(o, d.Node, &d.names)
				fe.slices[i].Source = j.path
			}
			fe.nodes = objs.Nodes
			for _, o := range objs.ServiceCIDRs {
				c := model.NewServiceCIDR(o)
				c.Source = j.path
				fe.cidrs = append(fe.cidrs, c)
			}
		}(&todo[i])
	}
	wg.Wait()
	old := make(map[string]fileEntry, len(todo))
	var edited []string
	for _, j := range todo {
		if fe, ok := d.cache[j.path]; ok {
			old[j.path] = fe
			edited = append(edited, j.path)
		}
		d.cache[j.path] = j.fe
	}
	for p := range d.cache {
		if !seen[p] {
			delete(d.cache, p)
			changed = true
		}
	}
	slices.Sort(names)
	if len(edited) == len(todo) {
		if in, objErrs, ok := d.last.patch(names, old, d.cache, edited); ok {
			return in, objErrs, changed, nil
		}
	}
	in, objErrs = d.merge(names)
	return in, objErrs, changed, nil
}

// files are the manifests to read: Path itself when it is a file (whatever
// its name), else the folder's manifest files.
func (d *Dir) files() ([]string, error) {
	info, err := os.Stat(d.Path)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	if !info.IsDir() {
		return []string{d.Path}, nil
	}
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("read manifests folder: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || !IsManifest(e.Name()) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out = append(out, filepath.Join(d.Path, e.Name()))
	}
	return out, nil
}

// merge combines the files in name order; an object defined twice keeps its
// first definition and the second is reported.
func (d *Dir) merge(names []string) (model.Input, []error) {
	var nsvc, nslice int
	for _, p := range names {
		fe := d.cache[p]
		nsvc, nslice = nsvc+len(fe.services), nslice+len(fe.slices)
	}
	in := model.Input{Services: make([]*model.Service, 0, nsvc), EndpointSlices: make([]*model.EndpointSlice, 0, nslice)}
	seen := make(map[objectKey]string, nsvc+nslice)
	var errs []error
	at := make(map[string]places, len(names))
	for _, p := range names {
		fe := d.cache[p]
		errs = append(errs, fe.errs...)
		var pl places
		in.Services, pl.services = appendFirst(in.Services, fe.services, "Service", (*model.Service).Key, p, seen, &errs)
		in.EndpointSlices, pl.slices = appendFirst(in.EndpointSlices, fe.slices, "EndpointSlice", (*model.EndpointSlice).Key, p, seen, &errs)
		in.Nodes, _ = appendFirst(in.Nodes, fe.nodes, "Node", (*corev1.Node).GetName, p, seen, &errs)
		in.ServiceCIDRs, _ = appendFirst(in.ServiceCIDRs, fe.cidrs, "ServiceCIDR", (*model.ServiceCIDR).Key, p, seen, &errs)
		at[p] = pl
	}
	errs = append(errs, orphanSlices(in)...)
	d.last = merged{names: names, in: in, errs: errs, at: at}
	return in, errs
}

// orphanSlices warns of EndpointSlices whose Service is in no manifest (a
// typo in the label, or a Service left out): their endpoints serve nothing.
func orphanSlices(in model.Input) []error {
	services := make(map[string]bool, len(in.Services))
	for _, s := range in.Services {
		services[s.Key()] = true
	}
	var errs []error
	for _, es := range in.EndpointSlices {
		if svc := es.ServiceKey(); svc != "" && !services[svc] {
			errs = append(errs, &model.ObjectError{Source: es.Source, Kind: "EndpointSlice", Object: es.Key(),
				Field: "metadata.labels[" + discoveryv1.LabelServiceName + "]", Warning: true, Kept: true,
				Err: fmt.Errorf("no Service %s in the manifests, so these endpoints serve nothing: add the Service, or correct the label", svc)})
		}
	}
	return errs
}

// objectKey is an object's kind and "namespace/name".
type objectKey struct{ kind, key string }

// appendFirst adds the objects of one file that no earlier file defined,
// recording in seen where each came from, and returns where each object
// went in dst (-1: left out).
func appendFirst[T any](dst, objs []T, kind string, key func(T) string, path string, seen map[objectKey]string, errs *[]error) ([]T, []int) {
	at := make([]int, len(objs))
	for i, o := range objs {
		k := objectKey{kind, key(o)}
		if prev, dup := seen[k]; dup {
			*errs = append(*errs, &model.ObjectError{Source: path, Kind: kind, Object: k.key, Field: "metadata.name", Err: fmt.Errorf("already defined in %s", prev)})
			at[i] = -1
			continue
		}
		seen[k] = path
		at[i] = len(dst)
		dst = append(dst, o)
	}
	return dst, at
}

// Run calls onChange with the folder's contents now and after every change,
// until ctx ends (a source.Source). Filesystem events are coalesced for a
// short while, and the folder is also re-checked periodically in case an
// event was missed (or the folder was replaced as a whole).
func (d *Dir) Run(ctx context.Context, onChange func(model.Input, []error)) error {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in, errs, _, err := d.Load()
	if err != nil {
		return err
	}
	onChange(in, errs)

	n, err := newNotifier(d.Path)
	if err != nil {
		return fmt.Errorf("watch manifests folder: %w", err)
	}
	defer n.close()
	watching := n.watch() == nil

	// A file is read as soon as its writer closes it (or it is moved in,
	// or removed). One written to and not closed is read once the folder
	// has been quiet for a moment, and at the latest a little after its
	// first event, so that a stream of writes still gets read.
	const quiet, settle = 20 * time.Millisecond, 100 * time.Millisecond
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	var pending <-chan time.Time
	var first time.Time
	writing := map[string]bool{} // files written to and not yet closed
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-n.changes:
			if !ok {
				if n.err != nil {
					return fmt.Errorf("watch manifests folder: %w", n.err)
				}
				return nil
			}
			if c.gone {
				// Removed or replaced: watched anew (or by the poll once
				// it is back), and read now.
				watching = n.watch() == nil
				c.done = true
			} else if !IsManifest(c.name) && c.name != d.Path {
				continue
			}
			if c.done {
				delete(writing, c.name)
			} else {
				writing[c.name] = true
			}
			if pending == nil {
				first = time.Now()
			}
			if len(writing) == 0 {
				wait.Reset(0)
			} else {
				wait.Reset(min(quiet, settle-time.Since(first)))
			}
			pending = wait.C
		case <-poll.C:
			if !watching {
				watching = n.watch() == nil
			}
			pending = time.After(0)
		case <-pending:
			pending = nil
			clear(writing)
			in, errs, changed, err := d.Load()
			if err != nil {
				log.Error("manifests folder unreadable; keeping the rules as they are", "path", d.Path, "err", err)
				// The folder may have been replaced; watch it anew when it is back.
				watching = false
				continue
			}
			if changed {
				onChange(in, errs)
			}
		}
	}
}

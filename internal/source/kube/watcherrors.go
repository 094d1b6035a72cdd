package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// watchErrors logs why lists and watches of the API server fail. The
// informers retry for ever on their own, and say nothing of the errors they
// deem passing (a refused connection among them); without this an
// unreachable API server would leave "waiting for the caches to sync" as the
// last word. The first failure and then one every `every` are errors, the
// rest debug lines.
type watchErrors struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	last   time.Time
	failed int
}

func (w *watchErrors) handler(resource string) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			// A watch ended or its resource version expired: the
			// informer relists, as it does every so often anyway.
			w.log.Debug("API server watch ended; relisting", "resource", resource, "err", err)
			return
		}
		w.report(resource, err)
	}
}

// report logs one failure to read resource.
func (w *watchErrors) report(resource string, err error) {
	w.mu.Lock()
	w.failed++
	loud := w.last.IsZero() || time.Since(w.last) >= w.every
	if loud {
		w.last = time.Now()
	}
	failed := w.failed
	w.mu.Unlock()
	level := slog.LevelDebug
	if loud {
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, "cannot list or watch the API server; retrying", "resource", resource, "failures", failed, "err", err)
}

// count is how many failures there have been.
func (w *watchErrors) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// Package serve runs svcproxy's small HTTP endpoints (health, metrics) until
// their context ends.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// ListenAndServe serves handler on addr until ctx ends.
func ListenAndServe(ctx context.Context, addr string, handler http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

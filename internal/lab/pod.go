package lab

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// RemoteAddrHeader carries the client address the pod saw, so a test can
// tell whether traffic was masqueraded.
const RemoteAddrHeader = "X-Remote-Addr"

// serve starts the pod's servers: its sockets live in the pod's namespace.
func (p *Pod) serve() error {
	for _, port := range p.Spec.TCP {
		l, err := p.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("pod %s: listen tcp %d: %w", p.Spec.Name, port, err)
		}
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(RemoteAddrHeader, r.RemoteAddr)
				fmt.Fprintln(w, p.Spec.Name)
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() { _ = srv.Serve(l) }()
		p.servers = append(p.servers, srv)
	}
	for _, port := range p.Spec.UDP {
		c, err := p.ListenPacket("udp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("pod %s: listen udp %d: %w", p.Spec.Name, port, err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := c.ReadFrom(buf)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err != nil {
					continue
				}
				_, _ = c.WriteTo([]byte(p.Spec.Name+" "+from.String()+" "+strconv.Itoa(port)+"\n"), from)
			}
		}()
		p.servers = append(p.servers, c)
	}
	return nil
}

func (p *Pod) stop() {
	for _, s := range p.servers {
		s.Close()
	}
	p.servers = nil
}

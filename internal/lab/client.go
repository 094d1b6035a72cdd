package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Answer is what a pod replied.
type Answer struct {
	Pod string
	// Remote is the client address the pod saw.
	Remote string
	// Port is the port the pod received on (UDP answers only).
	Port int
}

// HTTPGet sends one HTTP request from the namespace (a fresh connection
// each time) and returns which pod answered.
func (n *NS) HTTPGet(ctx context.Context, addr string) (Answer, error) {
	tr := &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return Answer{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Pod: strings.TrimSpace(string(body)), Remote: resp.Header.Get(RemoteAddrHeader)}, nil
}

// UDPAsk sends one datagram from the namespace and returns which pod
// answered. local may fix the source address and port (nil for any).
func (n *NS) UDPAsk(ctx context.Context, addr string, local *net.UDPAddr) (Answer, error) {
	var c net.Conn
	var err error
	if local != nil {
		c, err = n.DialFrom(ctx, "udp", addr, local)
	} else {
		c, err = n.DialContext(ctx, "udp", addr)
	}
	if err != nil {
		return Answer{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("who\n")); err != nil {
		return Answer{}, err
	}
	buf := make([]byte, 512)
	k, err := c.Read(buf)
	if err != nil {
		return Answer{}, fmt.Errorf("udp %s: %w", addr, err)
	}
	f := strings.Fields(string(buf[:k]))
	a := Answer{}
	if len(f) > 0 {
		a.Pod = f[0]
	}
	if len(f) > 1 {
		a.Remote = f[1]
	}
	if len(f) > 2 {
		a.Port, _ = strconv.Atoi(f[2])
	}
	return a, nil
}

// WaitHTTP retries HTTPGet until a pod answers or ctx ends.
func (n *NS) WaitHTTP(ctx context.Context, addr string) (Answer, error) {
	var last error
	for {
		a, err := n.HTTPGet(ctx, addr)
		if err == nil {
			return a, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return Answer{}, fmt.Errorf("no answer from %s from %s: %w", addr, n.Name, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

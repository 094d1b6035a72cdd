package nodeport

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// reservedPortsKey is the sysctl that keeps the kernel from handing ports
// out as ephemeral (client) ports. It is per network namespace.
const reservedPortsKey = "net.ipv4.ip_local_reserved_ports"

// PortSet is a set of TCP/UDP port numbers.
type PortSet struct{ bits [1024]uint64 }

func (s *PortSet) Add(p int)      { s.bits[p>>6] |= 1 << (p & 63) }
func (s *PortSet) Has(p int) bool { return s.bits[p>>6]&(1<<(p&63)) != 0 }

// AddRange adds lo..hi inclusive.
func (s *PortSet) AddRange(lo, hi int) {
	for p := lo; p <= hi; p++ {
		s.Add(p)
	}
}

// Union, Minus return new sets.
func (s PortSet) Union(o PortSet) PortSet {
	for i := range s.bits {
		s.bits[i] |= o.bits[i]
	}
	return s
}

func (s PortSet) Minus(o PortSet) PortSet {
	for i := range s.bits {
		s.bits[i] &^= o.bits[i]
	}
	return s
}

// Empty reports whether the set has no ports.
func (s PortSet) Empty() bool {
	for _, b := range s.bits {
		if b != 0 {
			return false
		}
	}
	return true
}

// String formats the set as the kernel does: "8080,30000-32767".
func (s PortSet) String() string {
	var parts []string
	for p := 0; p < 65536; p++ {
		if !s.Has(p) {
			continue
		}
		q := p
		for q+1 < 65536 && s.Has(q+1) {
			q++
		}
		if q == p {
			parts = append(parts, strconv.Itoa(p))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", p, q))
		}
		p = q
	}
	return strings.Join(parts, ",")
}

// ParsePortSet reads "8080,30000-32767" (the sysctl's format, also
// --service-node-port-range's "30000-32767").
func ParsePortSet(v string) (PortSet, error) {
	var s PortSet
	for _, part := range strings.Split(strings.TrimSpace(v), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := strconv.Atoi(lo)
		h := l
		if err == nil && isRange {
			h, err = strconv.Atoi(hi)
		}
		if err != nil || l < 1 || h > 65535 || l > h {
			return s, fmt.Errorf("%q: not a port or port range (1-65535)", part)
		}
		s.AddRange(l, h)
	}
	return s, nil
}

// Reserver keeps NodePorts in ip_local_reserved_ports. What it added is
// recorded in StateFile so that it removes only that, even after a restart.
type Reserver struct {
	StateFile string
}

type reserveState struct {
	Added string `json:"added"`
}

func (r *Reserver) load() (PortSet, error) {
	b, err := os.ReadFile(r.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return PortSet{}, nil
	}
	if err != nil {
		return PortSet{}, fmt.Errorf("read reservation state: %w", err)
	}
	var st reserveState
	if err := json.Unmarshal(b, &st); err != nil {
		return PortSet{}, fmt.Errorf("reservation state %s: %w", r.StateFile, err)
	}
	return ParsePortSet(st.Added)
}

func (r *Reserver) save(added PortSet) error {
	if added.Empty() {
		if err := os.Remove(r.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(r.StateFile), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(reserveState{Added: added.String()})
	return os.WriteFile(r.StateFile, b, 0o644)
}

// Reserve makes the kernel's reserved ports the operator's own entries plus
// want. It returns the value written.
func (r *Reserver) Reserve(want PortSet) (string, error) {
	cur, err := sysctl.Get(reservedPortsKey)
	if err != nil {
		return "", err
	}
	current, err := ParsePortSet(cur)
	if err != nil {
		return "", fmt.Errorf("%s: %w", reservedPortsKey, err)
	}
	added, err := r.load()
	if err != nil {
		return "", err
	}
	operators := current.Minus(added)
	next := operators.Union(want)
	v := next.String()
	if v != current.String() {
		if _, err := sysctl.Ensure(reservedPortsKey, v); err != nil {
			return "", err
		}
	}
	// Recorded once the kernel has it: a failed write keeps the record of
	// what svcproxy added, so that a second attempt still gives it back.
	if err := r.save(want.Minus(operators)); err != nil {
		return "", fmt.Errorf("save reservation state: %w", err)
	}
	return v, nil
}

// Release removes what svcproxy added, leaving the operator's entries.
func (r *Reserver) Release() (string, error) {
	return r.Reserve(PortSet{})
}

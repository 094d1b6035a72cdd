package agent

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/metrics"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
)

// Observer acts on a finished sync: the rules for st are in the kernel.
// The agent's observers are the network programming latency, stale
// conntrack entries (conntrack.Cleaner), the NodePorts reserved from the
// ephemeral range, the NodePort guard and the health check node ports.
type Observer interface {
	Synced(st *model.State)
}

// programmingLatency measures each EndpointSlice change from its trigger
// time (endpoints.kubernetes.io/last-change-trigger-time) to the sync that
// put it in the kernel: kubeproxy_network_programming_duration_seconds. A
// change counts as in when a state that has it (its own or a later one) is
// synced, not when a sync that started before it ends.
type programmingLatency struct {
	metrics *metrics.Metrics
	log     *slog.Logger
	mu      sync.Mutex
	// pending are the changes not yet in the kernel, with the states that
	// brought them, oldest first.
	pending []stateTriggers
}

type stateTriggers struct {
	st       *model.State
	triggers []model.Trigger
}

// changed notes the trigger times of the changes st brings.
func (p *programmingLatency) changed(st *model.State, triggers []model.Trigger) {
	p.mu.Lock()
	p.pending = append(p.pending, stateTriggers{st, triggers})
	p.mu.Unlock()
}

// Synced observes the changes st and the states before it brought, and
// tells the metrics of the sync.
func (p *programmingLatency) Synced(st *model.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.IndexFunc(p.pending, func(s stateTriggers) bool { return s.st == st }); i >= 0 {
		for _, s := range p.pending[:i+1] {
			for _, t := range s.triggers {
				took := time.Since(t.At)
				p.metrics.ObserveProgramming(dataplane.FamilyName(t.V6), took)
				p.log.Debug("network programming", "endpointSlice", t.Slice, "took", took)
			}
		}
		p.pending = slices.Delete(p.pending, 0, i+1)
	}
	p.metrics.Synced()
}

// noLocalEndpoints counts, per family, the Service ports with a Local
// traffic policy whose endpoints are all on other nodes
// (kubeproxy_sync_proxy_rules_no_local_endpoints_total).
type noLocalEndpoints struct{ metrics *metrics.Metrics }

func (n noLocalEndpoints) Synced(st *model.State) {
	var counts [2][2]int // [v6][internal, external]
	for i := range st.Services {
		sp := st.Services[i]
		if !sp.InternalPolicyLocal && !sp.ExternalPolicyLocal {
			continue // counts nothing: no need to plan it
		}
		p := sp.Plan(st.Node)
		if !p.HasEndpoints {
			continue
		}
		v6 := 0
		if sp.ClusterIP.Is6() {
			v6 = 1
		}
		if p.InternalLocal && !p.HasInternal {
			counts[v6][0]++
		}
		if p.ExternalLocal && !p.HasExternal {
			counts[v6][1]++
		}
	}
	for v6, c := range counts {
		f := dataplane.FamilyName(v6 == 1)
		n.metrics.SetNoLocalEndpoints("Internal", f, c[0])
		n.metrics.SetNoLocalEndpoints("External", f, c[1])
	}
}

// portReservation keeps NodePorts out of the kernel's ephemeral ports
// (--nodeport-reservation): the whole range at start, or the NodePorts in
// use after each sync.
type portReservation struct {
	reserver  *nodeport.Reserver
	mode      string // range, ports or off
	portRange string
	log       *slog.Logger
}

// atStart reserves the range (mode range), or gives back what the last
// run reserved (mode off).
func (r *portReservation) atStart() error {
	var want nodeport.PortSet
	switch r.mode {
	case "ports":
		return nil // reserved after the first sync
	case "range":
		var err error
		if want, err = nodeport.ParsePortSet(r.portRange); err != nil {
			return err
		}
	}
	v, err := r.reserver.Reserve(want)
	if err != nil {
		return err
	}
	r.log.Info("ephemeral ports exclude the NodePorts", "mode", r.mode, "ip_local_reserved_ports", v)
	return nil
}

func (r *portReservation) Synced(st *model.State) {
	if r.mode != "ports" {
		return
	}
	var want nodeport.PortSet
	for _, sp := range st.Services {
		if sp.NodePort != 0 {
			want.Add(int(sp.NodePort))
		}
	}
	if _, err := r.reserver.Reserve(want); err != nil {
		r.log.Error("cannot reserve NodePorts as ephemeral-port exclusions", "err", err)
	}
}

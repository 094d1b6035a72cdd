package agent

import (
	"log/slog"
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
// put it in the kernel: kubeproxy_network_programming_duration_seconds.
type programmingLatency struct {
	metrics *metrics.Metrics
	mu      sync.Mutex
	// pending are the trigger times of changes not yet in the kernel.
	pending []model.Trigger
}

// changed notes the trigger times of a snapshot's changes.
func (p *programmingLatency) changed(triggers []model.Trigger) {
	p.mu.Lock()
	p.pending = append(p.pending, triggers...)
	p.mu.Unlock()
}

// Synced also tells the metrics that the pending changes are in.
func (p *programmingLatency) Synced(*model.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.pending {
		p.metrics.ObserveProgramming(dataplane.FamilyName(t.V6), time.Since(t.At))
	}
	p.pending = nil
	p.metrics.Synced()
}

// noLocalEndpoints counts, per family, the Service ports with a Local
// traffic policy whose endpoints are all on other nodes
// (kubeproxy_sync_proxy_rules_no_local_endpoints_total).
type noLocalEndpoints struct{ metrics *metrics.Metrics }

func (n noLocalEndpoints) Synced(st *model.State) {
	var counts [2][2]int // [v6][internal, external]
	for i := range st.Services {
		sp := &st.Services[i]
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

// Package doctor checks a node for the problems that stop Services from
// working, and says for each what it means and what to do. It reads the node
// through an Env, so the checks are testable without one.
package doctor

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/netfilter"
	"github.com/svcproxy/svcproxy/internal/nodeport"
)

// Status of a finding.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Finding is the result of one check.
type Finding struct {
	Check   string   `json:"check"`
	Status  Status   `json:"status"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
	Meaning string   `json:"meaning,omitempty"`
	Action  string   `json:"action,omitempty"`
}

// Health is what the proxy's /healthz said.
type Health struct {
	StatusCode  int
	LastUpdated time.Time
}

// Env is the node as the checks see it.
type Env interface {
	// Save returns iptables-save output of the backend in use.
	Save() (string, error)
	// BackendSaves returns iptables-save output per backend ("legacy",
	// "nft") for those installed.
	BackendSaves() map[string]string
	// NftList returns the kube-proxy table of nftables mode as nft lists
	// it ("" when there is none).
	NftList() (string, error)
	Sysctl(name string) (string, error)
	Holders(port int32, proto model.Protocol) ([]nodeport.Holder, error)
	// Healthz queries the proxy's health endpoint.
	Healthz() (Health, error)
	Now() time.Time
}

// Options tune the checks.
type Options struct {
	// Expected, when known (from manifests), are the Services whose rules
	// must be present.
	Expected *model.State
	// HealthzAddress is where the proxy's health endpoint is, for messages.
	HealthzAddress string
}

// Run runs every check. The proxy mode is found from the rules themselves:
// a kube-proxy table in nftables means nftables mode, KUBE-SERVICES in the
// iptables nat table iptables mode; with neither, the node has no Service
// rules, and the checks that need none still run.
func Run(env Env, opts Options) []Finding {
	var out []Finding
	out = append(out, checkProxy(env, opts))
	save, saveErr := env.Save()
	var rs *netfilter.Ruleset
	if saveErr == nil {
		var err error
		if rs, err = netfilter.ParseIPTables(save); err != nil && !errors.Is(err, netfilter.ErrNoTables) {
			saveErr = err
		}
	}
	iptablesMode := rs != nil && rs.Table("nat").Chain("KUBE-SERVICES") != nil
	t := nftTable(env)
	if t != nil && iptablesMode {
		out = append(out, Finding{Check: "two-modes", Status: Fail,
			Summary: "Service rules of both modes: KUBE-SERVICES in iptables and table " + t.Family + " " + t.Name + " in nftables",
			Meaning: "two proxies run on this node, or one was switched between modes without removing the other's rules: both rewrite Service traffic, and the stale one keeps old endpoints",
			Action:  "keep one proxy in one mode; remove the other mode's rules with svcproxy cleanup after stopping the proxy (or kube-proxy --cleanup), then restart the one you keep"})
	}
	if t != nil && !iptablesMode {
		// nftables mode: the same checks, read from the kube-proxy table.
		out = append(out, checkNftRules(t, opts), checkNftLeftovers(t))
		nps := nftNodePorts(t)
		out = append(out, checkNodePorts(env, nps))
		out = append(out, checkBackends(env))
		out = append(out, checkSysctls(env, nps, true)...)
		return append(out, checkConntrack(env))
	}
	if !iptablesMode {
		out = append(out, noRules(saveErr))
		out = append(out, checkBackends(env))
		out = append(out, checkSysctls(env, nil, false)...)
		return append(out, checkConntrack(env))
	}
	out = append(out, checkRules(rs, opts))
	nps := nodePorts(rs)
	out = append(out, checkNodePorts(env, nps))
	out = append(out, checkBackends(env))
	out = append(out, checkSysctls(env, nps, false)...)
	out = append(out, checkConntrack(env))
	out = append(out, checkStaleChains(rs))
	return out
}

// noRules is the rules finding of a node with Service rules in neither
// iptables nor nftables: the rules could not be read (saveErr), or there
// are none.
func noRules(saveErr error) Finding {
	f := Finding{Check: "rules", Status: Fail}
	if saveErr != nil {
		f.Summary = "cannot read the iptables rules, and there is no kube-proxy nftables table: " + saveErr.Error()
		f.Meaning = "doctor cannot tell whether Services are programmed on this node"
		f.Action = "run doctor as root on the node, with iptables and nft installed"
		return f
	}
	f.Summary = "no Service rules on this node, in iptables or nftables (is a proxy running?)"
	f.Meaning = "no ClusterIP or NodePort traffic is steered to pods from this node"
	f.Action = "start the proxy; if it runs, read its log for why it has not synced (and check it uses the node's iptables backend)"
	return f
}

// Failed reports whether any finding is a failure.
func Failed(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Status == Fail })
}

func checkProxy(env Env, opts Options) Finding {
	f := Finding{Check: "proxy"}
	h, err := env.Healthz()
	switch {
	case err != nil:
		f.Status, f.Summary = Warn, fmt.Sprintf("no proxy answers health checks on %s", opts.HealthzAddress)
		f.Meaning = "the rules in the kernel keep working, but changes to Services are not applied while no proxy runs"
		f.Action = "check that svcproxy (or kube-proxy) runs on this node and where its --healthz-bind-address is"
	case h.LastUpdated.IsZero():
		f.Status, f.Summary = Fail, fmt.Sprintf("the proxy runs (health check HTTP %d) but has never synced its rules", h.StatusCode)
		f.Meaning = "it cannot read Services (is the API server reachable?) or cannot write the rules: nothing it should serve is programmed"
		f.Action = "read the proxy's log: it names the API server error, or the failing rule"
	case h.StatusCode != 200:
		f.Status, f.Summary = Fail, fmt.Sprintf("the proxy reports itself unhealthy (HTTP %d); last successful sync %s", h.StatusCode, ago(env.Now(), h.LastUpdated))
		f.Meaning = "syncs are failing or stalled: new Services and endpoint changes do not reach the kernel"
		f.Action = "read the proxy's log for the failing sync (the rule the kernel refused)"
	default:
		f.Status, f.Summary = OK, fmt.Sprintf("the proxy is healthy; last successful sync %s", ago(env.Now(), h.LastUpdated))
	}
	return f
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func checkRules(rs *netfilter.Ruleset, opts Options) Finding {
	f := Finding{Check: "rules"}
	nat := rs.Table("nat")
	if opts.Expected == nil {
		svcs := 0
		for _, c := range nat.Chains {
			if strings.HasPrefix(c.Name, "KUBE-SVC-") {
				svcs++
			}
		}
		f.Status, f.Summary = OK, fmt.Sprintf("KUBE-SERVICES present with %d Service port chain(s)", svcs)
		return f
	}
	var missing []string
	text := map[string]bool{}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				text[r.Comment()] = true
			}
		}
	}
	for _, sp := range opts.Expected.Services {
		n := sp.Name.String()
		if !text[n+" cluster IP"] && !text[n+" has no endpoints"] {
			missing = append(missing, n)
		}
	}
	return expected(f, missing, len(opts.Expected.Services), "have no rules", "rules present")
}

// expected completes a rules finding from the expected Service ports the
// mode's own check found missing.
func expected(f Finding, missing []string, total int, lacking, present string) Finding {
	if len(missing) > 0 {
		f.Status, f.Summary, f.Details = Fail, fmt.Sprintf("%d of %d Service port(s) %s", len(missing), total, lacking), missing
		f.Meaning = "traffic to these Services is not steered from this node"
		f.Action = "check the proxy's log for these Services (a rejected object names its field)"
		return f
	}
	f.Status, f.Summary = OK, fmt.Sprintf("%s for all %d Service port(s)", present, total)
	return f
}

type nodePortRule struct {
	port    int32
	proto   model.Protocol
	service string
}

// nodePorts lists the NodePorts the nat KUBE-NODEPORTS chain serves.
func nodePorts(rs *netfilter.Ruleset) []nodePortRule {
	var out []nodePortRule
	seen := map[string]bool{}
	c := rs.Table("nat").Chain("KUBE-NODEPORTS")
	if c == nil {
		return nil
	}
	for _, r := range c.Rules {
		for _, m := range r.Matches {
			if m.Module != "tcp" && m.Module != "udp" {
				continue
			}
			for _, o := range m.Opts {
				if o.Name != "--dport" || len(o.Values) == 0 {
					continue
				}
				p, err := strconv.Atoi(o.Values[0])
				if err != nil || seen[m.Module+o.Values[0]] {
					continue
				}
				seen[m.Module+o.Values[0]] = true
				out = append(out, nodePortRule{port: int32(p), proto: model.Protocol(m.Module), service: r.Comment()})
			}
		}
	}
	return out
}

func checkNodePorts(env Env, nps []nodePortRule) Finding {
	f := Finding{Check: "nodeports"}
	for _, np := range nps {
		hs, err := env.Holders(np.port, np.proto)
		if err != nil {
			f.Details = append(f.Details, fmt.Sprintf("%d/%s: cannot tell who holds it: %v", np.port, np.proto, err))
			continue
		}
		for _, h := range hs {
			if isProxy(h.Command) {
				continue // the proxy holding its own port (--hold-nodeports)
			}
			f.Details = append(f.Details, fmt.Sprintf("NodePort %d/%s (%s) is held by pid %d (%s), %s on %s", np.port, np.proto, np.service, h.Pid, h.Command, h.State, h.Local))
		}
	}
	if len(f.Details) == 0 {
		f.Status, f.Summary = OK, fmt.Sprintf("no other process holds any of the %d NodePort(s)", len(nps))
		return f
	}
	f.Status, f.Summary = Fail, fmt.Sprintf("%d NodePort conflict(s)", len(f.Details))
	f.Meaning = "requests to these NodePorts still reach the pods (nat PREROUTING rewrites them before any local socket sees them), but the process never gets its own traffic, and a client using a NodePort as its source port may see its replies hijacked"
	f.Action = "stop or reconfigure the named process; keep NodePorts out of the ephemeral range (svcproxy's default --nodeport-reservation=range)"
	return f
}

func isProxy(cmd string) bool {
	first := strings.Fields(cmd + " x")[0]
	base := first[strings.LastIndex(first, "/")+1:]
	return base == "svcproxy" || base == "kube-proxy"
}

func checkBackends(env Env) Finding {
	f := Finding{Check: "iptables-backends"}
	var with []string
	saves := env.BackendSaves()
	for _, name := range []string{"legacy", "nft"} {
		if strings.Contains(saves[name], ":KUBE-") {
			with = append(with, name)
		}
	}
	if len(with) > 1 {
		f.Status, f.Summary = Fail, "both iptables-legacy and iptables-nft hold KUBE rules"
		f.Meaning = "two proxies (or a proxy and an old leftover) wrote to different backends; the kernel applies both sets, so stale rules may win"
		f.Action = "find which backend the running proxy uses and remove the other's KUBE rules (svcproxy cleanup with that backend's iptables)"
		return f
	}
	which := "none has any"
	if len(with) == 1 {
		which = with[0]
	}
	f.Status, f.Summary = OK, "KUBE rules in at most one iptables backend ("+which+")"
	return f
}

// checkSysctls checks the kernel settings the proxy relies on; nftMode
// leaves out localhost NodePorts, which nftables mode does not have.
func checkSysctls(env Env, nps []nodePortRule, nftMode bool) []Finding {
	var out []Finding
	if v, err := env.Sysctl("net.ipv4.ip_forward"); err == nil {
		f := Finding{Check: "ip_forward", Status: OK, Summary: "net.ipv4.ip_forward = 1"}
		if v != "1" {
			f.Status, f.Summary = Fail, "net.ipv4.ip_forward = "+v
			f.Meaning = "the node does not forward: NodePort and ClusterIP traffic to pods on other hosts is dropped"
			f.Action = "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)"
		}
		out = append(out, f)
	}
	if v, err := env.Sysctl("net.ipv4.conf.all.route_localnet"); err == nil && !nftMode {
		f := Finding{Check: "route_localnet", Status: OK, Summary: "net.ipv4.conf.all.route_localnet = " + v}
		if v != "1" {
			f.Status = Warn
			f.Meaning = "NodePorts do not answer on 127.0.0.1 (curl localhost:<nodePort> on the node fails)"
			f.Action = "expected with --iptables-localhost-nodeports=false; otherwise the proxy could not set it"
		}
		out = append(out, f)
	}
	if v, err := env.Sysctl("net.ipv4.ip_local_reserved_ports"); err == nil {
		f := Finding{Check: "reserved-ports", Status: OK}
		set, _ := nodeport.ParsePortSet(v)
		var open []string
		for _, np := range nps {
			if !set.Has(int(np.port)) {
				open = append(open, fmt.Sprintf("%d/%s (%s)", np.port, np.proto, np.service))
			}
		}
		if len(open) > 0 {
			f.Status, f.Summary, f.Details = Warn, fmt.Sprintf("%d NodePort(s) can be handed out as ephemeral client ports", len(open)), open
			f.Meaning = "after a reboot a client can get a NodePort as its source port before the proxy starts: the incident of nodeport-incident.md"
			f.Action = "run svcproxy with --nodeport-reservation=range (the default), or add the range to net.ipv4.ip_local_reserved_ports"
		} else {
			f.Summary = fmt.Sprintf("all %d NodePort(s) are reserved from the ephemeral range", len(nps))
		}
		out = append(out, f)
	}
	return out
}

func checkConntrack(env Env) Finding {
	f := Finding{Check: "conntrack"}
	c, err1 := env.Sysctl("net.netfilter.nf_conntrack_count")
	m, err2 := env.Sysctl("net.netfilter.nf_conntrack_max")
	count, e1 := strconv.Atoi(c)
	maxN, e2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || e1 != nil || e2 != nil || maxN == 0 {
		f.Status, f.Summary = OK, "conntrack not loaded (no connections tracked yet)"
		return f
	}
	fill := float64(count) / float64(maxN)
	f.Summary = fmt.Sprintf("conntrack table %d of %d entries (%.0f%%)", count, maxN, fill*100)
	switch {
	case fill >= 0.9:
		f.Status = Fail
	case fill >= 0.75:
		f.Status = Warn
	default:
		f.Status = OK
	}
	if f.Status != OK {
		f.Meaning = "when the table is full new connections are dropped (\"nf_conntrack: table full\" in dmesg)"
		f.Action = "raise net.netfilter.nf_conntrack_max, or find what opens so many connections"
	}
	return f
}

func checkStaleChains(rs *netfilter.Ruleset) Finding {
	f := Finding{Check: "stale-chains"}
	for _, t := range rs.Tables {
		referenced := map[string]bool{}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				referenced[r.Target] = true
			}
		}
		for _, c := range t.Chains {
			for _, p := range []string{"KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-"} {
				if strings.HasPrefix(c.Name, p) && !referenced[c.Name] {
					f.Details = append(f.Details, t.Name+" "+c.Name)
				}
			}
		}
	}
	if len(f.Details) == 0 {
		f.Status, f.Summary = OK, "no unreferenced KUBE-SVC/SEP chains"
		return f
	}
	f.Status, f.Summary = Warn, fmt.Sprintf("%d unreferenced per-Service chain(s)", len(f.Details))
	f.Meaning = "left over from a proxy that stopped mid-way or from another proxy; harmless for traffic, but confusing when reading the rules"
	f.Action = "a running svcproxy removes its own stale chains on its next sync; otherwise svcproxy cleanup"
	return f
}

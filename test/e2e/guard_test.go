package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// With the NodePort range reserved, the kernel never hands a NodePort out as
// an ephemeral source port: the incident's race cannot happen.
func TestReservationKeepsEphemeralPortsOffNodePorts(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "dns-1", UDP: []int{53}})
	ctx := ctxFor(t, 60*time.Second)
	// An ephemeral range that overlaps the NodePort range, so that without
	// the reservation the kernel would pick NodePorts.
	if _, err := w.node.Run(ctx, "sh", "-c", "echo 29900 30199 > /proc/sys/net/ipv4/ip_local_port_range; echo 8080 > /proc/sys/net/ipv4/ip_local_reserved_ports"); err != nil {
		t.Fatal(err)
	}
	countNodePorts := func(n int) int {
		hits := 0
		for i := 0; i < n; i++ {
			c, err := w.node.DialContext(ctx, "udp", "10.244.0.10:53")
			if err != nil {
				t.Fatal(err)
			}
			if p := c.LocalAddr().(*net.UDPAddr).Port; p >= 30000 && p <= 32767 {
				hits++
			}
			c.Close()
		}
		return hits
	}
	if hits := countNodePorts(500); hits == 0 {
		t.Fatal("control: without a reservation some ephemeral ports should be NodePorts; the test would prove nothing")
	}
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if err := p.WaitOutput(ctx, "ephemeral ports exclude the NodePorts"); err != nil {
		t.Fatal(err)
	}
	v, _ := w.node.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")
	if strings.TrimSpace(v) != "8080,30000-32767" {
		t.Errorf("ip_local_reserved_ports = %q, want the operator's 8080 kept and the NodePort range added", v)
	}
	if hits := countNodePorts(3000); hits != 0 {
		t.Errorf("%d of 3000 ephemeral ports were NodePorts despite the reservation", hits)
	}
	p.Kill()
	if out, err := w.node.Run(ctx, binary, "cleanup", "--state-dir", w.stateDir); err != nil {
		t.Fatalf("cleanup: %v %s", err, out)
	}
	if v, _ := w.node.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"); strings.TrimSpace(v) != "8080" {
		t.Errorf("after cleanup ip_local_reserved_ports = %q, want the operator's 8080 only", v)
	}
}

// A rogue process on a NodePort is named by pid and command in the log and
// counted in the metric.
func TestRogueProcessIsNamed(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	ctx := ctxFor(t, 60*time.Second)
	if _, err := exec.LookPath("python3"); err != nil {
		if skipReason == "" && isRequired() {
			t.Fatal("python3 (the rogue process) not installed")
		}
		t.Skip("python3 not installed (the rogue process)")
	}
	rogue, err := w.lab.Start(&w.node.NS, "python3", "-m", "http.server", "30450", "--bind", "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.WaitOutput(ctx, "Serving HTTP"); err != nil {
		t.Fatal(err)
	}
	w.write("web.yaml", webService("azure-vote-front", "10.96.0.10", 30450, "10.244.0.10"))
	p := w.start()
	if err := p.WaitOutput(ctx, `can't open "nodePort for default/azure-vote-front" (:30450/tcp)`); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf(" pid=%d ", rogue.Pid()), `python3 -m http.server 30450 --bind 0.0.0.0" socket="listening 0.0.0.0:30450"`} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("the conflict log line does not name the culprit: missing %q", want)
		}
	}
	if _, err := waitPod(ctxFor(t, 10*time.Second), w.lab.Client, w.node.IP.String()+":30450", "web-1"); err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, w.node, "127.0.0.1:10249")
	if !strings.Contains(metrics, `svcproxy_nodeport_conflicts{port="30450",protocol="tcp"} 1`) {
		t.Errorf("conflict metric missing:\n%s", grep(metrics, "svcproxy_"))
	}
	for _, m := range []string{"kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		`kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="nat"}`, "kubeproxy_sync_proxy_rules_service_changes_total 1",
		"kubeproxy_sync_proxy_rules_endpoint_changes_total 1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metric %s missing:\n%s", m, grep(metrics, "kubeproxy_"))
		}
	}

	// svcproxy doctor names the culprit and fails; once it is gone, passes.
	out, err := w.node.Run(ctx, binary, "doctor", "--healthz-address", "0.0.0.0:10256")
	if err == nil {
		t.Errorf("doctor exited 0 with a rogue process on a NodePort:\n%s", out)
	}
	want := fmt.Sprintf("NodePort 30450/tcp (default/azure-vote-front) is held by pid %d (", rogue.Pid())
	if !strings.Contains(out, want) || !strings.Contains(out, "http.server 30450") {
		t.Errorf("doctor output does not name the culprit (%q):\n%s", want, out)
	}
	rogue.Kill()
	out, err = w.node.Run(ctx, binary, "doctor", "-o", "json", "--healthz-address", "127.0.0.1:10256")
	if err != nil || !strings.Contains(out, `"check": "nodeports"`) || strings.Contains(out, `"status": "fail"`) {
		t.Errorf("doctor after the rogue left: %v\n%s", err, out)
	}
}

// --hold-nodeports: once the rules are in, svcproxy holds the port, so a
// process starting later cannot take it.
func TestHoldNodePorts(t *testing.T) {
	w := newWorld(t, lab.PodSpec{Name: "web-1", TCP: []int{80}})
	w.write("web.yaml", webService("web", "10.96.0.10", 30450, "10.244.0.10"))
	w.start("--hold-nodeports")
	if _, err := w.lab.Client.WaitHTTP(ctxFor(t, 10*time.Second), w.node.IP.String()+":30450"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := w.node.Listen("tcp", ":30450")
		if err != nil {
			if !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("listen: %v", err)
			}
			break
		}
		l.Close()
		if time.Now().After(deadline) {
			t.Fatal("another process could still listen on the held NodePort")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.remove("web.yaml")
	deadline = time.Now().Add(5 * time.Second)
	for {
		l, err := w.node.Listen("tcp", ":30450")
		if err == nil {
			l.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port still held after its Service went away: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scrape(t *testing.T, n *lab.Node, addr string) string {
	t.Helper()
	tr := &http.Transport{DialContext: n.DialContext}
	defer tr.CloseIdleConnections()
	var body string
	eventually(t, 5*time.Second, "metrics", func() error {
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	return body
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package healthcheck

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"

	"github.com/svcproxy/svcproxy/internal/model"
)

func freePort(t *testing.T) int32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func TestServiceHealthCheckNodePort(t *testing.T) {
	port := freePort(t)
	s := &Services{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Addr: "127.0.0.1"}
	defer s.Close()
	state := func(local bool) *model.State {
		return &model.State{Services: []*model.ServicePort{{
			Name: model.ServicePortName{Namespace: "default", Name: "lb", Port: "https"}, HealthCheckNodePort: port,
			ExternalPolicyLocal: true, NodePort: 31443,
			Endpoints: []model.Endpoint{{IP: netip.MustParseAddr("10.244.0.10"), Port: 8443, Ready: true, IsLocal: local}},
		}}}
	}
	get := func() (int, map[string]any) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	s.Synced(state(true))
	code, body := get()
	if code != 200 || body["localEndpoints"] != 1.0 || body["serviceProxyHealthy"] != true ||
		body["service"].(map[string]any)["name"] != "lb" {
		t.Errorf("with a local endpoint: %d %v", code, body)
	}
	s.Synced(state(false))
	if code, body := get(); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("without local endpoints: %d %v", code, body)
	}
	// Its only local endpoint terminating: the node still serves it
	// (upstream's fallback), but load balancers must go elsewhere.
	terminating := state(true)
	terminating.Services[0].Endpoints[0].Ready, terminating.Services[0].Endpoints[0].Serving, terminating.Services[0].Endpoints[0].Terminating = false, true, true
	s.Synced(terminating)
	if code, body := get(); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("with only a terminating local endpoint: %d %v", code, body)
	}
	s.Synced(&model.State{})
	if _, err := http.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/healthz"); err == nil {
		t.Error("server still answers after its Service went away")
	}
}

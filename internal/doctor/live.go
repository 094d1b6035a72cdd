package doctor

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"time"

	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/model"
	"github.com/svcproxy/svcproxy/internal/nodeport"
	"github.com/svcproxy/svcproxy/internal/sysctl"
)

// Live is the Env of the node doctor runs on.
type Live struct {
	// HealthzURL is the proxy's health endpoint.
	HealthzURL string
}

func (Live) Save() (string, error) {
	b, err := iptables.Exec{}.Save(context.Background())
	return string(b), err
}

func (Live) BackendSaves() map[string]string {
	out := map[string]string{}
	for name, cmd := range map[string]string{"legacy": "iptables-legacy-save", "nft": "iptables-nft-save"} {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		if b, err := exec.Command(cmd).Output(); err == nil {
			out[name] = string(b)
		}
	}
	return out
}

func (Live) NftList() (string, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return "", nil
	}
	b, err := exec.Command("nft", "list", "table", "ip", "kube-proxy").Output()
	if err != nil {
		// No such table: not in nftables mode.
		return "", nil
	}
	return string(b), nil
}

func (Live) Sysctl(name string) (string, error) { return sysctl.Get(name) }

func (Live) Holders(port int32, proto model.Protocol) ([]nodeport.Holder, error) {
	return nodeport.Holders(port, proto)
}

func (l Live) Healthz() (Health, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(l.HealthzURL)
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	var body struct {
		LastUpdated time.Time `json:"lastUpdated"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return Health{StatusCode: resp.StatusCode, LastUpdated: body.LastUpdated}, nil
}

func (Live) Now() time.Time { return time.Now() }

package lab

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// ControlPlane is an etcd and a kube-apiserver running in the lab's
// control-plane namespace.
type ControlPlane struct {
	lab  *Lab
	bins string
	dir  string
	// Etcd and APIServer are the running processes.
	Etcd, APIServer *Proc
	// URL is the API server's address as nodes reach it.
	URL string
	// Cluster makes the API server one of a cluster with kubelets (see
	// StartControlPlane).
	Cluster bool
}

// Tokens the API server accepts: an admin for tests, and the identity the
// proxies use, which has only the rights deploy/ grants.
const (
	AdminToken = "svcproxy-lab-admin"
	ProxyToken = "svcproxy-lab-proxy"
	// ProxyUser is the user ProxyToken authenticates as.
	ProxyUser = "svcproxy-lab-proxy"
)

// ServiceCIDR is the lab API server's service-cluster-ip-range: the
// largest the API server takes, for benchmarks of 100k Services.
const ServiceCIDR = "10.96.0.0/12"

// StartControlPlane starts etcd and kube-apiserver (binaries "server" and
// "kube-apiserver" in binDir) in the control-plane namespace, with state in
// dir, and waits until the API server is ready.
func (l *Lab) StartControlPlane(ctx context.Context, binDir, dir string) (*ControlPlane, error) {
	return l.startControlPlane(ctx, binDir, dir, false)
}

// StartClusterControlPlane is StartControlPlane for a cluster with kubelets:
// the API server keeps the kubernetes Service's endpoints (its own address),
// and reaches kubelets (exec, logs) at their InternalIP.
func (l *Lab) StartClusterControlPlane(ctx context.Context, binDir, dir string) (*ControlPlane, error) {
	return l.startControlPlane(ctx, binDir, dir, true)
}

func (l *Lab) startControlPlane(ctx context.Context, binDir, dir string, cluster bool) (*ControlPlane, error) {
	if l.CP == nil {
		return nil, fmt.Errorf("lab: built without a control plane")
	}
	cp := &ControlPlane{lab: l, bins: binDir, dir: dir, URL: "https://" + ControlPlaneIP.String() + ":6443", Cluster: cluster}
	for _, sub := range []string{"etcd", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := writeSAKey(filepath.Join(dir, "sa.key")); err != nil {
		return nil, err
	}
	tokens := fmt.Sprintf("%s,admin,admin-uid,system:masters\n%s,%s,proxy-uid\n", AdminToken, ProxyToken, ProxyUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	var err error
	cp.Etcd, err = l.Start(l.CP, filepath.Join(binDir, "server"),
		"--name", "cp", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "cp=http://127.0.0.1:2380", "--log-level", "warn",
		// A throwaway store: no fsync per write, as a lab's data does not
		// outlive it (loading 5k Services took 21 s instead of 24).
		"--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	return cp, nil
}

// StartAPIServer starts (or restarts) kube-apiserver and waits for it.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	d := cp.dir
	var err error
	// Tests without kubelets create the EndpointSlices themselves.
	extra := []string{"--endpoint-reconciler-type=none"}
	if cp.Cluster {
		extra = []string{"--kubelet-preferred-address-types=InternalIP,Hostname"}
	}
	cp.APIServer, err = cp.lab.Start(cp.lab.CP, filepath.Join(cp.bins, "kube-apiserver"), append([]string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port=6443",
		"--advertise-address=" + ControlPlaneIP.String(),
		"--cert-dir=" + filepath.Join(d, "certs"),
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(d, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--enable-priority-and-fairness=false",
		// As real clusters do: a node proxy must be privileged.
		"--allow-privileged=true",
	}, extra...)...)
	if err != nil {
		return err
	}
	return cp.waitReady(ctx)
}

// StopAPIServer kills kube-apiserver (etcd keeps running).
func (cp *ControlPlane) StopAPIServer() { cp.APIServer.Kill() }

func (cp *ControlPlane) waitReady(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:     cp.lab.Client.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the lab's self-signed serving cert
	}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+AdminToken)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("kube-apiserver not ready after 90s (last: %v); its log:\n%s", err, cp.APIServer.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Kubeconfig writes a kubeconfig for the given token and returns its path.
func (cp *ControlPlane) Kubeconfig(name, token string) (string, error) {
	p := filepath.Join(cp.dir, name+".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: %s
  user:
    token: %s
contexts:
- name: lab
  context: {cluster: lab, user: %s}
current-context: lab
`, cp.URL, name, token, name)
	return p, os.WriteFile(p, []byte(body), 0o600)
}

// AdminConfig is the API server as an administrator reaches it from the
// lab's client namespace (for tests).
func (cp *ControlPlane) AdminConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     AdminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return cp.lab.Client.DialContext(ctx, network, addr)
		},
		Timeout: 10 * time.Second,
		// Tests create thousands of objects; client-side throttling (5 per
		// second by default) would only slow them down.
		QPS: -1,
	}
}

func writeSAKey(path string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
}

// File is the path of a file of the control plane's state: "sa.key" (the
// service account signing key), "certs/apiserver.crt" (the API server's
// self-signed serving certificate and its CA), kubeconfigs.
func (cp *ControlPlane) File(name string) string { return filepath.Join(cp.dir, name) }

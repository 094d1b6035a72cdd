package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/svcproxy/svcproxy/internal/lab"
)

// dnsIP is where CoreDNS answers: the control plane's address, outside the
// proxy under test (a DNS Service would depend on it), as the kubelet's
// clusterDNS.
var dnsIP = lab.ControlPlaneIP

func (c *Cluster) startAPIServer(ctx context.Context) error {
	cp, err := c.Lab.StartClusterControlPlane(ctx, c.cfg.Bin, c.path("control-plane"))
	if err != nil {
		return err
	}
	c.CP = cp
	c.AdminKubeconfig, err = cp.Kubeconfig("admin", lab.AdminToken)
	return err
}

func (c *Cluster) startControllers(ctx context.Context) error {
	cp := c.CP
	if _, err := c.Lab.Start(c.Lab.CP, c.bin("kube-controller-manager"),
		"--kubeconfig="+c.AdminKubeconfig,
		"--service-account-private-key-file="+cp.File("sa.key"),
		// Pods trust the API server's self-signed certificate through
		// the kube-root-ca.crt ConfigMap made from this.
		"--root-ca-file="+cp.File("certs/apiserver.crt"),
		// Each node's pod range is the lab's (its CNI bridge's), not
		// allocated here.
		"--cluster-cidr=10.244.0.0/16",
		"--service-cluster-ip-range="+lab.ServiceCIDR,
		"--leader-elect=false", "--bind-address=127.0.0.1",
		"--use-service-account-credentials=false",
	); err != nil {
		return err
	}
	if _, err := c.Lab.Start(c.Lab.CP, c.bin("kube-scheduler"),
		"--kubeconfig="+c.AdminKubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1"); err != nil {
		return err
	}
	corefile := c.path("control-plane", "Corefile")
	err := writeFile(corefile, fmt.Sprintf(`
.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, c.AdminKubeconfig))
	if err != nil {
		return err
	}
	if _, err := c.Lab.Start(c.Lab.CP, c.bin("coredns"), "-conf", corefile, "-dns.port", "53"); err != nil {
		return err
	}
	// The default ServiceAccount exists once the controllers run: pods
	// cannot be created before.
	return waitFor(ctx, 60*time.Second, "the default ServiceAccount", func() error {
		_, err := c.Kubectl(ctx, "get", "serviceaccount", "default", "-n", "default")
		return err
	})
}

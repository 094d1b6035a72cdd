package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	kpconfig "k8s.io/kubernetes/pkg/proxy/apis/config"
	"k8s.io/kubernetes/pkg/proxy/nftables"
)

// runNFTables runs upstream's nftables proxier on the manifests against
// this network namespace's kernel, prints its table and removes it.
func runNFTables(dir, node, nodeIP, clusterCIDR, npAddrs string, masqAll, _ bool, bit int32) error {
	if out, err := exec.Command("nft", "list", "table", "ip", "kube-proxy").CombinedOutput(); err == nil {
		return fmt.Errorf("this network namespace already has table ip kube-proxy: run in a fresh one (ip netns exec)\n%s", out)
	}
	svcs, slices, cidrs, err := read(dir)
	if err != nil {
		return err
	}
	cfg, detector := settings(clusterCIDR, npAddrs, masqAll)
	cfg.NFTables = kpconfig.KubeProxyNFTablesConfiguration{MasqueradeBit: &bit}
	p, err := nftables.NewProxier(context.Background(), cfg, corev1.IPv4Protocol, detector, node, net.ParseIP(nodeIP),
		events.NewFakeRecorder(100), nil, false)
	if err != nil {
		return fmt.Errorf("upstream proxier: %w", err)
	}
	defer exec.Command("nft", "delete", "table", "ip", "kube-proxy").Run()
	start(p, svcs, slices, cidrs)
	// Done when the table is there and has stopped changing: the proxier
	// writes it in one transaction, once it has everything.
	deadline := time.Now().Add(30 * time.Second)
	var last []byte
	for {
		out, err := exec.Command("nft", "list", "table", "ip", "kube-proxy").Output()
		if err == nil && bytes.Contains(out, []byte("chain services")) && bytes.Equal(out, last) {
			_, err := os.Stdout.Write(out)
			return err
		}
		last = out
		if time.Now().After(deadline) {
			return errors.New("upstream nftables proxier did not program its table in 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

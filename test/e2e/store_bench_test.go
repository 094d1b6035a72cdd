package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// storeScaleAbove is the size from which apiScaleLab writes its objects
// straight into etcd: through the API, each Service create makes
// kube-apiserver's ClusterIP allocator list every IPAddress to count them
// (its CPU profile: 87 % in ipallocator.(*Allocator).Used), so creating
// slows as the cluster grows — 66 Services a second at 20k, 32 at 26k,
// hours for 100k on this machine.
const storeScaleAbove = 10000

// storeScale writes what createScale creates (and each Service's
// IPAddress, so that the allocator's repair loop has nothing to do)
// straight into the lab API server's etcd, in transactions through etcd's
// JSON gateway, then waits until the API server lists them all. The API
// server reads JSON from its store as it reads its own protobuf writes,
// and proxies list and watch these objects through it as any others.
func storeScale(b *testing.B, w *world, admin kubernetes.Interface, n int) {
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		createNamespace(b, admin, fmt.Sprintf("ns%d", i))
	}
	etcd := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return w.lab.CP.DialContext(ctx, network, "127.0.0.1:2379")
		},
	}}
	now := metav1.NewTime(time.Now())
	put := func(key string, obj any) map[string]any {
		v, err := json.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		return map[string]any{"requestPut": map[string]string{
			"key": base64.StdEncoding.EncodeToString([]byte("/registry/" + key)), "value": base64.StdEncoding.EncodeToString(v)}}
	}
	txns := make(chan []map[string]any)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ops := range txns {
				body, _ := json.Marshal(map[string]any{"success": ops})
				resp, err := etcd.Post("http://etcd/v3/kv/txn", "application/json", bytes.NewReader(body))
				if err == nil {
					msg, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("etcd txn: %s: %s", resp.Status, msg)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	var ops []map[string]any
	for i := 0; i < n; i++ {
		svc, sl := scaleObjects(i)
		svc.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		svc.UID, svc.CreationTimestamp = types.UID(fmt.Sprintf("svc-%d", i)), now
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		svc.Spec.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicySingleStack)
		sl.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
		sl.UID, sl.CreationTimestamp = types.UID(fmt.Sprintf("slice-%d", i)), now
		ip := &networkingv1.IPAddress{
			TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
			ObjectMeta: metav1.ObjectMeta{Name: svc.Spec.ClusterIP, UID: types.UID(fmt.Sprintf("ip-%d", i)), CreationTimestamp: now,
				Labels: map[string]string{networkingv1.LabelIPAddressFamily: string(corev1.IPv4Protocol), networkingv1.LabelManagedBy: "ipallocator.k8s.io"}},
			Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: svc.Namespace, Name: svc.Name}},
		}
		ops = append(ops,
			put("services/specs/"+svc.Namespace+"/"+svc.Name, svc),
			put("endpointslices/"+sl.Namespace+"/"+sl.Name, sl),
			put("ipaddresses/"+ip.Name, ip))
		if len(ops) >= 126 || i == n-1 { // etcd takes up to 128 operations a transaction
			txns <- ops
			ops = nil
		}
	}
	close(txns)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		svcs, err := admin.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			b.Fatal(err)
		}
		sls, err := admin.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			b.Fatal(err)
		}
		if count(svcs.ListMeta) > int64(n) && count(sls.ListMeta) >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the API server lists %d Services and %d EndpointSlices, want %d", count(svcs.ListMeta), count(sls.ListMeta), n)
		}
		time.Sleep(time.Second)
	}
}

// count is how many objects a list of limit 1 stands for.
func count(m metav1.ListMeta) int64 {
	if m.RemainingItemCount == nil {
		return 1
	}
	return *m.RemainingItemCount + 1
}

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
	"strconv"
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
// JSON gateway, then waits until the API server's caches hold them all. The API
// server reads JSON from its store as it reads its own protobuf writes,
// and proxies list and watch these objects through it as any others.
func storeScale(b *testing.B, w *world, admin kubernetes.Interface, n int) {
	ctx := context.Background()
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
	// post commits one transaction and returns its revision.
	post := func(ops []map[string]any) (int64, error) {
		body, _ := json.Marshal(map[string]any{"success": ops})
		resp, err := etcd.Post("http://etcd/v3/kv/txn", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("etcd txn: %s: %s", resp.Status, msg)
		}
		var r struct {
			Header struct {
				Revision int64 `json:"revision,string"`
			} `json:"header"`
		}
		err = json.Unmarshal(msg, &r)
		return r.Header.Revision, err
	}
	txns := startWorkers(4, func(ops []map[string]any) error {
		_, err := post(ops)
		return err
	})
	var ops, last []map[string]any
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
		last = []map[string]any{put("services/specs/"+svc.Namespace+"/"+svc.Name, svc), put("endpointslices/"+sl.Namespace+"/"+sl.Name, sl)}
		ops = append(ops, last[0], last[1], put("ipaddresses/"+ip.Name, ip))
		if len(ops) >= 126 || i == n-1 { // etcd takes up to 128 operations a transaction
			txns.work <- ops
			ops = nil
		}
	}
	if err := txns.wait(); err != nil {
		b.Fatal(err)
	}
	// The API server's caches follow etcd's watch at their own pace, and
	// proxies list from them: written once more, the last Service and
	// EndpointSlice are the last of their kinds in etcd, so the caches
	// hold everything once they hold these at that revision.
	svc, sl := scaleObjects(n - 1)
	rev, err := post(last)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	cached := metav1.GetOptions{ResourceVersion: "0"}
	for {
		s, err1 := admin.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, cached)
		e, err2 := admin.DiscoveryV1().EndpointSlices(sl.Namespace).Get(ctx, sl.Name, cached)
		if err1 == nil && err2 == nil && revisionOf(s.ObjectMeta) >= rev && revisionOf(e.ObjectMeta) >= rev {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the API server's caches have not caught up with etcd's revision %d: %v %v", rev, err1, err2)
		}
		time.Sleep(time.Second)
	}
}

func revisionOf(m metav1.ObjectMeta) int64 {
	rv, _ := strconv.ParseInt(m.ResourceVersion, 10, 64)
	return rv
}

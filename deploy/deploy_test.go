// Package deploy holds the manifests that run svcproxy in a cluster; this
// test keeps their RBAC least-privilege. (They are also applied to a real
// API server with server-side dry-run in test/e2e.)
package deploy

import (
	"bytes"
	"os"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile("svcproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string][]string{
		"/services": {"list", "watch"}, "/nodes": {"list", "watch"},
		"discovery.k8s.io/endpointslices": {"list", "watch"},
		// nftables mode drops traffic to unallocated cluster IPs.
		"networking.k8s.io/servicecidrs": {"list", "watch"},
		"/events":                        {"create", "patch"}, "events.k8s.io/events": {"create", "patch"},
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	found := false
	for {
		var role rbacv1.ClusterRole
		if err := dec.Decode(&role); err != nil {
			break
		}
		if role.Kind != "ClusterRole" {
			continue
		}
		found = true
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					ok := allowed[g+"/"+res]
					for _, v := range r.Verbs {
						if !slices.Contains(ok, v) {
							t.Errorf("ClusterRole grants %s on %s/%s: more than svcproxy needs", v, g, res)
						}
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("no ClusterRole in svcproxy.yaml")
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeKubectl is a kubectl that lists two svcproxy pods and, for exec,
// prints what it was asked to run (and, for explain -o json, a report).
func fakeKubectl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl")
	script := `#!/bin/sh
case "$*" in
*"get pods"*) printf 'svcproxy-a node-1\nsvcproxy-b node-2\n' ;;
*"explain default/web -o json"*)
  pod=$(echo "$*" | sed 's/.* exec \([^ ]*\) .*/\1/')
  verdict='DNAT to 10.244.0.5:80 (50%), 10.244.1.6:80 (50%); masqueraded'
  [ "$pod" = svcproxy-b ] && verdict='DROP by filter KUBE-EXTERNAL-SERVICES'
  printf '{"Service":"default/web","Ports":[{"Name":"default/web","Entries":[{"Kind":"NodePort","Port":30450,"Protocol":"tcp","Results":[{"Source":"from outside the cluster (203.0.113.10)","Summary":"%s"}]}]}]}' "$verdict" ;;
*) echo "ran: $*" ;;
esac
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPlugin(t *testing.T) {
	kubectl := fakeKubectl(t)
	tests := []struct {
		args []string
		want []string
		err  string
	}{
		{[]string{"nodes"}, []string{"node-1", "svcproxy-a", "node-2", "svcproxy-b"}, ""},
		{[]string{"--node", "node-2", "trace", "--to", "10.96.0.10:80", "-o", "json"},
			[]string{"ran: --kubeconfig k -n kube-system exec svcproxy-b -- svcproxy trace --to 10.96.0.10:80 -o json"}, ""},
		{[]string{"--node", "node-1", "explain", "svc/web", "-n", "shop"},
			[]string{"ran: --kubeconfig k -n kube-system exec svcproxy-a -- svcproxy explain shop/web"}, ""},
		{[]string{"explain", "svc/web"}, []string{"NODE", "node-1", "NodePort 30450/tcp", "DNAT to 2 endpoint(s), masqueraded",
			"node-2", "DROP by filter KUBE-EXTERNAL-SERVICES"}, ""},
		{[]string{"services"}, nil, "give --node NODE"},
		{[]string{"--node", "node-9", "services"}, nil, `no svcproxy pod on node "node-9"`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"--kubectl", kubectl, "--kubeconfig", "k"}, tt.args...), &out, &errOut)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err = %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v\n%s", tt.args, err, errOut.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out.String())
			}
		}
	}
}

# svcproxy: two commands on a fresh Debian machine with Go and root.
#   make lab    build svcproxy and show a NodePort answering in a namespace lab
#   make test   run every test (unit, golden, fuzz seeds, real kernel)
# Each installs what it needs first.

GO          ?= go
BIN         := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
# kube-apiserver and etcd for the real-API-server tests, built from the Go
# module proxy by the tools module in tools/kube and cached between runs.
KUBE_VERSION := v1.37.2
KUBE_BIN     ?= $(HOME)/.cache/svcproxy-kube/$(KUBE_VERSION)
# In CI the real-kernel tests must run: a skip (not root, tool missing) fails.
E2E_REQUIRED ?= $(CI)

# The system tools svcproxy drives, and the Debian packages that bring them.
SYSTEM_TOOLS := iptables-save:iptables ip:iproute2 nft:nftables conntrack:conntrack curl:curl dot:graphviz python3:python3

.PHONY: all build deps tools kube-tools cluster-tools images cluster conformance lint test lab bench bench-compare bench-churn clean

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/svcproxy ./cmd/svcproxy
	$(GO) build -buildvcs=auto -o $(BIN)/kubectl-svcproxy ./cmd/kubectl-svcproxy

## deps: install the system packages (apt) that svcproxy and its tests use.
deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do \
		command -v $${t%%:*} >/dev/null 2>&1 || PATH=$$PATH:/usr/sbin:/sbin command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "run as root (or install:$$missing)"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## tools: build the Go tools the checks use (cached in ./bin).
tools: $(STATICCHECK)

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## kube-tools: build kube-apiserver, etcd and upstream kube-proxy (the
## takeover tests run it) once (cold: minutes; then cached in $(KUBE_BIN)),
## and upstream-rules, which prints what upstream kube-proxy's proxiers write
## for a folder of manifests (the parity tests' reference; rebuilt every
## time, in seconds once Go's cache is warm).
kube-tools:
	@if [ -x $(KUBE_BIN)/kube-apiserver ] && [ -x $(KUBE_BIN)/server ] && [ -x $(KUBE_BIN)/kube-proxy ]; then \
		echo "kube-apiserver, etcd and kube-proxy $(KUBE_VERSION): cached in $(KUBE_BIN)"; \
	else \
		echo "building kube-apiserver, etcd and kube-proxy $(KUBE_VERSION) into $(KUBE_BIN) (first time: several minutes)"; \
		start=$$(date +%s); \
		cd tools/kube && $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_BIN)/ k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-proxy && \
		echo "built in $$(( $$(date +%s) - start ))s"; \
	fi
	cd tools/kube && $(GO) build -o $(KUBE_BIN)/upstream-rules ./upstream-rules

## cluster-tools: the real cluster's parts, built once and cached in
## $(KUBE_BIN): kube-controller-manager, kube-scheduler, kubelet, kubectl,
## agnhost (the e2e tests' image) and the network e2e tests (tools/kube),
## containerd v2 with its runc shim, and CoreDNS; runc and the CNI plugins
## come from Debian. Cold: about 25 minutes on 2 cores.
KUBE_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=37 -X $(p).gitTreeState=clean -X $(p).gitCommit=0000000000000000000000000000000000000000 -X $(p).buildDate=2026-01-01T00:00:00Z)
CONTAINERD_VERSION := v2.4.2
COREDNS_VERSION    := v1.15.0
CLUSTER_BINS := kube-controller-manager kube-scheduler kubelet kubectl agnhost regression-issue-74839
CLUSTER_PACKAGES := runc:runc containernetworking-plugins:/usr/lib/cni/bridge

cluster-tools: deps kube-tools
	@missing=""; for t in $(CLUSTER_PACKAGES); do test -e "$${t##*:}" || command -v $${t##*:} >/dev/null 2>&1 || missing="$$missing $${t%%:*}"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@for b in $(CLUSTER_BINS); do \
		if [ -x $(KUBE_BIN)/$$b ]; then continue; fi; \
		pkg=k8s.io/kubernetes/cmd/$$b; case $$b in agnhost|regression-*) pkg=k8s.io/kubernetes/test/images/$$b;; esac; \
		echo "building $$b $(KUBE_VERSION)"; start=$$(date +%s); \
		(cd tools/kube && CGO_ENABLED=0 $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_BIN)/$$b $$pkg) || exit 1; \
		echo "  built in $$(( $$(date +%s) - start ))s"; \
	done
	@if [ ! -x $(KUBE_BIN)/network-e2e.test ]; then echo "building the network e2e tests $(KUBE_VERSION)"; start=$$(date +%s); \
		(cd tools/kube && $(GO) test -c -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_BIN)/network-e2e.test ./conformance) || exit 1; \
		echo "  built in $$(( $$(date +%s) - start ))s"; fi
	@if [ ! -x $(KUBE_BIN)/containerd ]; then echo "building containerd $(CONTAINERD_VERSION)"; start=$$(date +%s); \
		GOBIN=$(KUBE_BIN) CGO_ENABLED=0 $(GO) install -tags no_btrfs github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
			github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION) github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD_VERSION) || exit 1; \
		echo "  built in $$(( $$(date +%s) - start ))s"; fi
	@if [ ! -x $(KUBE_BIN)/coredns ]; then echo "building CoreDNS $(COREDNS_VERSION)"; start=$$(date +%s); \
		GOBIN=$(KUBE_BIN) CGO_ENABLED=0 $(GO) install github.com/coredns/coredns@$(COREDNS_VERSION) || exit 1; \
		echo "  built in $$(( $$(date +%s) - start ))s"; fi

## images: the real cluster's images as tarballs for `ctr images import`, in
## $(BIN)/images: svcproxy (the files the Dockerfile's image has, from
## deploy/image/rootfs.sh), and under the names Kubernetes' e2e tests ask for,
## agnhost (with the pause image in its fake registry's folder, as
## upstream's has it), busybox, distroless-iptables (the netfilter tools),
## the invalid conntrack state regression's server and the pod sandbox's
## pause (svcproxy's own tiny one).
IMAGES      := $(BIN)/images
AGNHOST_TAG    := registry.k8s.io/e2e-test-images/agnhost:2.66.1
PAUSE_TAG      := registry.k8s.io/pause:3.10.2
BUSYBOX_TAG    := registry.k8s.io/e2e-test-images/busybox:1.37.0-2
REGRESSION_TAG := registry.k8s.io/e2e-test-images/regression-issue-74839:1.5
IPTABLES_TAG   := registry.k8s.io/build-image/distroless-iptables:v0.9.9
IMAGE_PACKAGES := busybox-static netcat-openbsd wget curl netbase iperf

images: cluster-tools
	@missing=""; for p in $(IMAGE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@mkdir -p $(IMAGES) && rm -rf $(IMAGES)/root && mkdir -p $(IMAGES)/root/pause $(IMAGES)/root/regression
	cd tools/kube && $(GO) build -o $(IMAGES)/mkimage ./mkimage && CGO_ENABLED=0 $(GO) build -o $(IMAGES)/root/pause/pause ./pause
	cp -p $(KUBE_BIN)/regression-issue-74839 $(IMAGES)/root/regression/
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -ldflags="-s -w" -o $(IMAGES)/svcproxy ./cmd/svcproxy
	sh deploy/image/rootfs.sh svcproxy $(IMAGES)/root/svcproxy $(IMAGES)/svcproxy
	sh deploy/image/rootfs.sh agnhost $(IMAGES)/root/agnhost $(KUBE_BIN)/agnhost
	$(IMAGES)/mkimage -name svcproxy:latest -o $(IMAGES)/svcproxy.tar -entrypoint /usr/local/bin/svcproxy -cmd run $(IMAGES)/root/svcproxy
	$(IMAGES)/mkimage -name $(PAUSE_TAG) -o $(IMAGES)/pause.tar -entrypoint /pause \
		-registry $(IMAGES)/root/agnhost/var/registry -registry-ref pause:testing $(IMAGES)/root/pause
	$(IMAGES)/mkimage -name $(AGNHOST_TAG) -o $(IMAGES)/agnhost.tar -entrypoint /agnhost -cmd pause -env PATH=/bin:/usr/bin:/usr/sbin:/sbin $(IMAGES)/root/agnhost
	sh deploy/image/rootfs.sh busybox $(IMAGES)/root/busybox -
	$(IMAGES)/mkimage -name $(BUSYBOX_TAG) -o $(IMAGES)/busybox.tar -cmd sh -env PATH=/bin $(IMAGES)/root/busybox
	sh deploy/image/rootfs.sh iptables $(IMAGES)/root/iptables -
	$(IMAGES)/mkimage -name $(IPTABLES_TAG) -o $(IMAGES)/iptables.tar -env PATH=/bin:/usr/sbin $(IMAGES)/root/iptables
	$(IMAGES)/mkimage -name $(REGRESSION_TAG) -o $(IMAGES)/regression.tar -entrypoint /regression-issue-74839 $(IMAGES)/root/regression
	@rm -rf $(IMAGES)/root

## cluster: a real one-node cluster in network namespaces of its own
## (etcd, kube-apiserver, controller-manager, scheduler, CoreDNS, containerd,
## kubelet), svcproxy deployed as deploy/svcproxy.yaml's DaemonSet from its
## own image, and a Deployment behind a NodePort answering through it;
## Ctrl-C removes everything. MODE=nftables for nftables mode, NODES=2 for
## a second node (its own namespace, containerd and kubelet).
MODE  ?= iptables
NODES ?= 1
cluster: images
	$(GO) run ./test/cluster -mode $(MODE) -nodes $(NODES) -bin $(KUBE_BIN) -images $(IMAGES)

## conformance: Kubernetes' sig-network specs that concern the proxy
## (Services, Networking, Conntrack, KubeProxy, traffic distribution and
## topology, localhost NodePorts, HostPort, NoSNAT) against the real cluster,
## both modes one after the other; each spec's outcome goes to
## bin/conformance-MODE.txt, from which docs/conformance.md is written.
## Left out: [Disruptive] (they restart components over SSH, which the local
## provider has not), SCTP (these kernels have no SCTP) and the Internet
## checks (the lab is closed to the outside, so that "unreachable" means it),
## and IPerf2 (it parses iperf 2.2's output; Debian bookworm has 2.1.8). Two nodes, so
## that the cross-node specs run. In nftables mode the alpha gate for
## localhost NodePorts is on (with localhost in nodePortAddresses), so that
## the LocalhostNodePorts specs test what they are about; each run's whole
## output goes to bin/conformance-MODE.log.
E2E_PROXY_FOCUS := \[sig-network\] (Services|Networking|Conntrack|Traffic|LocalhostNodePorts|KubeProxy|Topology|Service |NoSNAT|HostPort)
E2E_PROXY_SKIP  := \[Disruptive\]|\[Feature:SCTPConnectivity\]|\[Feature:Networking-(IPv4|IPv6|DNS)\]|Networking IPerf2
E2E_PROXY_FLAGS_iptables :=
E2E_PROXY_FLAGS_nftables := -feature-gates KubeProxyNFTablesLocalhostNodePorts=true -nodeport-addresses localhost,primary
conformance: images
	for m in iptables nftables; do \
		case $$m in iptables) flags='$(E2E_PROXY_FLAGS_iptables)';; nftables) flags='$(E2E_PROXY_FLAGS_nftables)';; esac; \
		$(GO) run ./test/cluster -mode $$m -nodes 2 -bin $(KUBE_BIN) -images $(IMAGES) $$flags -e2e-log $(BIN)/conformance-$$m.log \
			-e2e-focus '$(E2E_PROXY_FOCUS)' -e2e-skip '$(E2E_PROXY_SKIP)' 2>&1 | grep -v '^[IW][0-9]' | tee $(BIN)/conformance-$$m.txt; \
	done

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## test: every test. Real-kernel tests need root; they skip with the reason
## otherwise, except in CI (CI=true), where skipping fails the run. It builds
## the real cluster's parts first (cold: about 20 minutes, then cached).
## The real cluster's conformance run (test/cluster) comes last, alone: its
## two clusters would otherwise share the 2 cores with the lab's timed
## checks.
test: deps lint kube-tools images
	SVCPROXY_E2E_REQUIRED=$(E2E_REQUIRED) SVCPROXY_KUBE_BIN=$(KUBE_BIN) $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/cluster)
	SVCPROXY_E2E_REQUIRED=$(E2E_REQUIRED) SVCPROXY_KUBE_BIN=$(KUBE_BIN) SVCPROXY_IMAGES=$(IMAGES) $(GO) test -count=1 -timeout 40m -v -run TestServiceConformance ./test/cluster

## lab: the main job on the embedded default, in a throwaway namespace lab.
lab: deps build
	$(BIN)/svcproxy lab

## bench: the benchmarks behind the README's tables, at their sizes (1k to
## 30k Services x 10 endpoints), in both modes: render, apply into a fresh
## namespace, one change, cleanup, first-packet latency, reading manifests,
## and the binary's sync speed and memory in the lab, over manifests and
## against a real API server. Needs root; takes about half an hour.
bench: deps kube-tools
	$(GO) test -run XXX -bench Render -benchmem ./internal/dataplane/...
	$(GO) test -run XXX -bench Dir -benchmem ./internal/source/files
	$(GO) test -run XXX -bench BuildOneChange -benchmem ./internal/model
	$(GO) test -run XXX -bench GuardUpdate ./internal/nodeport
	$(GO) test -run XXX -bench 'Apply|Cleanup|Release|RuleAddFloor' -benchtime 1x -timeout 60m ./test/e2e
	$(GO) test -run XXX -bench FirstPacket -benchtime 2000x -timeout 60m ./test/e2e
	SVCPROXY_KUBE_BIN=$(KUBE_BIN) $(GO) test -run XXX -bench LabSync -benchtime 1x -timeout 60m ./test/e2e

## bench-compare: upstream kube-proxy v1.37.2 and svcproxy side by side on
## one lab node against one API server, both modes: start to first NodePort
## and to every Service, endpoint change to traffic (p50, p99 of 20), peak
## RSS and CPU, with their ratio. SERVICES=10000 for the large size (upstream's
## iptables mode is left out there: its first sync does not finish).
SERVICES ?= 1000
bench-compare: deps kube-tools
	SVCPROXY_KUBE_BIN=$(KUBE_BIN) SVCPROXY_BENCH_SERVICES=$(SERVICES) $(GO) test -run XXX -bench CompareKubeProxy -benchtime 1x -timeout 90m -v ./test/e2e \
		| grep -v '^\s*[IWE][0-9]\{4\}'

## bench-churn: endpoint changes streamed at 20, 100 and 500 a second
## (CHURN_SECONDS each) against SERVICES Services x 10 endpoints, for
## upstream kube-proxy and svcproxy in turn: network programming latency
## p50/p99, syncs and CPU per rate.
bench-churn: SERVICES = 10000
CHURN_SECONDS ?= 60
bench-churn: deps kube-tools
	SVCPROXY_KUBE_BIN=$(KUBE_BIN) SVCPROXY_BENCH_SERVICES=$(SERVICES) SVCPROXY_CHURN_SECONDS=$(CHURN_SECONDS) \
		$(GO) test -run XXX -bench Churn -benchtime 1x -timeout 90m -v ./test/e2e | grep -v '^\s*[IWE][0-9]\{4\}\|network programming\|Network programming'

clean:
	rm -rf $(BIN)

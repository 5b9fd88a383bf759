# weft. `make demo` and `make test` install what they need (Debian, as root).
GO      ?= go
BIN     := bin
# PKGS are the packages make unit and make test run: all but test/k8s, the
# real-cluster suite, which make e2e-k8s runs and CI runs as a second step
# (its components take ~20 min to build cold on 2 cores: with them make
# test would pass 60 min cold).
PKGS     = $(shell $(GO) list ./... | grep -v /test/k8s)
APT_PKGS := etcd-server etcd-client containernetworking-plugins iptables nftables conntrack iproute2 \
	iperf3 clang llvm libbpf-dev bpftool iputils-ping netcat-openbsd qperf sockperf \
	prometheus tcpdump containerd runc ipset socat

.PHONY: all deps build test unit e2e e2e-k8s demo demo-k8s bench generate check-generate clean

all: build

# deps installs the Debian packages the tests, the demo and the benchmark use.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build:
	$(GO) build -o $(BIN)/ ./cmd/...

unit:
	$(GO) test -count=1 $(PKGS)

test: deps build
	WEFT_E2E=1 $(GO) test -count=1 -timeout 30m $(PKGS)

e2e: deps build
	WEFT_E2E=1 $(GO) test -count=1 -timeout 30m -v ./test/e2e/

# e2e-k8s (root) runs the real-cluster suite, test/k8s: Kubernetes
# (kubelet, containerd, kube-proxy, CoreDNS, kube-controller-manager,
# kube-scheduler, kube-router) on 3 nodes in namespaces, weft installed with
# kubectl apply -k deploy/, on the ebpf and kernel datapaths. Its components
# are built from the Go module proxy and cached in ~/.cache/weft-kube
# (~20 min cold on 2 cores).
e2e-k8s: deps build image
	WEFT_E2E=1 $(GO) test -count=1 -timeout 60m -v ./test/k8s/...

# demo (root) brings up a 3-node namespace cluster with etcd and weftd on the
# ebpf datapath, two pods per node, prints a table of cross-node pings and
# TCP streams and what each backend carried (fast path or kernel path), and
# tears it all down, also on Ctrl-C (the demo binary runs directly, not under
# `go run`, so the signal reaches it).
demo: deps build
	$(GO) build -o $(BIN)/weft-demo ./test/demo
	./$(BIN)/weft-demo -bin $(BIN)

# demo-k8s (root) brings up the real cluster of e2e-k8s with weft on the
# ebpf datapath, a Deployment spread over the nodes behind a Service, and
# prints what a user looks at: nodes Ready, pods and their IPs per node,
# requests through the Service from each node (which pod answered) and each
# node's per-backend counters (weftctl counters); then tears it all down,
# also on Ctrl-C (the binary runs directly, not under go run). Flags via
# DEMO_K8S_ARGS (./bin/weft-demo-k8s -h lists them).
demo-k8s: deps build
	$(GO) build -o $(BIN)/weft-demo-k8s ./test/demo-k8s
	./$(BIN)/weft-demo-k8s $(DEMO_K8S_ARGS)

# image builds weft's container image without Docker or a registry:
# weftd, weft-cni and weftctl built static, and iptables/ip6tables (legacy
# and nft), nft and the libraries they load copied from this machine's
# Debian packages, on an empty base, for this machine's architecture. It
# writes bin/weft-image.tar, an OCI layout that is also a docker-archive,
# naming ghcr.io/weftnet/weft:dev (VERSION=v1.2.3 make image: tag and
# weftd --version v1.2.3; else the version is git describe). Load it with
# `ctr -n k8s.io images import bin/weft-image.tar` (docs/install.md).
# Flags via IMAGE_ARGS (./bin/weft-build-image -h lists them).
.PHONY: image
image: deps
	$(GO) build -o $(BIN)/weft-build-image ./build/image
	./$(BIN)/weft-build-image -out $(BIN)/weft-image.tar $(if $(VERSION),-tag $(VERSION) -version $(VERSION)) $(IMAGE_ARGS)

# generate rebuilds bpf/ into pkg/datapath/ebpf (bpf2go pinned by go.mod's tool
# directive; clang, llvm-strip and libbpf-dev from Debian).
generate:
	$(GO) generate ./generate.go

# check-generate fails when the committed bindings differ from a fresh build.
check-generate: generate
	@git diff --exit-code --stat -- pkg/datapath/ebpf || \
		{ echo "generated eBPF files are stale: run make generate and commit them"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- pkg/datapath/ebpf); \
	if [ -n "$$untracked" ]; then echo "uncommitted generated files: $$untracked"; exit 1; fi

clean:
	rm -rf $(BIN)

# bench (root) measures the data plane: one 2-node namespace cluster per
# configuration (plain routes, kernel/ebpf vxlan, kernel/ebpf host-gw, each
# also over IPv6 in a dual-stack cluster, udp, wireguard, and "real node"
# vxlan variants with node-to-pod probes and a DNATed ClusterIP), iperf3
# TCP, iperf3 UDP small-packet rate, sockperf latency and the TCP
# connection rate pod to pod, interleaved repetitions, plus the
# programs' ns/packet from BPF_PROG_TEST_RUN; written to docs/benchmarks.md
# under "Data plane". Flags via BENCH_ARGS, e.g.
# make bench BENCH_ARGS='-reps 3 -duration 3s', or a subset printed only:
# make bench BENCH_ARGS='-configs ebpf-vxlan-probes -metrics tcp,crr -out ""'
# or the IPv6 rows: BENCH_ARGS='-configs kernel-vxlan-v6,ebpf-vxlan-v6 -out ""'
# (./bin/weft-bench -h lists the configurations and metrics).
bench: deps build
	$(GO) build -o $(BIN)/weft-bench ./test/bench
	./$(BIN)/weft-bench -bin $(BIN) $(BENCH_ARGS)

# bench-scale (root) measures the control plane at scale: a real etcd with
# 1000, 5000 and 10,000 synthetic leases and one weftd per datapath, the
# datapaths interleaved per size (time until all are programmed, new-lease
# latency, peak RSS, CPU), then at 5000 a churn phase (50 added, changed and
# removed leases per second for 30 s: event-to-datapath latency, weftd's CPU
# per event); written to docs/benchmarks.md under "Control-plane scale" with
# issue 13's targets and the load average at start and end. Flags via
# SCALE_ARGS, e.g. make bench-scale SCALE_ARGS='-datapaths kernel -sizes
# 100,1000 -churn-peers 1000' (-churn-peers 0: no churn phase).
.PHONY: bench-scale
bench-scale: deps
	$(GO) build -o $(BIN)/weft-scale ./test/scale
	./$(BIN)/weft-scale $(SCALE_ARGS)

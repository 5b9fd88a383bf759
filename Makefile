# weft. `make demo` and `make test` install what they need (Debian, as root).
GO      ?= go
BIN     := bin
PKGS    := ./...
APT_PKGS := etcd-server etcd-client containernetworking-plugins nftables iproute2 \
	iperf3 clang llvm libbpf-dev bpftool iputils-ping netcat-openbsd qperf sockperf \
	prometheus tcpdump

.PHONY: all deps build test unit e2e demo bench generate check-generate clean

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

clean:
	rm -rf $(BIN)

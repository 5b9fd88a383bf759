// Package weft is a Kubernetes pod network: flannel's control plane model with
// an eBPF datapath. See README.md.
package weft

// The tc programs in bpf/ and their Go bindings in pkg/datapath/ebpf (run
// `make generate`; clang from Debian, libbpf headers from libbpf-dev). The
// -idirafter paths find Debian's multiarch <asm/types.h> on amd64 and arm64.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -output-dir pkg/datapath/ebpf -go-package ebpf -target bpfel -type addr -type lpm_key -type peer -type family_config -type node_config -type endpoint -type known_node -type traffic -type flow -type pod -type mode -type counter -type drop_reason -type family weft bpf/weft.c -- -mcpu=v3 -Wall -Werror -Iheaders -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include/aarch64-linux-gnu

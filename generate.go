// Package weft is a Kubernetes pod network: flannel's control plane model with
// an eBPF datapath. See README.md.
package weft

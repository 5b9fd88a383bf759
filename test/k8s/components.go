// Package k8s runs a real multi-node Kubernetes cluster on one machine, each
// node a network namespace plus its own mount namespace with containerd, a
// kubelet and kube-proxy, with weft installed from deploy/ as a user
// installs it.
package k8s

// Components are the programs and images a cluster runs, every one built
// from source (Go module proxy) or taken from Debian, and cached.
type Components struct {
	// Version is the Kubernetes version of every Kubernetes binary
	// (e.g. "v1.37.2").
	Version string
	// Kubernetes binaries, all of Version.
	KubeAPIServer, KubeControllerManager, KubeScheduler, Kubelet, KubeProxy, Kubectl string
	// Etcd is the etcd binary the control plane runs.
	Etcd string
	// Containerd, ContainerdShim (containerd-shim-runc-v2), Ctr and Runc
	// run the nodes' containers.
	Containerd, ContainerdShim, Ctr, Runc string
	// KubeRouter runs kube-router's network policy controller per node.
	KubeRouter string
	// Images are OCI archives to import into every node's containerd
	// (ctr -n k8s.io images import), by role.
	Images Images
}

// Images are image archives with the references they carry.
type Images struct {
	// Pause is the sandbox image (containerd's sandbox_image).
	Pause Image
	// CoreDNS serves cluster DNS.
	CoreDNS Image
	// Agnhost is the test workload (k8s.io/kubernetes/test/images/agnhost:
	// netexec, serve-hostname, pause, ...).
	Agnhost Image
	// Weft is weft's own image (make image).
	Weft Image
}

// Image is one image archive.
type Image struct {
	// Archive is the path of the OCI archive.
	Archive string
	// Ref is the image reference pods use (e.g.
	// "registry.k8s.io/pause:3.10"), with imagePullPolicy Never or
	// IfNotPresent.
	Ref string
}

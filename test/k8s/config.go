package k8s

import (
	"fmt"

	"github.com/weftnet/weft/test/kubetest"
)

// The paths inside a node's mount namespace (each node has its own, see
// nodeMounts).
const (
	containerdSocket = "/run/containerd/containerd.sock"
	cniBinDir        = "/opt/cni/bin"
	cniConfDir       = "/etc/cni/net.d"
)

// containerdConfig is containerd's configuration on every node (version 2,
// which containerd 1.6 reads and 2.x migrates): the CRI plugin with the
// pause image as sandbox, runc through the v2 shim with cgroupfs, the
// node's CNI directories, and restrict_oom_score_adj, without which runc
// fails to create any container here (the session may not lower
// oom_score_adj; CLUSTER-NOTES.md).
func containerdConfig(comp Components) string {
	return fmt.Sprintf(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = "/opt/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, containerdSocket, comp.Images.Pause.Ref, comp.Runc, cniBinDir, cniConfDir)
}

// kubeletConfig is node n's KubeletConfiguration (CLUSTER-NOTES.md): cgroups
// v1 allowed, cgroupfs under the node's own cgroupRoot, TLS with the
// serving certificate, clients authenticated by the cluster CA and
// authorized by the API server, low eviction thresholds (every node sees
// the machine's whole disk and memory), no image garbage collection (the
// images cannot be pulled again), and every directory inside the node's
// own mounts.
func kubeletConfig(n *Node, serving kubetest.KeyPair) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [%s]
resolvConf: /etc/resolv.conf
failSwapOn: false
protectKernelDefaults: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
volumePluginDir: /var/lib/kubelet/volume-plugins
`, n.CgroupRoot, containerdSocket, n.IP, serving.CertFile, serving.KeyFile, n.c.pki.CAFile, DNSServiceIP)
}

// kubeProxyConfig is node n's KubeProxyConfiguration in the cluster's
// mode. conntrack's limits and timeouts are left alone: nf_conntrack_max
// is the machine's.
func kubeProxyConfig(n *Node, kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: %s
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, n.c.opts.KubeProxyMode, ClusterCIDR, n.Name)
}

package k8s

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/kubetest"
)

const (
	// apiServerPort is the API server's secure port on InfraIP.
	apiServerPort = 6443
	// apiServerTimeout bounds the API server's start (etcd included).
	apiServerTimeout = 2 * time.Minute
)

// APIServerURL is the API server's address on the underlay.
func APIServerURL() string {
	return "https://" + netip.AddrPortFrom(InfraIP, apiServerPort).String()
}

// controlPlane is the files the control plane and the nodes share.
type controlPlane struct {
	saKey, saPub string // ServiceAccount token signing key pair
}

// startControlPlane creates the infra namespace with the underlay bridge,
// the PKI, and starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler in it, as kubeadm configures them.
func (c *Cluster) startControlPlane(ctx context.Context) error {
	err := c.add(func() error {
		ns, err := cluster.NewNetns(ctx, c.Prefix+"infra")
		c.Infra = ns
		return err
	}, func() error { return c.Infra.Delete() })
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", underlayBridge, "type", "bridge"},
		{"link", "set", underlayBridge, "up"},
		{"addr", "add", netip.PrefixFrom(InfraIP, underlayPrefixLen).String(), "dev", underlayBridge},
	} {
		if _, err := c.Infra.Exec(ctx, "ip", args...); err != nil {
			return err
		}
	}
	dir := filepath.Join(c.Dir, "control-plane")
	if c.pki, err = kubetest.NewPKI(filepath.Join(dir, "pki")); err != nil {
		return err
	}
	if c.AdminKubeconfig, err = c.pki.Kubeconfig("admin", APIServerURL(), "kubernetes-admin", "system:masters"); err != nil {
		return err
	}
	if err := c.adminClient(); err != nil {
		return err
	}
	var cp controlPlane
	if cp.saKey, cp.saPub, err = c.pki.ServiceAccountKey(); err != nil {
		return err
	}
	if err := c.startEtcd(dir); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, dir, cp); err != nil {
		return err
	}
	return c.startControllers(dir, cp)
}

// etcdURL is etcd's client URL, on the infra namespace's loopback.
const etcdURL = "http://127.0.0.1:2379"

// startEtcd starts etcd with its data on tmpfs (it syncs a lot), removed
// at Close.
func (c *Cluster) startEtcd(dir string) error {
	var data string
	err := c.add(func() error {
		var err error
		data, err = os.MkdirTemp("/dev/shm", c.Prefix+"etcd-")
		return err
	}, func() error { return os.RemoveAll(data) })
	if err != nil {
		return fmt.Errorf("etcd data dir: %w", err)
	}
	peer := "http://127.0.0.1:2380"
	_, err = c.startControlPlaneDaemon(dir, "etcd", c.opts.Components.Etcd,
		"--name=infra", "--data-dir="+data,
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=infra="+peer, "--log-level=warn")
	return err
}

// startAPIServer starts kube-apiserver and waits until it is ready.
func (c *Cluster) startAPIServer(ctx context.Context, dir string, cp controlPlane) error {
	serving, err := c.pki.Serving("apiserver",
		[]net.IP{net.IP(APIServiceIP.AsSlice()), net.IP(InfraIP.AsSlice()), net.IPv4(127, 0, 0, 1)},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"})
	if err != nil {
		return err
	}
	kubeletClient, err := c.pki.Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return err
	}
	d, err := c.startControlPlaneDaemon(dir, "kube-apiserver", c.opts.Components.KubeAPIServer,
		"--etcd-servers="+etcdURL,
		"--bind-address=0.0.0.0", "--advertise-address="+InfraIP.String(),
		"--secure-port="+strconv.Itoa(apiServerPort),
		"--tls-cert-file="+serving.CertFile, "--tls-private-key-file="+serving.KeyFile,
		"--client-ca-file="+c.pki.CAFile,
		"--kubelet-client-certificate="+kubeletClient.CertFile, "--kubelet-client-key="+kubeletClient.KeyFile,
		"--kubelet-certificate-authority="+c.pki.CAFile,
		// Nodes are reached by their underlay address, not their names.
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--service-cluster-ip-range="+ServiceCIDR.String(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+cp.saPub,
		"--service-account-signing-key-file="+cp.saKey,
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--profiling=false")
	if err != nil {
		return err
	}
	return cluster.Eventually(ctx, apiServerTimeout, "kube-apiserver ready", func() error {
		if err := d.alive(); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(cctx)
		return err
	})
}

// startControllers starts kube-controller-manager (allocating node CIDRs
// from ClusterCIDR, as weft needs) and kube-scheduler.
func (c *Cluster) startControllers(dir string, cp controlPlane) error {
	kcm, err := c.pki.Kubeconfig("controller-manager", APIServerURL(), "system:kube-controller-manager")
	if err != nil {
		return err
	}
	_, err = c.startControlPlaneDaemon(dir, "kube-controller-manager", c.opts.Components.KubeControllerManager,
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--leader-elect=false",
		"--allocate-node-cidrs=true", "--cluster-cidr="+ClusterCIDR.String(),
		"--node-cidr-mask-size="+strconv.Itoa(nodeCIDRMaskSize),
		"--service-cluster-ip-range="+ServiceCIDR.String(),
		"--configure-cloud-routes=false",
		// Not the default /usr/libexec/kubernetes/...: it would be created
		// on the machine.
		"--flex-volume-plugin-dir="+filepath.Join(dir, "flexvolume"),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+cp.saKey,
		"--root-ca-file="+c.pki.CAFile,
		"--cluster-signing-cert-file="+c.pki.CAFile, "--cluster-signing-key-file="+c.pki.KeyFile,
		"--profiling=false")
	if err != nil {
		return err
	}
	sched, err := c.pki.Kubeconfig("scheduler", APIServerURL(), "system:kube-scheduler")
	if err != nil {
		return err
	}
	_, err = c.startControlPlaneDaemon(dir, "kube-scheduler", c.opts.Components.KubeScheduler,
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false")
	return err
}

// startControlPlaneDaemon starts bin with args in the infra namespace,
// logging to dir/name.log.
func (c *Cluster) startControlPlaneDaemon(dir, name, bin string, args ...string) (*daemon, error) {
	d, err := c.startDaemon(name, dir, c.Infra.Command(context.Background(), bin, args...))
	if err != nil {
		return nil, err
	}
	c.daemons = append(c.daemons, d)
	return d, nil
}

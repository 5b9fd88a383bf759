package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options say where the cluster runs. The zero value is loopback in the
// test's own network namespace.
type Options struct {
	// BindAddress is the IPv4 address etcd and the API server listen on;
	// empty means 127.0.0.1.
	BindAddress string
	// NetNS, if set, runs etcd and the API server inside this named network
	// namespace (ip netns exec; needs root), and the Cluster's clients dial
	// from inside it.
	NetNS string
	// APIServerArgs are extra kube-apiserver flags.
	APIServerArgs []string
}

// Cluster is a running etcd and kube-apiserver with RBAC on.
type Cluster struct {
	// URL is the API server, https://BindAddress:port.
	URL string
	// CA is the PEM CA certificate the API server's certificate chains to.
	CA []byte
	// CAFile holds CA.
	CAFile string
	// AdminToken authenticates as user admin in group system:masters.
	AdminToken string
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// Dir holds the certificates, kubeconfigs and process logs.
	Dir string
	// Dial dials from the namespace the cluster runs in.
	Dial DialFunc
}

// Start runs etcd and kube-apiserver (see Binaries) on random ports and
// returns once the API server is ready. Both stop when t ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	apiserverBin, etcdBin := Binaries(t)
	ip := opts.BindAddress
	if ip == "" {
		ip = "127.0.0.1"
	}
	if net.ParseIP(ip).To4() == nil {
		t.Fatalf("kubetest: BindAddress %q is not an IPv4 address", ip)
	}
	dir := t.TempDir()
	p, err := NewPKI(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	serving, err := p.Serving("apiserver", []net.IP{net.ParseIP(ip), net.IPv4(127, 0, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	saKey, saPub, err := p.ServiceAccountKey()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	ports := freePorts(t, 3)
	host := func(port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	c := &Cluster{
		URL:        "https://" + host(ports[2]),
		CA:         p.CAPEM,
		CAFile:     p.CAFile,
		AdminToken: randomToken(t),
		EtcdURL:    "http://" + host(ports[0]),
		Dir:        dir,
		Dial:       dialer(opts.NetNS),
	}
	peerURL := "http://" + host(ports[1])
	etcd := startProcess(t, dir, opts.NetNS, "etcd", etcdBin,
		"--name=kubetest", "--data-dir="+etcdDataDir(t),
		"--listen-client-urls="+c.EtcdURL, "--advertise-client-urls="+c.EtcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--logger=zap", "--log-level=warn")
	waitReady(t, etcd, time.Minute, func() error { return c.get(c.EtcdURL+"/health", "") })

	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.AdminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	args := append([]string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=" + ip, "--advertise-address=" + ip, "--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
		"--token-auth-file=" + tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true", // the DaemonSet runs privileged
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}, opts.APIServerArgs...)
	apiserver := startProcess(t, dir, opts.NetNS, "kube-apiserver", apiserverBin, args...)
	waitReady(t, apiserver, 3*time.Minute, func() error { return c.get(c.URL+"/readyz", c.AdminToken) })
	return c
}

// etcdDataDir is a fresh directory on tmpfs when there is one (etcd fsyncs
// a lot), removed when t ends.
func etcdDataDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "kubetest-etcd-")
	if err != nil {
		return filepath.Join(t.TempDir(), "etcd")
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freePorts returns n distinct free TCP ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		// Held open until all are picked, so the ports are distinct.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("kubetest: pick a free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return hex.EncodeToString(b)
}

// waitReady polls check until it succeeds, failing t if p exits or timeout
// passes.
func waitReady(t testing.TB, p *process, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if e := p.exited(); e != nil {
			t.Fatalf("kubetest: %v", e)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: %s not ready after %s: %v\n%s", p.name, timeout, err, p.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get fetches url (with a bearer token if set) and wants 200 OK.
func (c *Cluster) get(url, token string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: c.Dial, TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// Config returns a client configuration that authenticates with token.
func (c *Cluster) Config(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA},
		Dial:            c.Dial,
		QPS:             100,
		Burst:           200,
	}
}

// AdminConfig returns a client configuration with cluster-admin rights.
func (c *Cluster) AdminConfig() *rest.Config { return c.Config(c.AdminToken) }

// Admin returns a clientset with cluster-admin rights.
func (c *Cluster) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatalf("kubetest: admin client: %v", err)
	}
	return cs
}

// Kubeconfig writes a kubeconfig file that authenticates with token and
// returns its path. Its clients dial directly (not through Dial).
func (c *Cluster) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CA}
	cfg.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest"}
	cfg.CurrentContext = "kubetest"
	f, err := os.CreateTemp(c.Dir, "kubeconfig-")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	f.Close()
	if err := clientcmd.WriteToFile(*cfg, f.Name()); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return f.Name()
}

// ServiceAccountToken mints a one-hour token for ServiceAccount
// namespace/name, which must exist.
func (c *Cluster) ServiceAccountToken(t testing.TB, namespace, name string) string {
	t.Helper()
	exp := int64(3600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := c.Admin(t).CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

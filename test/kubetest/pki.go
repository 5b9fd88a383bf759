package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// certLifetime is how long the cluster's certificates are valid: a test
// cluster lives for minutes, a demo for hours.
const certLifetime = 7 * 24 * time.Hour

// PKI is a test cluster's certificate authority, writing every key and
// certificate it issues as files in dir.
type PKI struct {
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	CAPEM   []byte
	CAFile  string // the CA certificate (client CA of the API server and the kubelets)
	KeyFile string // the CA key (kube-controller-manager signs CSRs with it)
}

// KeyPair is one issued certificate and its key, as files and PEM.
type KeyPair struct {
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

// NewPKI creates a CA in dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl, err := certTemplate(pkix.Name{CommonName: "weft-test-ca"})
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	p := &PKI{dir: dir, ca: ca, caKey: key, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	kp, err := p.write("ca", p.CAPEM, key)
	if err != nil {
		return nil, err
	}
	p.CAFile, p.KeyFile = kp.CertFile, kp.KeyFile
	return p, nil
}

// certTemplate is a certificate for subject with a random serial, valid
// from an hour ago for certLifetime.
func certTemplate(subject pkix.Name) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}, nil
}

// Serving issues name's TLS serving certificate for ips and dnsNames.
func (p *PKI) Serving(name string, ips []net.IP, dnsNames []string) (KeyPair, error) {
	return p.issue(name, pkix.Name{CommonName: name}, x509.ExtKeyUsageServerAuth, ips, dnsNames)
}

// Client issues a client certificate for user cn in groups (Kubernetes
// reads the subject's CN as the user and O as the groups).
func (p *PKI) Client(name, cn string, groups ...string) (KeyPair, error) {
	return p.issue(name, pkix.Name{CommonName: cn, Organization: groups}, x509.ExtKeyUsageClientAuth, nil, nil)
}

// issue signs a certificate for subject with usage and SANs and writes it
// as name.crt and name.key.
func (p *PKI) issue(name string, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dnsNames []string) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key of %s: %w", name, err)
	}
	tmpl, err := certTemplate(subject)
	if err != nil {
		return KeyPair{}, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	tmpl.IPAddresses, tmpl.DNSNames = ips, dnsNames
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("create certificate %s: %w", name, err)
	}
	return p.write(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key)
}

// write stores a certificate and its key as name.crt and name.key.
func (p *PKI) write(name string, certPEM []byte, key *ecdsa.PrivateKey) (KeyPair, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode key of %s: %w", name, err)
	}
	kp := KeyPair{
		CertFile: filepath.Join(p.dir, name+".crt"),
		KeyFile:  filepath.Join(p.dir, name+".key"),
		CertPEM:  certPEM,
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if err := writeFiles(map[string][]byte{kp.CertFile: kp.CertPEM, kp.KeyFile: kp.KeyPEM}, 0o600); err != nil {
		return KeyPair{}, err
	}
	return kp, nil
}

// ServiceAccountKey writes the key pair that signs ServiceAccount tokens
// and returns the private and public key files.
func (p *PKI) ServiceAccountKey() (priv, pub string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate ServiceAccount key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode ServiceAccount key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("encode ServiceAccount public key: %w", err)
	}
	priv, pub = filepath.Join(p.dir, "sa.key"), filepath.Join(p.dir, "sa.pub")
	return priv, pub, writeFiles(map[string][]byte{
		priv: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}, 0o600)
}

// Kubeconfig issues a client certificate for user cn in groups and writes
// a kubeconfig (name.kubeconfig) that reaches server with it.
func (p *PKI) Kubeconfig(name, server, cn string, groups ...string) (string, error) {
	kp, err := p.Client(name, cn, groups...)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["weft-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.CAPEM}
	cfg.AuthInfos[cn] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["weft-test"] = &clientcmdapi.Context{Cluster: "weft-test", AuthInfo: cn}
	cfg.CurrentContext = "weft-test"
	path := filepath.Join(p.dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return path, nil
}

// writeFiles writes each file with mode perm.
func writeFiles(files map[string][]byte, perm os.FileMode) error {
	for path, data := range files {
		if err := os.WriteFile(path, data, perm); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

package subnetfile

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func sample() Env {
	return Env{
		Network: netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:  netip.MustParsePrefix("10.244.1.0/24"),
		MTU:     1450,
		IPMasq:  true,
	}
}

func TestWriteFormat(t *testing.T) {
	full := sample()
	full.IPv6Network = netip.MustParsePrefix("fd00:10:244::/56")
	full.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:1::/64")
	full.BPFDir = "/sys/fs/bpf/weft"
	full.EndpointDir = "/run/weft/endpoints"
	olderWeftd := sample() // wrote the bpf dir but no endpoint dir
	olderWeftd.BPFDir = full.BPFDir
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"flannel's four lines", sample(),
			"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"},
		{"IPv6, bpf and endpoint dirs", full,
			"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n" +
				"FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\n" +
				"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\nWEFT_BPF_DIR=/sys/fs/bpf/weft\nWEFT_ENDPOINT_DIR=/run/weft/endpoints\n"},
		{"bpf dir without endpoint dir, as an older weftd wrote it", olderWeftd,
			"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\nWEFT_BPF_DIR=/sys/fs/bpf/weft\n"},
	}
	v6only := Env{IPv6Network: full.IPv6Network, IPv6Subnet: full.IPv6Subnet, MTU: 1430}
	tests = append(tests, struct {
		name string
		env  Env
		want string
	}{"IPv6 only, as flanneld writes it", v6only,
		"FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run", "weft", "subnet.env") // directory created by Write
			if err := Write(path, tt.env); err != nil {
				t.Fatalf("Write: %v", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Errorf("file:\n%s\nwant:\n%s", data, tt.want)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", st.Mode().Perm())
			}
			got, err := Read(path)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got != tt.env {
				t.Errorf("Read = %+v, want %+v", got, tt.env)
			}
		})
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	if err := Write(path, sample()); err != nil {
		t.Fatal(err)
	}
	e := sample()
	e.Subnet = netip.MustParsePrefix("10.244.7.0/24")
	e.IPMasq = false
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != e {
		t.Errorf("Read after rewrite = %+v, want %+v", got, e)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only subnet.env (temporary file left behind?)", len(entries))
	}
}

func TestWriteRejectsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	for _, e := range []Env{
		{MTU: 1450},
		{Network: netip.MustParsePrefix("10.244.0.0/16"), MTU: 1450},
		{IPv6Subnet: netip.MustParsePrefix("fd00:10:244:1::/64"), MTU: 1450},
	} {
		if err := Write(path, e); err == nil {
			t.Fatalf("Write(%+v) succeeded", e)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was written: %v", err)
	}
}

func TestReadMasksSubnetAndSkipsExtras(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	data := "# written by flanneld\n\nFLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\nOTHER=x\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Env{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1400}
	if got != want {
		t.Errorf("Read = %+v, want %+v", got, want)
	}
}

func TestReadErrors(t *testing.T) {
	const ok = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	tests := []struct {
		data string
		want string
	}{
		{"FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_NETWORK is missing"},
		{"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET are missing: the file names no subnet"},
		{"FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_IPV6_SUBNET is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_SUBNET is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n", "FLANNEL_MTU is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n", "FLANNEL_IPMASQ is missing"},
		{ok + "garbage\n", `line 5: "garbage" is not KEY=VALUE`},
		{"FLANNEL_NETWORK=10.244.0.0\n", `line 1: FLANNEL_NETWORK="10.244.0.0" is not an IPv4 CIDR`},
		{"FLANNEL_SUBNET=fd00::1/64\n", `line 1: FLANNEL_SUBNET="fd00::1/64" is not an IPv4 CIDR`},
		{ok + "FLANNEL_IPV6_SUBNET=10.0.0.1/24\n", `line 5: FLANNEL_IPV6_SUBNET="10.0.0.1/24" is not an IPv6 CIDR`},
		{"FLANNEL_MTU=big\n", `line 1: FLANNEL_MTU="big" is not a positive number`},
		{"FLANNEL_MTU=0\n", `line 1: FLANNEL_MTU="0" is not a positive number`},
		{"FLANNEL_IPMASQ=yes\n", `line 1: FLANNEL_IPMASQ="yes" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "subnet.env")
			if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if want := "subnet file " + path + ": " + tt.want; err == nil || err.Error() != want {
				t.Errorf("Read error = %v, want %q", err, want)
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "none.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestDockerOpts(t *testing.T) {
	masq := sample()
	noMasq := sample()
	noMasq.IPMasq = false
	noMasq.MTU = 1500
	tests := []struct {
		env  Env
		want string
	}{
		{masq, `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS="--bip=10.244.1.1/24 --ip-masq=false --mtu=1450"
`},
		{noMasq, `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=true"
DOCKER_OPT_MTU="--mtu=1500"
DOCKER_OPTS="--bip=10.244.1.1/24 --ip-masq=true --mtu=1500"
`},
	}
	for _, tt := range tests {
		if got := DockerOpts(tt.env); got != tt.want {
			t.Errorf("DockerOpts(IPMasq=%t):\n%s\nwant:\n%s", tt.env.IPMasq, got, tt.want)
		}
	}
}

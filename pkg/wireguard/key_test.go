package wireguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flannel", "wgkey")
	key, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o400 {
		t.Errorf("key file mode %v, want 0400", st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != key.String() {
		t.Errorf("key file holds %q, want the base64 private key %q", data, key.String())
	}
	again, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != key {
		t.Error("second load returned another key: the public key would change on restart")
	}
}

func TestLoadKeyWrittenByFlannel(t *testing.T) {
	want, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wgkey")
	if err := os.WriteFile(path, []byte(want.String()+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("loaded %s, want %s", got, want)
	}
}

func TestLoadBadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wgkey")
	if err := os.WriteFile(path, []byte("not a key"), 0o400); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateKey(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "not a key" {
		t.Error("a bad key file was overwritten")
	}
}

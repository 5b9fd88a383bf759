// Package wireguard manages the WireGuard devices of weft's wireguard
// backend (flannel's flannel-wg and flannel-wg-v6): the node's private key
// kept in a file, the devices themselves (the kernel's when it has
// WireGuard, else the userspace implementation embedded in weftd) and their
// configuration through wgctrl.
package wireguard

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKey returns the private key stored base64 in path (flannel's
// /run/flannel/wgkey, the key of both devices), creating the file (mode 0400, its directory 0755)
// with a new key when it does not exist, so the public key survives
// restarts.
func LoadOrCreateKey(path string) (wgtypes.Key, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := wgtypes.ParseKey(string(bytes.TrimSpace(data)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("read wireguard private key %s: %w (delete the file to generate a new key)", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return wgtypes.Key{}, fmt.Errorf("read wireguard private key: %w", err)
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate wireguard private key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return wgtypes.Key{}, fmt.Errorf("create directory of wireguard key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("create wireguard key file: %w", err)
	}
	_, werr := f.WriteString(key.String())
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(path)
		return wgtypes.Key{}, fmt.Errorf("write wireguard key file %s: %w", path, err)
	}
	slog.Info("created wireguard private key", "file", path, "public_key", key.PublicKey().String())
	return key, nil
}

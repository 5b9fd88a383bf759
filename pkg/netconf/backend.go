package netconf

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Defaults of the vxlan backend (flannel's).
const (
	DefaultVNI  = 1
	DefaultPort = 8472
)

// Defaults of the udp and wireguard backends (flannel's).
const (
	DefaultUDPPort          = 8285
	DefaultWireGuardPort    = 51820
	DefaultWireGuardPortV6  = 51821
	DefaultWireGuardMode    = "separate"
	wireGuardKeyLen         = 32
	supportedBackendsPhrase = `"vxlan", "host-gw", "udp" or "wireguard"`
)

const maxVNI = 1<<24 - 1

// unsupportedBackends are flannel backend types weft does not implement.
var unsupportedBackends = map[string]bool{
	"ipip": true, "ipsec": true, "alloc": true,
	"extension": true, "gce": true, "aws-vpc": true, "ali-vpc": true, "tencent-vpc": true,
}

// parseBackend validates the Backend object (raw, absent when !present). It
// returns the backend, whether the vxlan default was used, and the keys of
// the object weft ignores.
func parseBackend(raw json.RawMessage, present bool) (Backend, bool, []string, error) {
	if !present {
		return Backend{Type: BackendVXLAN, VNI: DefaultVNI, Port: DefaultPort, Datapath: DatapathAuto}, true, nil, nil
	}
	o, err := decodeObject("Backend.", raw)
	if err != nil {
		return Backend{}, false, nil, err
	}
	var b Backend
	if b.Type, err = o.getString("Type"); err != nil {
		return Backend{}, false, nil, err
	}
	switch {
	case b.Type == BackendVXLAN:
		err = parseVXLAN(o, &b)
	case b.Type == BackendHostGW:
	case b.Type == BackendUDP:
		b.Port, err = parsePort(o, "Port", DefaultUDPPort)
	case b.Type == BackendWireGuard:
		err = parseWireGuard(o, &b)
	case b.Type == "":
		err = fmt.Errorf("Backend.Type is missing: set it to %s", supportedBackendsPhrase)
	case unsupportedBackends[b.Type]:
		err = fmt.Errorf("Backend.Type %q is not supported by weft: use %s", b.Type, supportedBackendsPhrase)
	default:
		err = fmt.Errorf("Backend.Type %q is unknown: use %s", b.Type, supportedBackendsPhrase)
	}
	if err != nil {
		return Backend{}, false, nil, err
	}
	if b.Datapath, err = parseDatapath(o); err != nil {
		return Backend{}, false, nil, err
	}
	if b.GBP && b.Datapath == DatapathEBPF {
		return Backend{}, false, nil, fmt.Errorf("Backend.GBP needs the kernel datapath: set Backend.Datapath to %q or remove GBP", DatapathKernel)
	}
	return b, false, o.ignored(), nil
}

func parseVXLAN(o *object, b *Backend) error {
	var err error
	if b.VNI, err = o.getInt("VNI", DefaultVNI); err != nil {
		return err
	}
	if b.VNI < 0 || b.VNI > maxVNI {
		return fmt.Errorf("Backend.VNI %d is out of range: use 0 to %d (flannel's default is %d)", b.VNI, maxVNI, DefaultVNI)
	}
	if b.Port, err = parsePort(o, "Port", DefaultPort); err != nil {
		return err
	}
	if b.MTU, err = parseMTU(o, 50); err != nil {
		return err
	}
	for _, opt := range []struct {
		key string
		dst *bool
	}{{"GBP", &b.GBP}, {"DirectRouting", &b.DirectRouting}, {"Learning", &b.Learning}} {
		if *opt.dst, err = o.getBool(opt.key, false); err != nil {
			return err
		}
	}
	return nil
}

func parseDatapath(o *object) (string, error) {
	d, err := o.getString("Datapath")
	if err != nil {
		return "", err
	}
	switch d {
	case "":
		return DatapathAuto, nil
	case DatapathAuto, DatapathEBPF, DatapathKernel:
		return d, nil
	}
	return "", fmt.Errorf("Backend.Datapath %q is unknown: use %q, %q or %q", d, DatapathAuto, DatapathEBPF, DatapathKernel)
}

// parsePort reads a UDP port option; 0 or absent means def.
func parsePort(o *object, key string, def int) (int, error) {
	p, err := o.getInt(key, 0)
	if err != nil {
		return 0, err
	}
	if p < 0 || p > 65535 {
		return 0, fmt.Errorf("Backend.%s %d is out of range: use 1 to 65535, or 0 for %d", key, p, def)
	}
	if p == 0 {
		p = def
	}
	return p, nil
}

// parseMTU reads the MTU option of a backend whose encapsulation costs
// overhead bytes; 0 or absent means the uplink MTU - overhead.
func parseMTU(o *object, overhead int) (int, error) {
	mtu, err := o.getInt("MTU", 0)
	if err != nil {
		return 0, err
	}
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return 0, fmt.Errorf("Backend.MTU %d is out of range: use 68 to 65535, or remove it for the uplink MTU - %d", mtu, overhead)
	}
	return mtu, nil
}

// parseWireGuard reads flannel's wireguard options.
func parseWireGuard(o *object, b *Backend) error {
	var err error
	if b.Port, err = parsePort(o, "ListenPort", DefaultWireGuardPort); err != nil {
		return err
	}
	if b.ListenPortV6, err = parsePort(o, "ListenPortV6", DefaultWireGuardPortV6); err != nil {
		return err
	}
	if b.MTU, err = parseMTU(o, 80); err != nil {
		return err
	}
	if b.PSK, err = o.getString("PSK"); err != nil {
		return err
	}
	if b.PSK != "" {
		if k, err := base64.StdEncoding.DecodeString(b.PSK); err != nil || len(k) != wireGuardKeyLen {
			return errors.New("Backend.PSK is not a wireguard key: use 32 bytes in base64 (`wg genpsk`), or remove it")
		}
	}
	secs, err := o.getInt("PersistentKeepaliveInterval", 0)
	if err != nil {
		return err
	}
	if secs < 0 || secs > 65535 {
		return fmt.Errorf("Backend.PersistentKeepaliveInterval %d is out of range: use 0 (off) to 65535 seconds", secs)
	}
	b.Keepalive = time.Duration(secs) * time.Second
	if b.WireGuardMode, err = o.getString("Mode"); err != nil {
		return err
	}
	switch b.WireGuardMode {
	case "":
		b.WireGuardMode = DefaultWireGuardMode
	case "separate", "auto", "ipv4":
	case "ipv6":
		return errors.New(`Backend.Mode "ipv6" carries pod traffic over IPv6, which weft's wireguard backend does not support: use "separate", "auto" or "ipv4"`)
	default:
		return fmt.Errorf(`Backend.Mode %q is unknown: use "separate", "auto" or "ipv4"`, b.WireGuardMode)
	}
	return nil
}

package netconf

import (
	"encoding/json"
	"fmt"
)

// Defaults of the vxlan backend (flannel's).
const (
	DefaultVNI  = 1
	DefaultPort = 8472
)

const maxVNI = 1<<24 - 1

// unsupportedBackends are flannel backend types weft does not implement.
var unsupportedBackends = map[string]bool{
	"udp": true, "wireguard": true, "ipip": true, "ipsec": true, "alloc": true,
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
	case b.Type == "":
		err = fmt.Errorf("Backend.Type is missing: set it to %q or %q", BackendVXLAN, BackendHostGW)
	case unsupportedBackends[b.Type]:
		err = fmt.Errorf("Backend.Type %q is not supported by weft: use %q or %q", b.Type, BackendVXLAN, BackendHostGW)
	default:
		err = fmt.Errorf("Backend.Type %q is unknown: use %q or %q", b.Type, BackendVXLAN, BackendHostGW)
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
	if b.Port, err = o.getInt("Port", 0); err != nil {
		return err
	}
	if b.Port < 0 || b.Port > 65535 {
		return fmt.Errorf("Backend.Port %d is out of range: use 1 to 65535, or 0 for %d", b.Port, DefaultPort)
	}
	if b.Port == 0 {
		b.Port = DefaultPort
	}
	if b.MTU, err = o.getInt("MTU", 0); err != nil {
		return err
	}
	if b.MTU != 0 && (b.MTU < 68 || b.MTU > 65535) {
		return fmt.Errorf("Backend.MTU %d is out of range: use 68 to 65535, or remove it for the uplink MTU - 50", b.MTU)
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

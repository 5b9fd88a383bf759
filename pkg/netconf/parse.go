package netconf

import (
	"errors"
	"fmt"
	"os"
)

// Parse decodes and validates net-conf.json the way flannel does and fills in
// every default. Its errors are one line that starts with "net-conf.json: ",
// names the key and says what to change. Keys weft does not use are not an
// error (flannel ignores them too) but are listed in Config.Ignored.
func Parse(data []byte) (*Config, error) {
	c, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("net-conf.json: %w", err)
	}
	return c, nil
}

// ParseFile is Parse on the file at path; its errors start with the path.
func ParseFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read net-conf.json: %w", err)
	}
	c, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ipv6Backends are the backend types that carry IPv6 pod traffic.
var ipv6Backends = map[string]bool{BackendVXLAN: true, BackendHostGW: true}

func parse(data []byte) (*Config, error) {
	o, err := decodeObject("", data)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if c.EnableIPv4, err = o.getBool("EnableIPv4", true); err != nil {
		return nil, err
	}
	if c.EnableIPv6, err = o.getBool("EnableIPv6", false); err != nil {
		return nil, err
	}
	if c.EnableNFTables, err = o.getBool("EnableNFTables", false); err != nil {
		return nil, err
	}
	v4, err := ipv4.decode(o)
	if err != nil {
		return nil, err
	}
	v6, err := ipv6.decode(o)
	if err != nil {
		return nil, err
	}
	if !c.EnableIPv4 && !c.EnableIPv6 {
		return nil, errors.New("EnableIPv4 and EnableIPv6 are both false: enable at least one address family")
	}
	if c.EnableIPv4 {
		if v4, err = ipv4.validate(v4); err != nil {
			return nil, err
		}
		c.Network, c.SubnetLen, c.SubnetMin, c.SubnetMax = v4.Network, v4.SubnetLen, v4.SubnetMin, v4.SubnetMax
	}
	if c.EnableIPv6 {
		if v6, err = ipv6.validate(v6); err != nil {
			return nil, err
		}
		c.IPv6Network, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax = v6.Network, v6.SubnetLen, v6.SubnetMin, v6.SubnetMax
	}
	raw, present := o.lookup("Backend")
	backend, defaulted, ignored, err := parseBackend(raw, present)
	if err != nil {
		return nil, err
	}
	if c.EnableIPv6 && !ipv6Backends[backend.Type] {
		return nil, fmt.Errorf("EnableIPv6 is true but Backend.Type is %q: weft supports IPv6 with \"vxlan\" and \"host-gw\"", backend.Type)
	}
	c.Backend, c.DefaultedBackend = backend, defaulted
	c.Ignored = append(o.ignored(), ignored...)
	return c, nil
}

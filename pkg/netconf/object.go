package netconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// object is one JSON object of net-conf.json. Keys are matched the way
// encoding/json (and so flannel) matches struct fields: exactly, else
// case-insensitively. Every getter names the key in its error and marks the
// key as used, so the keys nobody asked for can be reported as ignored.
type object struct {
	path string // key prefix for messages: "" or "Backend."
	raw  map[string]json.RawMessage
	used map[string]bool
}

// decodeObject decodes data, which must be a JSON object.
func decodeObject(path string, data []byte) (*object, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			line := 1 + bytes.Count(data[:syn.Offset], []byte("\n"))
			return nil, fmt.Errorf("not valid JSON: %v (line %d)", syn, line)
		}
		if path == "" {
			return nil, errors.New(`must be a JSON object like {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
		}
		return nil, fmt.Errorf(`%s must be an object like {"Type": "vxlan"}`, strings.TrimSuffix(path, "."))
	}
	if raw == nil { // the JSON was null
		return nil, errors.New(`must be a JSON object, not null`)
	}
	return &object{path: path, raw: raw, used: map[string]bool{}}, nil
}

// lookup returns the value of key; a JSON null counts as absent.
func (o *object) lookup(key string) (json.RawMessage, bool) {
	k, ok := o.match(key)
	if !ok {
		return nil, false
	}
	o.used[k] = true
	v := o.raw[k]
	if string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

func (o *object) match(key string) (string, bool) {
	if _, ok := o.raw[key]; ok {
		return key, true
	}
	for k := range o.raw {
		if strings.EqualFold(k, key) {
			return k, true
		}
	}
	return "", false
}

// ignored returns the keys no getter asked for, prefixed with the path.
func (o *object) ignored() []string {
	var keys []string
	for k := range o.raw {
		if !o.used[k] {
			keys = append(keys, o.path+k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (o *object) getInt(key string, def int) (int, error) {
	v, ok := o.lookup(key)
	if !ok {
		return def, nil
	}
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, fmt.Errorf("%s%s must be a whole number, not %s", o.path, key, v)
	}
	return n, nil
}

func (o *object) getBool(key string, def bool) (bool, error) {
	v, ok := o.lookup(key)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("%s%s must be true or false, not %s", o.path, key, v)
	}
	return b, nil
}

func (o *object) getString(key string) (string, error) {
	v, ok := o.lookup(key)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s%s must be a string, not %s", o.path, key, v)
	}
	return s, nil
}

// prefix reads a CIDR of family f; host bits are cleared, as flannel does.
func (o *object) getPrefix(key string, f family) (netip.Prefix, error) {
	s, err := o.getString(key)
	if err != nil || s == "" {
		return netip.Prefix{}, err
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().BitLen() != f.bits || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s%s must be an %s CIDR like %q, not %q", o.path, key, f.name, f.examplePrefix, s)
	}
	return p.Masked(), nil
}

// addr reads an address of family f; the unspecified address counts as unset,
// as in flannel.
func (o *object) getAddr(key string, f family) (netip.Addr, error) {
	s, err := o.getString(key)
	if err != nil || s == "" {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.BitLen() != f.bits || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s%s must be an %s address like %q, not %q", o.path, key, f.name, f.exampleAddr, s)
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	return a, nil
}

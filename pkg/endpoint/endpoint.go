// Package endpoint stores the node's pod endpoints as weft-cni created them:
// one JSON record per pod interface in a directory (DefaultDir), written at
// ADD before the plugin returns and removed at DEL. The records are the
// truth the eBPF datapath's endpoint maps are derived from: their addresses
// come from IPAM and their MAC from the interface the plugin made, so a pod
// cannot claim another's address by changing its own interface.
package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/pkg/atomicfile"
)

// DefaultDir is where weftd keeps the records (tmpfs: pods are recreated,
// and re-added, after a reboot).
const DefaultDir = "/run/weft/endpoints"

// A record's file is "<containerID>:<ifName>.json", or ":<hostIfName>.json"
// when adopted (':' is in neither CNI container IDs nor interface names).
const suffix = ".json"

// Record is one pod interface.
type Record struct {
	// ContainerID and IfName identify the CNI attachment; ContainerID is
	// empty for a record adopted from a map entry an older weft wrote.
	ContainerID string `json:"containerID,omitempty"`
	IfName      string `json:"ifName,omitempty"`
	// HostIfName is the host end of the pod's veth.
	HostIfName string `json:"hostIfName"`
	// MAC is the pod interface's MAC.
	MAC string `json:"mac"`
	// IPs are the pod's addresses, at most one per family.
	IPs []netip.Addr `json:"ips"`
}

// HardwareAddr returns the record's MAC parsed.
func (r Record) HardwareAddr() (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(r.MAC)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: MAC %q: %w", r.HostIfName, r.MAC, err)
	}
	return mac, nil
}

// name is the record's file name: by attachment, or by host veth for an
// adopted record.
func (r Record) name() (string, error) {
	if r.ContainerID == "" {
		if !safeName(r.HostIfName) {
			return "", fmt.Errorf("endpoint record: invalid host interface name %q", r.HostIfName)
		}
		return ":" + r.HostIfName + suffix, nil
	}
	if !safeName(r.ContainerID) || !safeName(r.IfName) {
		return "", fmt.Errorf("endpoint record: invalid container ID %q or interface %q", r.ContainerID, r.IfName)
	}
	return r.ContainerID + ":" + r.IfName + suffix, nil
}

// validate checks what the datapath relies on.
func (r Record) validate() error {
	if r.HostIfName == "" {
		return errors.New("no host interface")
	}
	if _, err := r.HardwareAddr(); err != nil {
		return err
	}
	if len(r.IPs) == 0 {
		return errors.New("no address")
	}
	for _, ip := range r.IPs {
		if !ip.IsValid() || ip.Is4In6() || ip.Zone() != "" {
			return fmt.Errorf("address %s is not a plain IPv4 or IPv6 address", ip)
		}
	}
	return nil
}

// safeName reports whether s can be part of a file name in the store.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/:\x00")
}

// Store is a directory of records.
type Store struct {
	// Dir is the directory; DefaultDir when empty.
	Dir string
}

func (s Store) dir() string {
	if s.Dir == "" {
		return DefaultDir
	}
	return s.Dir
}

// Save writes r atomically, replacing an earlier record of the same
// attachment (or, adopted, the same host veth).
func (s Store) Save(r Record) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("save endpoint record %s: %w", r.HostIfName, err)
	}
	name, err := r.name()
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode endpoint record %s: %w", name, err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir(), name), data, 0o600, 0o700); err != nil {
		return fmt.Errorf("save endpoint record: %w", err)
	}
	return nil
}

// Load returns the record of the attachment containerID/ifName; the error
// wraps fs.ErrNotExist when there is none.
func (s Store) Load(containerID, ifName string) (Record, error) {
	name, err := Record{ContainerID: containerID, IfName: ifName}.name()
	if err != nil {
		return Record{}, err
	}
	return read(filepath.Join(s.dir(), name))
}

// Remove deletes r's record; a missing one is no error.
func (s Store) Remove(r Record) error {
	name, err := r.name()
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.dir(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove endpoint record %s: %w", name, err)
	}
	return nil
}

// List returns every valid record; a missing directory is an empty store.
// A record that cannot be read or is invalid is logged and skipped (its pod
// stays on the kernel path), never fatal.
func (s Store) List() ([]Record, error) {
	entries, err := os.ReadDir(s.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list endpoint records: %w", err)
	}
	var out []Record
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		path := filepath.Join(s.dir(), e.Name())
		r, err := read(path)
		if err != nil {
			slog.Warn("skipping endpoint record", "path", path, "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func read(path string) (Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Record{}, fmt.Errorf("read endpoint record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("parse endpoint record: %w", err)
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

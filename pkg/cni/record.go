package cni

import (
	"errors"
	"io/fs"
	"log/slog"
	"slices"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/endpoint"
)

// The plugin keeps a record of each pod interface it added with the ebpf
// datapath (pkg/endpoint) in the subnet file's WEFT_ENDPOINT_DIR; weftd
// derives the endpoint maps from the records. Records are best effort in
// every verb: without one the pod takes the kernel path, which works, so a
// record never fails ADD, DEL or GC.

// record is ep as the endpoint store keeps it, for the attachment
// containerID/ifName.
func (ep Endpoint) record(containerID, ifName string) endpoint.Record {
	return endpoint.Record{ContainerID: containerID, IfName: ifName, HostIfName: ep.HostIfName, MAC: ep.MAC.String(), IPs: ep.IPs}
}

// fallbackEndpointDir is where records go when the subnet file names no
// directory: it was written by a weftd older than the records (during an
// upgrade, or while the new weftd is not up yet), and the new weftd looks
// in the default directory unless told otherwise. A variable for tests.
var fallbackEndpointDir = endpoint.DefaultDir

// recordEndpoint saves ep's record in dir (fallbackEndpointDir when empty)
// before the plugin registers ep with the endpoint maps, and reports
// whether it may: weftd would remove an entry no record backs.
func recordEndpoint(dir, containerID, ifName string, ep Endpoint) bool {
	if dir == "" {
		dir = fallbackEndpointDir
	}
	if err := (endpoint.Store{Dir: dir}).Save(ep.record(containerID, ifName)); err != nil {
		slog.Warn("pod endpoint not recorded: its traffic takes the kernel path", "container", containerID, "hostIf", ep.HostIfName, "err", err)
		return false
	}
	return true
}

// forgetEndpoint removes the attachment containerID/ifName from the
// endpoint maps in bpfDir (none: the kernel datapath) and its record from
// dir (endpoint.DefaultDir when empty: the subnet file may be gone at DEL,
// or name no directory while weftd runs the kernel datapath). The addresses
// are the record's, which came from IPAM, never read from the pod (which
// could name a neighbour's). Without a record there is nothing of the
// pod's to remove: weftd keeps no entry a record does not back. Failures
// are logged: weftd removes records whose veth is gone, with their entries.
func forgetEndpoint(bpfDir, dir, containerID, ifName string) {
	store := endpoint.Store{Dir: dir}
	r, err := store.Load(containerID, ifName)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		slog.Warn("pod endpoint record unreadable; weftd removes it once the pod's veth is gone", "container", containerID, "err", err)
		return
	}
	// The record first, so weftd does not put back the entries of a pod
	// that goes.
	if err := store.Remove(r); err != nil {
		slog.Warn("pod endpoint record not removed; weftd removes it once the pod's veth is gone", "container", containerID, "err", err)
		return
	}
	if bpfDir == "" {
		return
	}
	for _, ip := range r.IPs {
		if err := ebpf.UnregisterEndpoint(bpfDir, ip); err != nil {
			slog.Warn("unregister pod from the ebpf datapath", "ip", ip, "err", err)
		}
	}
}

// collectRecords removes the records in dir (endpoint.DefaultDir when
// empty) of attachments not in valid. Adopted records (no container ID) are
// weftd's, and a record whose container has a saved config of another
// network is that network's to collect.
func collectRecords(dir, dataDir, network string, valid []types.GCAttachment) {
	store := endpoint.Store{Dir: dir}
	records, err := store.List()
	if err != nil {
		slog.Warn("pod endpoint records not collected", "err", err)
		return
	}
	for _, r := range records {
		if r.ContainerID == "" || slices.ContainsFunc(valid, func(a types.GCAttachment) bool {
			return a.ContainerID == r.ContainerID && (a.IfName == "" || a.IfName == r.IfName)
		}) {
			continue
		}
		if d, err := loadDelegate(dataDir, r.ContainerID); err == nil && d["name"] != network {
			continue
		}
		forgetEndpoint("", dir, r.ContainerID, r.IfName)
	}
}

package cni

import (
	"log/slog"
	"slices"

	"github.com/containernetworking/cni/pkg/types"

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

// recordEndpoint saves ep's record in dir before the plugin registers ep
// with the endpoint maps, and reports whether it may: weftd would remove an
// entry no record backs. An empty dir (the subnet file of a weftd older
// than the records) records nothing; that weftd keeps what the plugin
// registers.
func recordEndpoint(dir, containerID, ifName string, ep Endpoint) bool {
	if dir == "" {
		return true
	}
	if err := (endpoint.Store{Dir: dir}).Save(ep.record(containerID, ifName)); err != nil {
		slog.Warn("pod endpoint not recorded: its traffic takes the kernel path", "container", containerID, "hostIf", ep.HostIfName, "err", err)
		return false
	}
	return true
}

// forgetRecord removes the record of the attachment containerID/ifName from
// dir (endpoint.DefaultDir when empty: the subnet file may be gone at DEL,
// or name no directory while weftd runs the kernel datapath). A failure is
// logged: weftd removes records whose veth is gone.
func forgetRecord(dir, containerID, ifName string) {
	if err := (endpoint.Store{Dir: dir}).Remove(endpoint.Record{ContainerID: containerID, IfName: ifName}); err != nil {
		slog.Warn("pod endpoint record not removed; weftd removes it once the pod's veth is gone", "container", containerID, "err", err)
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
		forgetRecord(dir, r.ContainerID, r.IfName)
	}
}

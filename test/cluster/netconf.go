package cluster

import "encoding/json"

// PodNetwork is the cluster's pod network in every NetConf.
const PodNetwork = "10.244.0.0/16"

// NetConf returns net-conf.json for Network PodNetwork with the given
// Backend.Type ("vxlan", "host-gw"), Backend.Datapath ("kernel", "ebpf",
// "auto"; "" leaves it out) and vxlan DirectRouting.
func NetConf(backend, datapath string, directRouting bool) string {
	type backendConf struct {
		Type          string
		DirectRouting bool   `json:",omitempty"`
		Datapath      string `json:",omitempty"`
	}
	b, err := json.Marshal(struct {
		Network string
		Backend backendConf
	}{PodNetwork, backendConf{backend, directRouting, datapath}})
	if err != nil {
		panic(err) // strings and a bool always marshal
	}
	return string(b)
}

// Command weft-cni is weft's CNI plugin. It takes flannel's plugin config
// unchanged and can be installed as /opt/cni/bin/flannel; see package cni.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftnet/weft/pkg/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.PluginInfo, "weft-cni: flannel-compatible CNI plugin (bridge + host-local delegate)")
}

package kubetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftnet/weft/pkg/cni"
	"github.com/weftnet/weft/pkg/netconf"
)

// find returns the manifest's object of kind, failing t if there is not
// exactly one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("manifest has %d %s objects, want 1", len(found), kind)
	}
	return found[0]
}

func str(t *testing.T, o *unstructured.Unstructured, path ...string) string {
	t.Helper()
	s, ok, err := unstructured.NestedString(o.Object, path...)
	if !ok || err != nil {
		t.Fatalf("%s: no string at %s (%v)", o.GetKind(), strings.Join(path, "."), err)
	}
	return s
}

// TestManifestContent checks what the API server cannot: the ConfigMap's
// files parse, and the DaemonSet runs weftd as the docs say.
func TestManifestContent(t *testing.T) {
	objs, err := ReadManifest(ManifestPath(t))
	if err != nil {
		t.Fatal(err)
	}
	cm := find(t, objs, "ConfigMap")
	nc, err := netconf.Parse([]byte(str(t, cm, "data", "net-conf.json")))
	if err != nil {
		t.Fatalf("ConfigMap net-conf.json: %v", err)
	}
	if nc.Network.String() != "10.244.0.0/16" || nc.Backend.Type != netconf.BackendVXLAN || nc.Backend.Datapath != netconf.DatapathAuto {
		t.Errorf("net-conf.json: Network %s, Backend %+v; want 10.244.0.0/16, vxlan, auto", nc.Network, nc.Backend)
	}
	var conflist struct {
		Name       string `json:"name"`
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type         string          `json:"type"`
			Delegate     map[string]any  `json:"delegate"`
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(str(t, cm, "data", "cni-conf.json")), &conflist); err != nil {
		t.Fatalf("ConfigMap cni-conf.json: %v", err)
	}
	if conflist.Name != "cbr0" || conflist.CNIVersion != "0.3.1" || len(conflist.Plugins) != 2 ||
		conflist.Plugins[0].Type != "weft" || conflist.Plugins[0].Delegate["hairpinMode"] != true ||
		conflist.Plugins[0].Delegate["isDefaultGateway"] != true ||
		conflist.Plugins[1].Type != "portmap" || !conflist.Plugins[1].Capabilities["portMappings"] {
		t.Errorf("cni-conf.json = %+v", conflist)
	}

	ds := find(t, objs, "DaemonSet")
	spec := func(path ...string) []any {
		s, _, err := unstructured.NestedSlice(ds.Object, append([]string{"spec", "template", "spec"}, path...)...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	weftd := spec("containers")[0].(map[string]any)
	args, _, _ := unstructured.NestedStringSlice(weftd, "args")
	for _, want := range []string{"--kube-subnet-mgr", "--ip-masq", "--net-config-path=/etc/weft/net-conf.json", "--healthz-port=8471"} {
		if !slices.Contains(args, want) {
			t.Errorf("weftd args %v lack %s", args, want)
		}
	}
	if tol := spec("tolerations"); len(tol) != 1 || tol[0].(map[string]any)["operator"] != "Exists" || len(tol[0].(map[string]any)) != 1 {
		t.Errorf("tolerations %v, want one {operator: Exists}", tol)
	}
	if p := str(t, ds, "spec", "template", "spec", "priorityClassName"); p != "system-node-critical" {
		t.Errorf("priorityClassName %q", p)
	}
	// install-cni runs `weft-cni install` (no shell) with its defaults, which
	// must match the mounts: /opt/cni/bin/weft, /etc/cni/net.d/10-weft.conflist
	// from the ConfigMap's cni-conf.json.
	install := spec("initContainers")[0].(map[string]any)
	command, _, _ := unstructured.NestedStringSlice(install, "command")
	args, _, _ = unstructured.NestedStringSlice(install, "args")
	if !slices.Equal(command, []string{"/usr/local/bin/weft-cni", "install"}) || len(args) != 0 {
		t.Errorf("install-cni runs %v %v, want [/usr/local/bin/weft-cni install]", command, args)
	}
	if cni.DefaultBinDir+"/"+cni.DefaultPluginName != "/opt/cni/bin/weft" ||
		cni.DefaultConfDir+"/"+cni.DefaultConflistName != "/etc/cni/net.d/10-weft.conflist" {
		t.Errorf("weft-cni install's defaults %s/%s, %s/%s differ from the docs", cni.DefaultBinDir, cni.DefaultPluginName,
			cni.DefaultConfDir, cni.DefaultConflistName)
	}
	mounts := map[string]string{}
	ms, _, _ := unstructured.NestedSlice(install, "volumeMounts")
	for _, m := range ms {
		mounts[m.(map[string]any)["mountPath"].(string)] = m.(map[string]any)["name"].(string)
	}
	for path, volume := range map[string]string{cni.DefaultBinDir: "cni-bin", cni.DefaultConfDir: "cni-conf",
		filepath.Dir(cni.DefaultConflistSrc): "weft-cfg"} {
		if mounts[path] != volume {
			t.Errorf("install-cni mounts %q at %s, want volume %q", mounts[path], path, volume)
		}
	}
	if _, ok := cm.Object["data"].(map[string]any)[filepath.Base(cni.DefaultConflistSrc)]; !ok {
		t.Errorf("ConfigMap has no %s for weft-cni install", filepath.Base(cni.DefaultConflistSrc))
	}

	kust, err := os.ReadFile(filepath.Join(filepath.Dir(ManifestPath(t)), "kustomization.yaml"))
	if err != nil || !strings.Contains(string(kust), "- weft.yaml") {
		t.Errorf("kustomization.yaml does not list weft.yaml (%v)", err)
	}
}

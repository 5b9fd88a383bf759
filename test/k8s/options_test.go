package k8s

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/test/kubetest"
)

// TestWeftOverlay: the kustomization that installs weft keeps deploy/ as
// its base, overrides deploy/weft.yaml's image with the reference given
// (tag or digest) and changes only net-conf.json's Backend.Datapath.
func TestWeftOverlay(t *testing.T) {
	deploy := filepath.Join(kubetest.RepoRoot(t), "deploy")
	dir := t.TempDir()
	for _, tc := range []struct {
		ref  string
		want map[string]string
	}{
		{"ghcr.io/weftnet/weft:dev", map[string]string{"name": weftImage, "newName": "ghcr.io/weftnet/weft", "newTag": "dev"}},
		{"example.test:5000/w/weft@sha256:" + strings.Repeat("ab", 32), map[string]string{"name": weftImage, "newName": "example.test:5000/w/weft", "digest": "sha256:" + strings.Repeat("ab", 32)}},
	} {
		data, err := weftOverlay(dir, deploy, tc.ref, "kernel")
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Resources []string
			Images    []map[string]string
			Patches   []struct {
				Target map[string]string
				Patch  string
			}
		}
		if err := json.Unmarshal(data, &k); err != nil {
			t.Fatalf("overlay is not JSON: %v\n%s", err, data)
		}
		if len(k.Resources) != 1 || filepath.Join(dir, k.Resources[0]) != deploy {
			t.Errorf("resources %v: want deploy/ (%s) relative to %s", k.Resources, deploy, dir)
		}
		if len(k.Images) != 1 || !maps.Equal(k.Images[0], tc.want) {
			t.Errorf("%s: images %v, want [%v]", tc.ref, k.Images, tc.want)
		}
		if len(k.Patches) != 1 || k.Patches[0].Target["name"] != weftConfigMap {
			t.Fatalf("patches %+v: want one of ConfigMap %s", k.Patches, weftConfigMap)
		}
		var ops []struct{ Op, Path, Value string }
		if err := json.Unmarshal([]byte(k.Patches[0].Patch), &ops); err != nil || len(ops) != 1 {
			t.Fatalf("patch %q: %v", k.Patches[0].Patch, err)
		}
		var conf struct {
			Network string
			Backend map[string]any
		}
		if err := json.Unmarshal([]byte(ops[0].Value), &conf); err != nil {
			t.Fatalf("net-conf.json %q: %v", ops[0].Value, err)
		}
		if conf.Network != ClusterCIDR.String() || conf.Backend["Type"] != "vxlan" || conf.Backend["Datapath"] != "kernel" {
			t.Errorf("net-conf.json %s: want deploy's (Network %s, vxlan) with Datapath kernel", ops[0].Value, ClusterCIDR)
		}
	}
	if _, err := weftOverlay(dir, deploy, "Not A Reference", "ebpf"); err == nil {
		t.Error("an invalid image reference was accepted")
	}
}

// TestOptions: defaults are filled in, and a bad option or a missing
// component is refused with an error naming it.
func TestOptions(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exe, archive := file("exe", 0o755), file("archive.tar", 0o644)
	img := Image{Archive: archive, Ref: "example.test/img:1"}
	comp := Components{
		KubeAPIServer: exe, KubeControllerManager: exe, KubeScheduler: exe, Kubelet: exe, KubeProxy: exe,
		Kubectl: exe, Etcd: exe, Containerd: exe, ContainerdShim: exe, Ctr: exe, Runc: exe,
		Images: Images{Pause: img, CoreDNS: img, Agnhost: img, Weft: img},
	}
	opts := Options{Components: comp}
	if err := opts.complete(); err != nil {
		t.Fatal(err)
	}
	if opts.Nodes != 3 || opts.Datapath != "ebpf" || opts.KubeProxyMode != "iptables" || filepath.Base(opts.Deploy) != "deploy" {
		t.Errorf("defaults: %+v", opts)
	}
	noKubelet := comp
	noKubelet.Kubelet = file("not-executable", 0o644)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Components: comp, Nodes: 2}, "Nodes"},
		{Options{Components: comp, Datapath: "xdp"}, "Datapath"},
		{Options{Components: comp, KubeProxyMode: "ipvs"}, "KubeProxyMode"},
		{Options{Components: noKubelet}, "Components.Kubelet"},
	} {
		if err := tc.opts.complete(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.opts, err, tc.want)
		}
	}
}

package k8s

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftnet/weft/test/kubetest"
)

const (
	// weftImage is the image deploy/weft.yaml names (without its tag),
	// which the overlay overrides.
	weftImage = "ghcr.io/weftnet/weft"
	// weftConfigMap holds net-conf.json in deploy/weft.yaml.
	weftConfigMap = "weft-cfg"
	// WeftNamespace is deploy/weft.yaml's namespace; its DaemonSet is
	// "weft", its pods are labeled app=weft.
	WeftNamespace = "kube-weft"
	// Weftctl is weftctl's path in weft's image (container weftd of the
	// pod WeftPod names runs it: kubectl exec).
	Weftctl = "/usr/local/bin/weftctl"
)

// installWeft installs weft as a user would: `kubectl apply -k` of a
// kustomization that uses the repository's deploy/ as its base, with the
// image set to Components.Images.Weft.Ref and net-conf.json's datapath set
// to Options.Datapath.
func (c *Cluster) installWeft(ctx context.Context) error {
	dir := filepath.Join(c.Dir, "weft-overlay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kust, err := weftOverlay(dir, c.opts.Deploy, c.opts.Components.Images.Weft.Ref, c.opts.Datapath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), kust, 0o644); err != nil {
		return err
	}
	_, err = c.Kubectl(ctx, "apply", "-k", dir)
	return err
}

// weftOverlay is the kustomization (in dir) that installs deploy with
// image ref and net-conf.json's Backend.Datapath set to datapath. It is
// JSON, which is YAML.
func weftOverlay(dir, deploy, ref, datapath string) ([]byte, error) {
	base, err := filepath.Rel(dir, deploy)
	if err != nil {
		return nil, fmt.Errorf("deploy/ relative to the overlay: %w", err)
	}
	image, err := imageOverride(ref)
	if err != nil {
		return nil, err
	}
	netConf, err := netConfWithDatapath(filepath.Join(deploy, "weft.yaml"), datapath)
	if err != nil {
		return nil, err
	}
	patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/data/net-conf.json", "value": netConf}})
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  []string{base},
		"images":     []map[string]string{image},
		"patches": []map[string]any{{
			"target": map[string]string{"version": "v1", "kind": "ConfigMap", "name": weftConfigMap, "namespace": WeftNamespace},
			"patch":  string(patch),
		}},
	}, "", "  ")
}

// imageOverride is the kustomize images: entry that replaces weftImage by
// ref (a tag or a digest reference).
func imageOverride(ref string) (map[string]string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("weft image %q: %w", ref, err)
	}
	o := map[string]string{"name": weftImage, "newName": r.Context().Name()}
	switch r := r.(type) {
	case name.Tag:
		o["newTag"] = r.TagStr()
	case name.Digest:
		o["digest"] = r.DigestStr()
	}
	return o, nil
}

// netConfWithDatapath is the net-conf.json of the manifest at path with
// Backend.Datapath set to datapath.
func netConfWithDatapath(path, datapath string) (string, error) {
	objs, err := kubetest.ReadManifest(path)
	if err != nil {
		return "", err
	}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != weftConfigMap {
			continue
		}
		data, _, err := unstructured.NestedString(o.Object, "data", "net-conf.json")
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		var conf map[string]any
		if err := json.Unmarshal([]byte(data), &conf); err != nil {
			return "", fmt.Errorf("%s: net-conf.json: %w", path, err)
		}
		backend, ok := conf["Backend"].(map[string]any)
		if !ok {
			return "", fmt.Errorf("%s: net-conf.json has no Backend object", path)
		}
		backend["Datapath"] = datapath
		out, err := json.MarshalIndent(conf, "", "  ")
		return string(out) + "\n", err
	}
	return "", fmt.Errorf("%s: no ConfigMap %s", path, weftConfigMap)
}

//go:embed testdata/coredns.yaml
var corednsManifest string

// corednsTimeout bounds CoreDNS's start once the nodes are Ready.
const corednsTimeout = 2 * time.Minute

// installCoreDNS applies CoreDNS as kubeadm deploys it (testdata/coredns.yaml:
// Deployment coredns and Service kube-dns at DNSServiceIP in kube-system)
// and waits until all its replicas are ready.
func (c *Cluster) installCoreDNS(ctx context.Context) error {
	data := map[string]string{"Image": c.opts.Components.Images.CoreDNS.Ref, "DNSServiceIP": DNSServiceIP.String()}
	if err := c.ApplyTemplate(ctx, "testdata/coredns.yaml", corednsManifest, data); err != nil {
		return err
	}
	return c.WaitFor(ctx, corednsTimeout, "CoreDNS ready", func(ctx context.Context) error {
		d, err := c.Client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", getOptions)
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || d.Status.ReadyReplicas != *d.Spec.Replicas || d.Status.UpdatedReplicas != *d.Spec.Replicas {
			return fmt.Errorf("coredns: %d of %d replicas ready", d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1))
		}
		return nil
	})
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// ApplyTemplate applies the manifest that the text/template tmpl (called
// name in errors) gives with data: `kubectl apply -f -`.
func (c *Cluster) ApplyTemplate(ctx context.Context, name, tmpl string, data any) error {
	t, err := template.New(name).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.KubectlInput(ctx, b.String(), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("apply %s: %w", name, err)
	}
	return nil
}

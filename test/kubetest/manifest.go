package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// RepoRoot returns the directory of the module's go.mod above the working
// directory, failing t if there is none.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := FindRepoRoot()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return dir
}

// FindRepoRoot returns the directory of the module's go.mod above the
// working directory.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// ManifestPath is deploy/weft.yaml in the repository.
func ManifestPath(t testing.TB) string {
	return filepath.Join(RepoRoot(t), "deploy", "weft.yaml")
}

// ReadManifest decodes every object of a multi-document YAML (or JSON) file.
func ReadManifest(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("manifest %s, object %d: %w", path, len(objs)+1, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// Apply creates or updates every object of the manifest at path with
// server-side apply and strict field validation, as
// `kubectl apply --server-side` would, and returns the objects.
func (c *Cluster) Apply(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := ReadManifest(path)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cfg := c.AdminConfig()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: discovery client: %v", err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("kubetest: discover API resources: %v", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: dynamic client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	force := true
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		id := fmt.Sprintf("%s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName())
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("kubetest: apply %s: %v", id, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				t.Fatalf("kubetest: apply %s: a namespaced object in the manifest needs metadata.namespace", id)
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatalf("kubetest: apply %s: %v", id, err)
		}
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			FieldManager: "kubetest", Force: &force, FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			t.Fatalf("kubetest: apply %s: %v", id, err)
		}
	}
	return objs
}

// WeftKubeconfig applies deploy/weft.yaml and returns a kubeconfig file that
// authenticates as the manifest's ServiceAccount, so a client using it has
// exactly the manifest's ClusterRole.
func (c *Cluster) WeftKubeconfig(t testing.TB) string {
	t.Helper()
	for _, o := range c.Apply(t, ManifestPath(t)) {
		if o.GetKind() == "ServiceAccount" {
			return c.Kubeconfig(t, c.ServiceAccountToken(t, o.GetNamespace(), o.GetName()))
		}
	}
	t.Fatalf("kubetest: no ServiceAccount in %s", ManifestPath(t))
	return ""
}

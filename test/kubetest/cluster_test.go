package kubetest

import (
	"context"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestCluster starts an API server, applies deploy/weft.yaml server-side
// (strict validation, twice: it must be idempotent), and checks that the
// ServiceAccount token carries exactly the ClusterRole's rights.
func TestCluster(t *testing.T) {
	c := Start(t, Options{})
	c.Apply(t, ManifestPath(t))
	kubeconfig := c.WeftKubeconfig(t) // applies again

	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	weft, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		verb, resource, sub string
		allowed             bool
	}{
		{"list", "nodes", "", true},
		{"watch", "nodes", "", true},
		{"patch", "nodes", "status", true},
		{"get", "nodes", "", false},
		{"patch", "nodes", "", false},
		{"delete", "nodes", "", false},
		{"get", "pods", "", false},
		{"list", "secrets", "", false},
	} {
		r, err := weft.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Verb: tc.verb, Resource: tc.resource, Subresource: tc.sub,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review: %v", err)
		}
		if r.Status.Allowed != tc.allowed {
			t.Errorf("ServiceAccount may %s %s/%s: %v, want %v", tc.verb, tc.resource, tc.sub, r.Status.Allowed, tc.allowed)
		}
	}
	if _, err := weft.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list nodes with the ServiceAccount token: %v", err)
	}
}

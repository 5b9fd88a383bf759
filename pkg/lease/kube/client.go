package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// nodeClient is the part of the Node API weft uses: list and watch for the
// Node cache, patch for annotations and conditions. The client-go
// clientset's CoreV1().Nodes() (and so its fake) has the same methods.
type nodeClient interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error)
}

// restNodes is a nodeClient that knows core/v1 only. The client-go
// clientset would link and register every Kubernetes API group, which costs
// weftd megabytes of binary and of memory at start-up.
type restNodes struct {
	client *rest.RESTClient
	params runtime.ParameterCodec
}

var _ nodeClient = (*restNodes)(nil)

// newRESTNodes returns a Node client for the API server rc describes.
func newRESTNodes(rc *rest.Config) (*restNodes, error) {
	scheme := runtime.NewScheme()
	// Registers metav1's options, Status and WatchEvent too.
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register core/v1 types: %w", err)
	}
	cfg := rest.CopyConfig(rc)
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	client, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	return &restNodes{client: client, params: runtime.NewParameterCodec(scheme)}, nil
}

// List lists the Nodes opts select.
func (c *restNodes) List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	list := &corev1.NodeList{}
	err := c.client.Get().Resource("nodes").VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).Do(ctx).Into(list)
	return list, err
}

// Watch watches the Nodes opts select.
func (c *restNodes) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.client.Get().Resource("nodes").VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).Watch(ctx)
}

// Patch patches Node name, or its subresource if one is given, and returns
// the Node the server stored.
func (c *restNodes) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error) {
	n := &corev1.Node{}
	err := c.client.Patch(pt).Resource("nodes").Name(name).SubResource(subresources...).
		VersionedParams(&opts, c.params).Body(data).Do(ctx).Into(n)
	return n, err
}

// timeoutOf is the request timeout opts ask for; 0 for none.
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}

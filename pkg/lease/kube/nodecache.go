package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/pkg/backoff"
)

// errNotSynced means the Node list has not been read from the API server
// yet; the nodeCache logs why.
var errNotSynced = errors.New("waiting for the first Node list from the API server")

// rbacHint completes a Forbidden error with what the ServiceAccount needs.
const rbacHint = "; bind the ServiceAccount to the ClusterRole in deploy/weft.yaml (nodes: list, watch; nodes/status: patch)"

// nodeCache is one Node informer shared by Acquire, Keep and Watch. It keeps
// only the fields weft reads, and wakes subscribers when Nodes change.
type nodeCache struct {
	client kubernetes.Interface
	inf    cache.SharedIndexInformer
	host   string
	log    *slog.Logger
	apiLog backoff.Throttle

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	name string // "" for every node
	ch   chan struct{}
}

func newNodeCache(client kubernetes.Interface, host string, log *slog.Logger) *nodeCache {
	c := &nodeCache{
		client: client,
		inf:    coreinformers.NewNodeInformer(client, 0, cache.Indexers{}),
		host:   host,
		log:    log,
		subs:   map[*subscriber]struct{}{},
	}
	// Neither call can fail before the informer runs.
	_ = c.inf.SetTransform(trimNode)
	_ = c.inf.SetWatchErrorHandlerWithContext(c.watchError)
	_, _ = c.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.changed,
		UpdateFunc: func(old, obj any) {
			if !sameNodeFields(old, obj) {
				c.changed(obj)
			}
		},
		DeleteFunc: c.changed,
	})
	return c
}

// run lists and watches Nodes until ctx ends; the informer retries with
// backoff while the API server is unreachable.
func (c *nodeCache) run(ctx context.Context) {
	go c.inf.RunWithContext(ctx)
	// The informer retries an unreachable server without telling anyone, so
	// until it has synced, ask the server directly to learn what to log.
	probing, stopProbing := context.WithCancel(ctx)
	defer stopProbing()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), c.inf.HasSynced) {
			stopProbing()
			c.notify("")
		}
	}()
	var bo backoff.Backoff
	for backoff.Wait(probing, bo.Next(), nil) {
		pctx, cancel := context.WithTimeout(ctx, apiTimeout)
		_, err := c.client.CoreV1().Nodes().List(pctx, metav1.ListOptions{Limit: 1, ResourceVersion: "0"})
		cancel()
		if err != nil && ctx.Err() == nil {
			c.report(err)
		}
	}
}

// trimNode keeps what weft reads of a Node; the rest (images, status)
// would only cost memory on large clusters.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Annotations: n.Annotations},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}, nil
}

// sameNodeFields reports whether two versions of a trimmed Node agree on
// everything weft reads, so status-only updates wake nobody.
func sameNodeFields(a, b any) bool {
	x, ok1 := a.(*corev1.Node)
	y, ok2 := b.(*corev1.Node)
	return ok1 && ok2 && maps.Equal(x.Annotations, y.Annotations) &&
		x.Spec.PodCIDR == y.Spec.PodCIDR && slices.Equal(x.Spec.PodCIDRs, y.Spec.PodCIDRs)
}

func (c *nodeCache) watchError(_ context.Context, _ *cache.Reflector, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return // a watch the server closed; the informer just reconnects
	}
	c.report(err)
}

// report logs a failure to read Nodes, once a minute at most.
func (c *nodeCache) report(err error) {
	msg := fmt.Sprintf("cannot list/watch Nodes on the Kubernetes API server %s, retrying: %v", c.host, err)
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		msg += rbacHint
	}
	if c.apiLog.Allow(msg, time.Now()) {
		c.log.Warn(msg)
	}
}

func (c *nodeCache) changed(obj any) {
	name, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.notify(name)
	}
}

// notify wakes the subscribers of node name ("" wakes all of them).
func (c *nodeCache) notify(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		if name == "" || s.name == "" || s.name == name {
			select {
			case s.ch <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
}

// subscribe returns a channel that receives (coalesced) wake-ups when node
// name, or any node for "", changes, and a function that ends it.
func (c *nodeCache) subscribe(name string) (<-chan struct{}, func()) {
	s := &subscriber{name: name, ch: make(chan struct{}, 1)}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s.ch, func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
	}
}

func (c *nodeCache) synced() bool { return c.inf.HasSynced() }

// get returns node name from the cache.
func (c *nodeCache) get(name string) (*corev1.Node, error) {
	if !c.synced() {
		return nil, errNotSynced
	}
	obj, ok, err := c.inf.GetStore().GetByKey(name)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("node %q not found on the API server %s: NODE_NAME must be this node's Node name (downward API spec.nodeName)", name, c.host)
	}
	return obj.(*corev1.Node), nil
}

// list returns every cached Node.
func (c *nodeCache) list() []*corev1.Node {
	objs := c.inf.GetStore().List()
	nodes := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

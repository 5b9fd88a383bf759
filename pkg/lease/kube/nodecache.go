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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/pkg/backoff"
)

// errNotSynced means the Node list has not been read from the API server
// yet; the nodeCache logs why.
var errNotSynced = errors.New("waiting for the first Node list from the API server")

// rbacHint completes a Forbidden error with what the ServiceAccount needs.
const rbacHint = "; bind the ServiceAccount to the ClusterRole in deploy/weft.yaml (nodes: list, watch; nodes/status: patch)"

// nodeCache is one Node informer shared by Acquire, Keep and Watch. It keeps
// only the fields weft reads, and tells subscribers which Nodes changed.
type nodeCache struct {
	client nodeClient
	inf    cache.SharedIndexInformer
	host   string
	log    *slog.Logger
	apiLog backoff.Throttle

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

// subscription receives coalesced wake-ups when its Node, or any Node,
// changes, and when the cache has synced.
type subscription struct {
	c    *nodeCache
	name string // "" for every node
	wake chan struct{}
	// dirty collects, for a subscription to every Node, the names of the
	// Nodes changed since the last call of changed; guarded by c.mu.
	dirty map[string]struct{}
}

func newNodeCache(client nodeClient, host string, log *slog.Logger) *nodeCache {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return client.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return client.Watch(ctx, opts)
		},
	}
	c := &nodeCache{
		client: client,
		inf:    cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{}),
		host:   host,
		log:    log,
		subs:   map[*subscription]struct{}{},
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
		_, err := c.client.List(pctx, metav1.ListOptions{Limit: 1, ResourceVersion: "0"})
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

// notify wakes the subscriptions to node name, and records the name for
// those to every Node; "" (the cache has synced) wakes all of them.
func (c *nodeCache) notify(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		if name != "" && s.name != "" && s.name != name {
			continue
		}
		if name != "" && s.dirty != nil {
			s.dirty[name] = struct{}{}
		}
		select {
		case s.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// subscribe starts a subscription to node name, or to every Node for "";
// end it with stop.
func (c *nodeCache) subscribe(name string) *subscription {
	s := &subscription{c: c, name: name, wake: make(chan struct{}, 1)}
	if name == "" {
		s.dirty = map[string]struct{}{}
	}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// stop ends the subscription.
func (s *subscription) stop() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
}

// changed returns and forgets the names of the Nodes changed since its last
// call (a Node changed several times is named once); for subscriptions to
// every Node.
func (s *subscription) changed() map[string]struct{} {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	names := s.dirty
	s.dirty = map[string]struct{}{}
	return names
}

func (c *nodeCache) synced() bool { return c.inf.HasSynced() }

// get returns node name from the cache.
func (c *nodeCache) get(name string) (*corev1.Node, error) {
	if !c.synced() {
		return nil, errNotSynced
	}
	n, ok := c.lookup(name)
	if !ok {
		return nil, fmt.Errorf("node %q not found on the API server %s: NODE_NAME must be this node's Node name (downward API spec.nodeName)", name, c.host)
	}
	return n, nil
}

// lookup returns node name from the cache, if it holds it.
func (c *nodeCache) lookup(name string) (*corev1.Node, bool) {
	// The informer's store is a map: looking up a key cannot fail.
	obj, ok, _ := c.inf.GetStore().GetByKey(name)
	n, isNode := obj.(*corev1.Node)
	return n, ok && isNode
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

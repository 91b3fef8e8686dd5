package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// Config is what a node of a cluster needs (WSBRIDGE_REDIS_URL and the
// settings beside it).
type Config struct {
	URL    RedisURL
	Prefix string // WSBRIDGE_REDIS_PREFIX; "" is DefaultPrefix
	// NodeID is the id to claim, or AutoNodeID.
	NodeID int
	// Address is how operators and other nodes find this node (its RPC
	// address); it is in the registry and in the error a node that wants
	// the same id gets.
	Address string
	// Timeout bounds a remote call's wait (WSBRIDGE_CLUSTER_TIMEOUT).
	Timeout time.Duration
	// BatchHold is RouterConfig.BatchHold (WSBRIDGE_CLUSTER_BATCH_HOLD):
	// 0 is DefaultBatchHold, negative never holds.
	BatchHold time.Duration
	// TTL: a node silent for longer is lost. Default 10s.
	TTL time.Duration
	// OnClaimLost is told when this node lost its id: it must stop.
	OnClaimLost func(err error)
	// Observer is told of every remote call.
	Observer Observer
	Logger   *slog.Logger
}

// Member is this process's membership of a cluster: the Redis client, the
// claimed id and its heartbeat, the fd sequence, the broker, the router,
// the subscriptions and the open-fd set. Open it before the hub (the hub
// needs its id, Sequence, Listener and OnIndexChange), Start it once the
// hub and its Service exist, Close it after the hub shut down.
type Member struct {
	cfg     Config
	log     *slog.Logger
	keys    Keys
	client  rueidis.Client
	reg     *Registry
	seq     *BlockSequence
	tracker *Tracker
	subs    *Subscriptions
	router  *Router
	broker  *RedisBroker
	hub     atomic.Pointer[bridge.Hub] // set by Start; the heartbeat reads it

	// postLost posts the close events of a lost node's fds, once
	// UseEvents closed eventsSet; nil: events are off.
	postLost  func(node int, fds []int64) int
	eventsSet chan struct{}
	closing   context.Context // ended when Close begins: a lost node's cleanup stops
	close     context.CancelFunc
	peers     atomic.Int64 // other nodes, as last counted (peerCount)
}

// Open connects to Redis, claims the node id and reserves the first fd
// block.
func Open(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := NewKeys(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	client, err := NewClient(cfg.URL)
	if err != nil {
		return nil, err
	}
	n := &Member{cfg: cfg, log: cfg.Logger, keys: keys, client: client, eventsSet: make(chan struct{})}
	n.closing, n.close = context.WithCancel(context.Background())
	n.tracker = NewTracker(cfg.Logger)
	n.subs = NewSubscriptions(keys, cfg.Logger)
	n.reg, err = Join(ctx, RegistryConfig{
		Client: client, Keys: keys, NodeID: cfg.NodeID, Address: cfg.Address, TTL: cfg.TTL,
		Connections: func() int64 {
			if h := n.hub.Load(); h != nil {
				return int64(h.Stats().Connections)
			}
			return 0
		},
		OnNodeLost:  n.nodeLost,
		OnClaimLost: cfg.OnClaimLost,
		Logger:      cfg.Logger,
	})
	if err != nil {
		n.close()
		client.Close()
		return nil, err
	}
	n.seq, err = NewBlockSequence(ctx, BlockSequenceConfig{Client: client, Keys: keys, NodeID: n.reg.ID(), Logger: cfg.Logger})
	if err != nil {
		n.close()
		_ = n.reg.Close(context.Background())
		client.Close()
		return nil, err
	}
	return n, nil
}

// ID is the claimed node id.
func (n *Member) ID() int { return n.reg.ID() }

// Sequence is the hub's bridge.Config.Sequence.
func (n *Member) Sequence() bridge.Sequence { return n.seq }

// UseEvents connects the application's events: next is the hub's
// Listener (the events dispatcher; nil when events are off) and post the
// dispatcher's PostLost. It returns the hub's bridge.Config.Listener: the
// open-fd set in front of next. Lost nodes wait for it: their connections'
// close events need it.
func (n *Member) UseEvents(next bridge.Listener, post func(node int, fds []int64) int) bridge.Listener {
	n.tracker.setNext(next)
	n.postLost = post
	close(n.eventsSet)
	return n.tracker
}

// OnIndexChange is the hub's bridge.Config.OnIndexChange.
func (n *Member) OnIndexChange(kind bridge.IndexKind, name string) { n.subs.Changed(kind, name) }

// Start connects the node to hub and svc: the broker subscribes this
// node's channel and the broadcast channel, svc routes through the router,
// and the subscriptions and the open-fd set follow the hub.
func (n *Member) Start(ctx context.Context, hub *bridge.Hub, svc *sender.Service) error {
	n.hub.Store(hub)
	n.router = NewRouter(RouterConfig{
		Node: n.ID(), Keys: n.keys, Service: svc, Timeout: n.cfg.Timeout, BatchHold: n.cfg.BatchHold, Observer: n.cfg.Observer, Logger: n.log,
		Peers: n.peerCount,
	})
	var err error
	n.broker, err = NewRedisBroker(RedisBrokerConfig{Client: n.client, Handler: n.router.Handle, Logger: n.log})
	if err != nil {
		return err
	}
	if err := n.router.Start(ctx, n.broker); err != nil {
		return fmt.Errorf("cluster: subscribe this node's channels: %w", err)
	}
	svc.UseRemote(n.router)
	n.subs.Start(hub, n.broker)
	n.tracker.Start(n.client, n.keys.FDs(n.ID(), n.reg.Self().Gen), hub, func() bool { return n.broker.Health().Up })
	return nil
}

// peerCount is how many other nodes there are, for a call to every node
// in scope that could not be published: from the registry while Redis
// answers at once, else the last count known (it is asked just when Redis
// may be away, and must not wait on it).
func (n *Member) peerCount() int {
	if n.broker.Health().Up {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		nodes, err := n.reg.List(ctx)
		cancel()
		if err == nil {
			n.peers.Store(int64(len(nodes) - 1))
		}
	}
	return int(max(n.peers.Load(), 1))
}

// nodeLost is the registry's OnNodeLost: the lost node's connections are
// reported closed to the application, once across the cluster.
func (n *Member) nodeLost(ctx context.Context, lost Node) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.closing, cancel)() // this node leaves: another survivor takes it on
	select {
	case <-n.eventsSet:
	case <-ctx.Done():
		return fmt.Errorf("cluster: this node's events are not set up yet: %w", ctx.Err())
	}
	if n.postLost == nil {
		return nil // events are off: nobody to tell
	}
	posted, err := PostLostFDs(ctx, n.client, n.keys.FDs(lost.ID, lost.Gen), lost.ID, n.postLost)
	n.log.Warn("cluster: a node was lost; its connections are reported closed to the application",
		"node", lost.ID, "gen", lost.Gen, "address", lost.Address, "fds", posted, "err", err)
	return err
}

// SetAddress puts the node's address, once its listeners are bound, in
// its registry record.
func (n *Member) SetAddress(addr string) error { return n.reg.SetAddress(addr) }

// Health says whether Redis is reachable, and why not.
func (n *Member) Health() Health {
	if n.broker == nil {
		return Health{Reason: "not started"}
	}
	return n.broker.Health()
}

// Stats are a Member's counters, for the metrics.
type Stats struct {
	Health Health
	// SubscribeFailures counts group and user channels the broker refused
	// (each tried again).
	SubscribeFailures uint64
	Router            RouterStats
	Tracker           TrackerStats
	Sequence          SequenceStats
	Registry          RegistryStats
}

// Stats returns the Member's counters.
func (n *Member) Stats() Stats {
	st := Stats{Health: n.Health(), Tracker: n.tracker.Stats(), Sequence: n.seq.Stats(), Registry: n.reg.Stats(), SubscribeFailures: n.subs.Failures()}
	if n.router != nil {
		st.Router = n.router.Stats()
	}
	return st
}

// Nodes lists the cluster's nodes.
func (n *Member) Nodes(ctx context.Context) ([]Node, error) { return n.reg.List(ctx) }

// Close leaves the cluster, after the hub shut down: the open-fd set is
// deleted (the application heard of every close), the channels
// unsubscribed and the id released.
func (n *Member) Close(ctx context.Context) error {
	n.close()
	n.subs.Close()
	n.tracker.Close(ctx, true)
	if n.broker != nil {
		// First: its channels are unsubscribed, so the other nodes' calls
		// for this node's fds count no receiver at once.
		_ = n.broker.Close()
	}
	if n.router != nil {
		n.router.Close()
	}
	n.seq.Close()
	err := n.reg.Close(ctx)
	n.client.Close()
	if errors.Is(err, ErrClaimLost) {
		return err
	}
	return nil
}

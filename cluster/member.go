package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// Link, when set, is the address to listen on for links from the
	// other nodes (WSBRIDGE_CLUSTER_LINK, link.go): host:port, or :port
	// to listen on every interface and be dialed at this machine's
	// address on its route to Redis.
	Link string
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

// BatchHoldSetting is Config.BatchHold for a value of the setting
// WSBRIDGE_CLUSTER_BATCH_HOLD, whose 0 is "never hold" (the Config's 0 is
// its default).
func BatchHoldSetting(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
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
	linkLn  net.Listener // bound by Open, served by Start
	links   *LinkServer
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
	n.tracker.subscribed = n.subs.Settled
	var link string
	if cfg.Link != "" {
		if n.linkLn, link, err = listenLink(cfg.Link, cfg.URL.Addresses(), cfg.Logger); err != nil {
			n.close()
			client.Close()
			return nil, err
		}
	}
	n.reg, err = Join(ctx, RegistryConfig{
		Client: client, Keys: keys, NodeID: cfg.NodeID, Address: cfg.Address, Link: link, TTL: cfg.TTL,
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
		n.closeLinkListener()
		client.Close()
		return nil, err
	}
	n.seq, err = NewBlockSequence(ctx, BlockSequenceConfig{Client: client, Keys: keys, NodeID: n.reg.ID(), Logger: cfg.Logger})
	if err != nil {
		n.close()
		n.closeLinkListener()
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
	secret, err := LinkSecret(ctx, n.client, n.keys)
	if err != nil {
		if n.linkLn != nil {
			return err
		}
		n.log.Warn("cluster: no link secret; calls to other nodes go through Redis", "err", err)
	}
	n.router = NewRouter(RouterConfig{
		Node: n.ID(), Gen: n.reg.Self().Gen, Keys: n.keys, Service: svc, Timeout: n.cfg.Timeout, BatchHold: n.cfg.BatchHold, Observer: n.cfg.Observer, Logger: n.log,
		Peers: n.peerCount, LinkSecret: secret, LinkOf: n.linkOf, Subscriptions: n.subs,
	})
	n.broker, err = NewRedisBroker(RedisBrokerConfig{Client: n.client, Handler: n.router.Handle, Logger: n.log})
	if err != nil {
		return err
	}
	if err := n.router.Start(ctx, n.broker); err != nil {
		return fmt.Errorf("cluster: subscribe this node's channels: %w", err)
	}
	if n.linkLn != nil {
		n.links = ServeLinks(n.router, n.linkLn, secret, n.ID(), n.reg.Self().Gen)
		n.log.Info("cluster: links from other nodes served", "listen", n.linkLn.Addr().String(), "advertised", n.reg.Self().Link)
	}
	svc.UseRemote(n.router)
	n.subs.Start(hub, n.broker)
	n.tracker.Start(n.client, n.keys.FDs(n.ID(), n.reg.Self().Gen), hub, func() bool { return n.broker.Health().Up })
	return nil
}

// closeLinkListener closes the link listener that Start did not serve.
func (n *Member) closeLinkListener() {
	if n.linkLn != nil {
		n.linkLn.Close()
	}
}

// linkOf is the router's RouterConfig.LinkOf: a node's link address and
// generation, from its claim.
func (n *Member) linkOf(ctx context.Context, node int) (string, int64, error) {
	body, err := n.client.Do(ctx, n.client.B().Get().Key(n.keys.Claim(node)).Build()).ToString()
	if err != nil {
		return "", 0, fmt.Errorf("cluster: node %d's claim: %w", node, err)
	}
	var rec Node
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		return "", 0, fmt.Errorf("cluster: node %d's claim does not decode: %w", node, err)
	}
	return rec.Link, rec.Gen, nil
}

// listenLink listens on addr for links and says where other nodes dial
// it: addr's host, or when it has none (or 0.0.0.0, ::) this machine's
// address on its route to Redis (a UDP socket's local address: no packet
// is sent).
func listenLink(addr string, redis []string, log *slog.Logger) (net.Listener, string, error) {
	lc := net.ListenConfig{KeepAliveConfig: linkKeepAlive, Control: linkSocket}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("cluster: listen for links: %w", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return ln, net.JoinHostPort(host, port), nil
	}
	var errs []error
	for _, r := range redis {
		if _, _, err := net.SplitHostPort(r); err != nil {
			errs = append(errs, fmt.Errorf("Redis at %s is not on the network (a unix socket?)", r))
			continue
		}
		c, err := net.Dial("udp", r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		if ip.IsLoopback() {
			log.Warn("cluster: the link address found on the route to Redis is a loopback address: only nodes of this machine can dial it; give WSBRIDGE_CLUSTER_LINK a host when nodes run elsewhere", "link", net.JoinHostPort(ip.String(), port))
		}
		return ln, net.JoinHostPort(ip.String(), port), nil
	}
	ln.Close()
	return nil, "", fmt.Errorf("cluster: listen for links on %s: this machine's address is found on its route to Redis, and there is none (%w); give the setting a host", addr, errors.Join(errs...))
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
	if n.links != nil {
		// Next: the other nodes' links break and their calls for this
		// node's fds go through Redis, where nothing receives them.
		n.links.Close()
	} else {
		n.closeLinkListener()
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

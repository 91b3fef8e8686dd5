package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

var _ Broker = (*RedisBroker)(nil)

// Defaults of RedisBrokerConfig.
const (
	DefaultPublishTimeout = time.Second
	DefaultHealthInterval = time.Second
	DefaultMaxChannels    = 100_000
	resubscribeMin        = 100 * time.Millisecond
	resubscribeMax        = 2 * time.Second
)

// RedisBrokerConfig configures a RedisBroker; zero fields take their
// documented defaults.
type RedisBrokerConfig struct {
	// Client is the Redis client (NewClient); required. The broker does
	// not close it.
	Client rueidis.Client
	// Handler receives the messages; required.
	Handler Handler
	// PublishTimeout bounds one publish. Default 1s.
	PublishTimeout time.Duration
	// HealthInterval is how often the broker pings Redis (every master of
	// a Redis Cluster) to know whether it is up. Default 1s.
	HealthInterval time.Duration
	// MaxChannels bounds the channels subscribed at once (each holds one
	// goroutine). Default 100,000.
	MaxChannels int
	// Logger receives the broker's logs. Default slog.Default().
	Logger *slog.Logger
}

// RedisBroker is the Broker on Redis sharded pub/sub (SPUBLISH and
// SSUBSCRIBE: a Redis Cluster routes each channel to the master of its
// slot; a single Redis 7 serves them too).
//
// Each subscribed channel has one goroutine, which holds a rueidis
// Receive on the client's shared connections (no connection of its own)
// and subscribes again, with a backoff of 100 ms to 2 s, whenever the
// connection was lost. While Redis is away the goroutines wait in their
// backoff; nothing else is started and nothing queues: Publish fails at
// once with ErrUnavailable. One more goroutine pings Redis every
// HealthInterval and keeps Health.
type RedisBroker struct {
	cfg RedisBrokerConfig
	log *slog.Logger

	opMu sync.Mutex // serializes Subscribe and Unsubscribe
	mu   sync.Mutex // guards subs, closed
	subs map[string]*subscription

	closed    bool
	closeCh   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	up         atomic.Bool
	reconnects atomic.Uint64
	hmu        sync.Mutex // guards reason, since
	reason     string
	since      time.Time

	published, publishErrors, received atomic.Uint64
}

// subscription is one channel's goroutine.
type subscription struct {
	channel   string
	cancel    context.CancelFunc
	done      chan struct{}
	ready     chan struct{} // closed at the first confirmation
	readyOnce sync.Once
}

// NewRedisBroker returns a broker on cfg.Client, up, and starts its health
// goroutine.
func NewRedisBroker(cfg RedisBrokerConfig) (*RedisBroker, error) {
	if cfg.Client == nil || cfg.Handler == nil {
		return nil, fmt.Errorf("cluster: a RedisBroker needs a Client and a Handler")
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = DefaultMaxChannels
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &RedisBroker{cfg: cfg, log: cfg.Logger, subs: make(map[string]*subscription), closeCh: make(chan struct{}), since: time.Now()}
	b.up.Store(true)
	b.wg.Add(1)
	go b.healthLoop()
	return b, nil
}

// Publish sends payload to channel with SPUBLISH and returns its count of
// receivers.
func (b *RedisBroker) Publish(ctx context.Context, channel string, payload []byte) (int, error) {
	if b.isClosed() {
		return 0, ErrClosed
	}
	if !b.up.Load() {
		b.publishErrors.Add(1)
		return 0, fmt.Errorf("%w: %s", ErrUnavailable, b.Health().Reason)
	}
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	c := b.cfg.Client
	n, err := c.Do(ctx, c.B().Spublish().Channel(channel).Message(rueidis.BinaryString(payload)).Build()).AsInt64()
	if err != nil {
		b.publishErrors.Add(1)
		if _, isRedis := rueidis.IsRedisErr(err); isRedis {
			return 0, fmt.Errorf("cluster: publish to %s: %w", channel, err)
		}
		if caller.Err() != nil {
			// The caller gave up first: that says nothing of Redis.
			return 0, fmt.Errorf("cluster: publish to %s: %w", channel, err)
		}
		b.setDown(err)
		return 0, fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
	}
	b.published.Add(1)
	return int(n), nil
}

// Subscribe starts one goroutine per new channel and waits for Redis to
// confirm them.
func (b *RedisBroker) Subscribe(ctx context.Context, channels ...string) error {
	b.opMu.Lock()
	var wait []*subscription
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.opMu.Unlock()
		return ErrClosed
	}
	fresh := 0
	for _, ch := range channels {
		if _, ok := b.subs[ch]; !ok {
			fresh++
		}
	}
	if len(b.subs)+fresh > b.cfg.MaxChannels {
		b.mu.Unlock()
		b.opMu.Unlock()
		return fmt.Errorf("%w: %d subscribed, %d more asked, at most %d", ErrTooManyChannels, len(b.subs), fresh, b.cfg.MaxChannels)
	}
	for _, ch := range channels {
		s, ok := b.subs[ch]
		if !ok {
			sctx, cancel := context.WithCancel(context.Background())
			s = &subscription{channel: ch, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
			b.subs[ch] = s
			b.wg.Add(1)
			go b.receive(sctx, s)
		}
		wait = append(wait, s)
	}
	b.mu.Unlock()
	b.opMu.Unlock()
	if !b.up.Load() {
		return fmt.Errorf("%w: subscribed once it is back: %s", ErrUnavailable, b.Health().Reason)
	}
	for _, s := range wait {
		select {
		case <-s.ready:
		case <-ctx.Done():
			return fmt.Errorf("cluster: subscribe %s: %w", s.channel, ctx.Err())
		case <-b.closeCh:
			return ErrClosed
		case <-s.done:
			return fmt.Errorf("cluster: subscribe %s: unsubscribed meanwhile", s.channel)
		}
	}
	return nil
}

// receive holds channel s's subscription until it is cancelled.
func (b *RedisBroker) receive(ctx context.Context, s *subscription) {
	defer b.wg.Done()
	defer close(s.done)
	c := b.cfg.Client
	backoff := resubscribeMin
	var confirmed atomic.Bool // set by the hook, on rueidis's goroutine
	hctx := rueidis.WithOnSubscriptionHook(ctx, func(ps rueidis.PubSubSubscription) {
		if ps.Kind == "ssubscribe" {
			confirmed.Store(true)
			s.readyOnce.Do(func() { close(s.ready) })
		}
	})
	for {
		confirmed.Store(false)
		err := c.Receive(hctx, c.B().Ssubscribe().Channel(s.channel).Build(), func(m rueidis.PubSubMessage) {
			b.received.Add(1)
			b.cfg.Handler(m.Channel, []byte(m.Message))
		})
		if ctx.Err() != nil {
			return
		}
		if confirmed.Load() {
			backoff = resubscribeMin
		}
		if err != nil {
			b.log.Debug("redis subscription lost", "channel", s.channel, "err", err, "retry", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, resubscribeMax)
	}
}

// Unsubscribe stops the channels' goroutines, then sends SUNSUBSCRIBE so
// that Redis stops sending them (best effort: a lost connection drops
// them anyway).
func (b *RedisBroker) Unsubscribe(ctx context.Context, channels ...string) error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	var gone []*subscription
	b.mu.Lock()
	for _, ch := range channels {
		if s, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			s.cancel()
			gone = append(gone, s)
		}
	}
	b.mu.Unlock()
	for _, s := range gone {
		<-s.done // Receive returns at once on its context
	}
	if len(gone) == 0 || !b.up.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	c := b.cfg.Client
	var errs []error
	for _, s := range gone { // one command each: on a Redis Cluster the channels may live on different masters
		if err := c.Do(ctx, c.B().Sunsubscribe().Channel(s.channel).Build()).Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster: unsubscribe: %w", errs[0])
	}
	return nil
}

// healthLoop pings Redis every HealthInterval.
func (b *RedisBroker) healthLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-b.closeCh:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HealthInterval)
		err := ping(ctx, b.cfg.Client)
		cancel()
		if err != nil {
			b.setDown(err)
		} else {
			b.setUp()
		}
	}
}

// ping pings one Redis, or every master of a Redis Cluster.
func ping(ctx context.Context, c rueidis.Client) error {
	if c.Mode() != rueidis.ClientModeCluster {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}
	for addr, n := range c.Nodes() {
		if err := n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
	}
	return nil
}

func (b *RedisBroker) setDown(err error) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	b.reason = err.Error()
	if b.up.Swap(false) {
		b.since = time.Now()
		b.log.Warn("redis unavailable", "err", err)
	}
}

func (b *RedisBroker) setUp() {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if !b.up.Swap(true) {
		b.reason = ""
		b.since = time.Now()
		b.reconnects.Add(1)
		b.log.Info("redis available again")
	}
}

// Health returns the broker's state.
func (b *RedisBroker) Health() Health {
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	b.hmu.Lock()
	defer b.hmu.Unlock()
	return Health{Up: b.up.Load(), Reason: b.reason, Since: b.since, Reconnects: b.reconnects.Load(), Channels: n}
}

// BrokerStats counts a broker's traffic.
type BrokerStats struct {
	Published     uint64 `json:"published"`
	PublishErrors uint64 `json:"publish_errors"`
	Received      uint64 `json:"received"`
}

// Stats returns the broker's counters.
func (b *RedisBroker) Stats() BrokerStats {
	return BrokerStats{Published: b.published.Load(), PublishErrors: b.publishErrors.Load(), Received: b.received.Load()}
}

func (b *RedisBroker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close ends every subscription and waits for the broker's goroutines.
// While Redis is up it also unsubscribes the channels (within
// PublishTimeout), so that a publish to them counts no receiver at once
// instead of once Redis has noticed the closed connections.
func (b *RedisBroker) Close() error {
	b.closeOnce.Do(func() {
		b.opMu.Lock()
		defer b.opMu.Unlock()
		b.mu.Lock()
		b.closed = true
		var gone []*subscription
		for ch, s := range b.subs {
			s.cancel()
			delete(b.subs, ch)
			gone = append(gone, s)
		}
		b.mu.Unlock()
		close(b.closeCh)
		for _, s := range gone {
			<-s.done
		}
		if len(gone) > 0 && b.up.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
			defer cancel()
			c := b.cfg.Client
			cmds := make(rueidis.Commands, len(gone))
			for i, s := range gone { // one command each: on a Redis Cluster the channels may live on different masters
				cmds[i] = c.B().Sunsubscribe().Channel(s.channel).Build()
			}
			for _, r := range c.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					b.log.Debug("cluster: unsubscribe on close", "err", err)
				}
			}
		}
	})
	b.wg.Wait()
	return nil
}

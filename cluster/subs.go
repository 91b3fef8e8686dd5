package cluster

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// Subscriptions keeps this node subscribed to the channel of each group
// and user it has connections of, and to no other: a group or user push
// reaches only the nodes that hold members. The hub tells it of changes
// (bridge.Config.OnIndexChange, its Changed method); one goroutine reads
// the hub's present state and subscribes or unsubscribes.
type Subscriptions struct {
	keys Keys
	log  *slog.Logger

	mu     sync.Mutex
	hub    *bridge.Hub
	broker Broker
	dirty  map[indexName]struct{}
	subbed map[indexName]bool
	// waiters wait for a name's subscription to match the hub (Settled).
	waiters map[indexName][]*settleWaiter
	wake    chan struct{}
	ctx     context.Context // ended by Close
	cancel  context.CancelFunc
	done    chan struct{}

	failures atomic.Uint64
}

type indexName struct {
	kind bridge.IndexKind
	name string
}

// NewSubscriptions returns Subscriptions with nothing to do until Start.
func NewSubscriptions(keys Keys, log *slog.Logger) *Subscriptions {
	if log == nil {
		log = slog.Default()
	}
	s := &Subscriptions{keys: keys, log: log, dirty: map[indexName]struct{}{}, subbed: map[indexName]bool{},
		waiters: map[indexName][]*settleWaiter{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Changed is the hub's bridge.Config.OnIndexChange: it never blocks.
func (s *Subscriptions) Changed(kind bridge.IndexKind, name string) {
	if s.ctx.Err() != nil {
		return // closed (a retry's timer may fire after)
	}
	s.mu.Lock()
	s.dirty[indexName{kind, name}] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start gives the hub and the broker and starts the goroutine, which Close
// stops.
func (s *Subscriptions) Start(hub *bridge.Hub, b Broker) {
	s.mu.Lock()
	s.hub, s.broker = hub, b
	s.mu.Unlock()
	go s.loop()
	s.Changed(bridge.GroupIndex, "") // a first round for what changed before Start
}

func (s *Subscriptions) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		dirty := s.dirty
		s.dirty = map[indexName]struct{}{}
		s.mu.Unlock()
		for n := range dirty {
			if n.name == "" {
				continue
			}
			s.reconcile(s.ctx, n)
		}
	}
}

// wants tells whether the hub has members of n: whether n's channel
// should be subscribed. Never called with mu held: the hub tells of its
// changes (Changed) under its own locks.
func (s *Subscriptions) wants(n indexName) bool {
	if n.kind == bridge.GroupIndex {
		return s.hub.HasGroup(n.name)
	}
	return s.hub.HasUser(n.name)
}

// reconcile subscribes or unsubscribes n's channel after the hub's state,
// then releases the waits that it settled.
func (s *Subscriptions) reconcile(ctx context.Context, n indexName) {
	defer s.settle(n)
	want := s.wants(n)
	channel := s.keys.GroupChannel(n.name)
	if n.kind == bridge.UserIndex {
		channel = s.keys.UserChannel(n.name)
	}
	s.mu.Lock()
	have := s.subbed[n]
	s.mu.Unlock()
	if want == have {
		return
	}
	var err error
	if want {
		// While Redis is away the broker keeps the channel and subscribes
		// it once Redis is back.
		err = s.broker.Subscribe(ctx, channel)
	} else {
		// Not subscribed from the moment the broker stops delivering,
		// before Redis confirms: a Join meanwhile waits (Settled).
		s.mu.Lock()
		delete(s.subbed, n)
		s.mu.Unlock()
		err = s.broker.Unsubscribe(ctx, channel)
	}
	if err != nil && want && !errors.Is(err, ErrUnavailable) {
		// Not registered (too many channels, a closed broker): the
		// group's pushes would miss this node's members. Counted, logged
		// and tried again later; the hub's state decides then.
		s.failures.Add(1)
		s.log.Warn("cluster: cannot subscribe a group's or user's channel: its pushes miss this node's members until it can",
			"channel", channel, "err", err, "retry_in", subscribeRetry.String())
		time.AfterFunc(subscribeRetry, func() { s.Changed(n.kind, n.name) })
		return
	}
	if err != nil {
		s.log.Debug("cluster: subscription change under way", "channel", channel, "subscribe", want, "err", err)
	}
	s.mu.Lock()
	if want {
		s.subbed[n] = true
	} else {
		delete(s.subbed, n)
	}
	s.mu.Unlock()
}

// subscribeRetry is how long a subscription the broker refused waits
// before it is tried again.
const subscribeRetry = time.Second

// Failures counts the subscriptions the broker refused (each retried).
func (s *Subscriptions) Failures() uint64 { return s.failures.Load() }

// Count returns how many group and user channels are subscribed.
func (s *Subscriptions) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subbed)
}

// Settled returns nil when this node's subscription to the channel of a
// group (kind GroupIndex) or user matches the hub's state, so that a push
// to it from any node reaches this node's members. Otherwise it returns a
// channel closed once it does, after within, or at Close. While Redis is
// known to be away nothing is waited for: the broker subscribes once it
// is back.
func (s *Subscriptions) Settled(kind bridge.IndexKind, name string, within time.Duration) <-chan struct{} {
	n := indexName{kind, name}
	s.mu.Lock()
	broker := s.broker
	s.mu.Unlock()
	if broker == nil || !broker.Health().Up {
		return nil
	}
	want := s.wants(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subbed[n] == want || s.ctx.Err() != nil {
		return nil // a change since is followed by its own reconcile
	}
	w := &settleWaiter{ch: make(chan struct{})}
	s.waiters[n] = append(s.waiters[n], w)
	w.timer = time.AfterFunc(within, func() {
		s.mu.Lock()
		if ws := s.waiters[n]; ws != nil {
			ws = slices.DeleteFunc(ws, func(o *settleWaiter) bool { return o == w })
			if len(ws) == 0 {
				delete(s.waiters, n)
			} else {
				s.waiters[n] = ws
			}
		}
		s.mu.Unlock()
		w.release()
	})
	return w.ch
}

// settleWaiter is one wait of Settled.
type settleWaiter struct {
	ch    chan struct{}
	once  sync.Once
	timer *time.Timer
}

func (w *settleWaiter) release() {
	w.once.Do(func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		close(w.ch)
	})
}

// settle releases n's waits if its subscription matches the hub's state
// now (which a Join may have changed while it was reconciled: then its
// own round follows).
func (s *Subscriptions) settle(n indexName) {
	s.mu.Lock()
	waiting := len(s.waiters[n]) > 0
	s.mu.Unlock()
	if !waiting {
		return
	}
	want := s.wants(n)
	s.mu.Lock()
	var ws []*settleWaiter
	if s.subbed[n] == want {
		ws = s.waiters[n]
		delete(s.waiters, n)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.release()
	}
}

// Close stops the goroutine and releases the waits of Settled; the
// broker's Close ends the subscriptions.
func (s *Subscriptions) Close() {
	s.mu.Lock()
	started := s.hub != nil
	s.mu.Unlock()
	s.cancel()
	if started {
		<-s.done
	}
	s.mu.Lock()
	waiters := s.waiters
	s.waiters = map[indexName][]*settleWaiter{}
	s.mu.Unlock()
	for _, ws := range waiters {
		for _, w := range ws {
			w.release()
		}
	}
}

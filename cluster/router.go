package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/msgpackcheck"
	"github.com/wsbridge/wsbridge/sender"
)

// DefaultCallTimeout is the default RouterConfig.Timeout
// (WSBRIDGE_CLUSTER_TIMEOUT).
const DefaultCallTimeout = 2 * time.Second

// DefaultBatchHold is the default RouterConfig.BatchHold
// (WSBRIDGE_CLUSTER_BATCH_HOLD).
const DefaultBatchHold = time.Millisecond

// DefaultMaxQueued is the default RouterConfig.MaxQueued.
const DefaultMaxQueued = 10000

// RouterConfig configures a Router.
type RouterConfig struct {
	// Node is this node's id.
	Node int
	// Keys names the channels.
	Keys Keys
	// Service runs this node's part of the calls other nodes send.
	Service *sender.Service
	// Timeout bounds a call's wait for its answers. Default 2s.
	Timeout time.Duration
	// MaxQueued bounds the calls and answers waiting for their publish to
	// one node; past it a call fails at once (node_unreachable). Default
	// 10,000.
	MaxQueued int
	// BatchHold bounds how long a call may wait for others to the same
	// node to fill its frame: while more calls to that node are in flight
	// than are queued, the queued ones wait until as many are queued (as
	// answers come back, fewer are in flight) or BatchHold has passed
	// since the first of them was queued. Fewer, fuller frames cost less CPU per call, in this
	// node, the owner and Redis alike. A lone caller never waits: with
	// nothing in flight a call goes at once. Default DefaultBatchHold;
	// negative: never hold.
	BatchHold time.Duration
	// Gen is this node's generation (Registry), which links prove.
	Gen int64
	// LinkSecret, when set, lets this node dial the links of the nodes
	// that take them (link.go), found with LinkOf: a node's link address
	// ("" when it takes none) and its generation.
	LinkSecret []byte
	LinkOf     func(ctx context.Context, node int) (addr string, gen int64, err error)
	// Subscriptions, when set, tell when this node's part of a Join or
	// Bind has taken effect on every node (Subscribed).
	Subscriptions *Subscriptions
	// Peers, when set, counts the other live nodes: a call to every node
	// that cannot be published reports them as not answering.
	Peers func() int
	// Observer, when set, is told of every remote call.
	Observer Observer
	// Logger receives the router's logs. Default slog.Default().
	Logger *slog.Logger
}

// Observer is told of each call a Router made to other nodes: its method,
// its outcome (OutcomeOK, OutcomeSent for one sent without ack, or the
// error code) and its duration.
type Observer interface {
	ObserveRemoteCall(method, outcome string, d time.Duration)
}

// Outcomes of Observer beside the error codes.
const (
	OutcomeOK   = "ok"
	OutcomeSent = "sent" // ack false: published, no answer awaited
)

// Router is the cluster's sender.Remote: it sends a call for another
// node's fd to that node's channel, batched with the other calls and
// answers waiting for that node, and a call for a group, a user or every
// node to that scope's channel, once; it runs the calls that reach this
// node through the Service and sends back their answers.
type Router struct {
	cfg    RouterConfig
	log    *slog.Logger
	broker Broker

	nextID  atomic.Uint64
	pending sync.Map // id → *waiter

	mu       sync.Mutex
	outboxes [bridge.MaxNodeID + 1]atomic.Pointer[outbox] // by node id; set under mu
	closed   bool
	wg       sync.WaitGroup // flushers, link dialers and watchers
	stopCtx  context.Context
	stop     context.CancelFunc

	stats routerStats
	links linkStats
}

// routerStats are the Router's counters (RouterStats).
type routerStats struct {
	calls, callErrors, served, answersLate, dropped atomic.Uint64
	frames, framesIn                                atomic.Uint64
}

// RouterStats are a Router's counters.
type RouterStats struct {
	// Calls made to other nodes, and those that failed (unreachable, timed
	// out, refused).
	Calls, CallErrors uint64
	// Served counts the calls of other nodes this node ran.
	Served uint64
	// LateAnswers arrived after their call gave up.
	LateAnswers uint64
	// Dropped counts the malformed messages dropped from the channels and
	// the links (and link frames that say they are from another node).
	Dropped uint64
	// FramesOut and FramesIn count the messages published and received,
	// through Redis and on links.
	FramesOut, FramesIn uint64
	Links               LinkStats
}

var _ sender.Remote = (*Router)(nil)

// NewRouter returns a Router; Start connects it to its broker.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultCallTimeout
	}
	if cfg.BatchHold == 0 {
		cfg.BatchHold = DefaultBatchHold
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Router{cfg: cfg, log: cfg.Logger}
	r.stopCtx, r.stop = context.WithCancel(context.Background())
	r.nextID.Store(rand.Uint64() >> 1) // call numbers another client cannot guess from 1
	return r
}

// Start gives the Router its broker (whose Handler is the Router's Handle)
// and subscribes this node's channel and the broadcast channel.
func (r *Router) Start(ctx context.Context, b Broker) error {
	r.broker = b
	return b.Subscribe(ctx, r.cfg.Keys.NodeChannel(r.cfg.Node), r.cfg.Keys.BroadcastChannel())
}

// Close stops the Router: calls under way fail, queued ones are dropped.
func (r *Router) Close() {
	r.stop()
	r.mu.Lock()
	r.closed = true
	for i := range r.outboxes {
		if o := r.outboxes[i].Load(); o != nil {
			o.close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Stats returns the Router's counters.
func (r *Router) Stats() RouterStats {
	s := &r.stats
	return RouterStats{Calls: s.calls.Load(), CallErrors: s.callErrors.Load(), Served: s.served.Load(),
		LateAnswers: s.answersLate.Load(), Dropped: s.dropped.Load(), FramesOut: s.frames.Load(), FramesIn: s.framesIn.Load(),
		Links: LinkStats{FramesOut: r.links.framesOut.Load(), FramesIn: r.links.framesIn.Load(), Dials: r.links.dials.Load(),
			DialErrors: r.links.dialErrors.Load(), Lost: r.links.lost.Load(), Refused: r.links.refused.Load(), Busy: r.links.busy.Load()}}
}

// unreachable is the error of a call whose node cannot be reached.
func unreachable(format string, args ...any) *sender.Error {
	return &sender.Error{Code: sender.CodeNodeUnreachable, Message: fmt.Sprintf(format, args...)}
}

// waiter is a call's wait for its answers: one for a call to a node, one
// per node in scope for a fanout.
type waiter struct {
	id       uint64 // the call's number, of a call to one node that awaits its answer
	mu       sync.Mutex
	answers  []answer
	skipped  int // this node's own copy of a fanout call
	expected int // -1 until the publish says how many nodes received the call
	err      error
	oneWay   bool          // no answer awaited: complete once published
	fanout   bool          // a call to every node in scope: this node's own copy is skipped
	done     chan struct{} // closed when complete or failed
	closed   bool
	inflight *outbox       // counts this call among its calls in flight, until settled
	gone     bool          // the caller stopped waiting: not to be sent nor counted
	refused  *sender.Error // the call itself cannot be sent (too large, does not encode)
}

func newWaiter() *waiter { return &waiter{expected: -1, done: make(chan struct{})} }

// checkLocked closes done once every expected answer is in.
func (w *waiter) checkLocked() {
	if !w.closed && w.expected >= 0 && len(w.answers)+w.skipped >= w.expected {
		w.closed = true
		close(w.done)
	}
}

func (w *waiter) add(a answer) {
	w.mu.Lock()
	w.answers = append(w.answers, a)
	w.checkLocked()
	w.settleLocked()
	w.mu.Unlock()
}

// abandoned says whether the caller stopped waiting.
func (w *waiter) abandoned() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// settleLocked takes the call off its outbox's count of calls in flight:
// once, at its answer or when its caller stops waiting.
func (w *waiter) settleLocked() {
	if w.inflight != nil {
		w.inflight.landed()
		w.inflight = nil
	}
}

func (w *waiter) skip() {
	if !w.fanout {
		return // a call to one node has no copy of its own: a forged frame
	}
	w.mu.Lock()
	w.skipped++
	w.checkLocked()
	w.mu.Unlock()
}

// published records how many nodes received the call, or why it could not
// be sent; a call published to one node's outbox o counts among o's calls
// in flight until it is settled.
func (w *waiter) published(receivers int, err error, o *outbox) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err, w.expected = err, receivers
	if (err != nil || w.oneWay) && !w.closed {
		w.closed = true
		close(w.done)
		return
	}
	w.checkLocked()
	if o != nil && !w.closed && !w.gone && receivers > 0 {
		w.inflight = o
		o.inflight.Add(1)
	}
}

// Call implements sender.Remote. The outbox's goroutine encodes args
// after Call queued them, and may still be reading them just after a Call
// that timed out returned: args must not change afterwards.
func (r *Router) Call(node int, method string, args, reply any, ack bool) error {
	start := time.Now()
	err := r.call(node, method, args, reply, ack)
	outcome := OutcomeOK
	if err != nil {
		r.stats.callErrors.Add(1)
		outcome = sender.CodeInternal
		var e *sender.Error
		if errors.As(err, &e) {
			outcome = e.Code
		}
	} else if !ack {
		outcome = OutcomeSent
	}
	r.stats.calls.Add(1)
	if r.cfg.Observer != nil {
		r.cfg.Observer.ObserveRemoteCall(method, outcome, time.Since(start))
	}
	return err
}

func (r *Router) call(node int, method string, args, reply any, ack bool) error {
	// call's own frame stays small, and its steps each have their own:
	// net/rpc runs each request on a new goroutine, whose stack a deep
	// path would grow (a copy) on every call.
	w, err := r.post(node, method, args, ack)
	if err != nil {
		return err
	}
	if ack {
		defer r.pending.Delete(w.id)
	}
	r.await(w)
	return r.outcome(node, method, w, ack, reply)
}

// post queues a call for node. Its arguments are encoded later, by the
// outbox's flusher, whose stack has grown once for good.
func (r *Router) post(node int, method string, args any, ack bool) (*waiter, error) {
	c := call{Method: method, args: args}
	w := newWaiter()
	w.oneWay = !ack
	if ack {
		c.ID = r.nextID.Add(1)
		w.id = c.ID
		r.pending.Store(c.ID, w)
	}
	o, err := r.outbox(node)
	if err == nil {
		err = o.add(&c, w)
	}
	if err != nil {
		if ack {
			r.pending.Delete(c.ID)
		}
		return nil, unreachable("node %d: %v", node, err)
	}
	return w, nil
}

// await waits for a call's answers, or its timeout.
func (r *Router) await(w *waiter) {
	timer := time.NewTimer(r.cfg.Timeout)
	select {
	case <-w.done:
	case <-timer.C:
	}
	timer.Stop()
}

// outcome is a call's result once awaited: the answer decoded into reply,
// or why there is none.
func (r *Router) outcome(node int, method string, w *waiter, ack bool, reply any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settleLocked()
	w.gone = true
	switch {
	case !w.closed:
		return unreachable("node %d did not answer %s within %s", node, method, r.cfg.Timeout)
	case w.refused != nil:
		return w.refused
	case w.err != nil:
		return unreachable("node %d: %v", node, w.err)
	case w.expected == 0:
		return unreachable("node %d is not connected to Redis (its channel has no subscriber)", node)
	case !ack:
		return nil
	}
	if len(w.answers) == 0 {
		return unreachable("node %d sent no answer to %s", node, method)
	}
	a := w.answers[0]
	if a.Code != "" {
		return &sender.Error{Code: a.Code, Message: a.Message}
	}
	if err := msgpack.Unmarshal(a.Result, reply); err != nil {
		return &sender.Error{Code: sender.CodeInternal, Message: fmt.Sprintf("node %d answered %s with a reply that does not decode: %v", node, method, err)}
	}
	return nil
}

// scopeChannel is the channel of a Fanout's scope.
func (r *Router) scopeChannel(s sender.Scope) string {
	switch s.Kind {
	case sender.ScopeGroup:
		return r.cfg.Keys.GroupChannel(s.Name)
	case sender.ScopeUser:
		return r.cfg.Keys.UserChannel(s.Name)
	}
	return r.cfg.Keys.BroadcastChannel()
}

// Fanout implements sender.Remote: one publish to the scope's channel;
// the nodes subscribed to it answer on this node's channel.
func (r *Router) Fanout(scope sender.Scope, method string, args any, each func(decode func(any) error) error) (int, error) {
	start := time.Now()
	unanswered, err := r.fanout(scope, method, args, each)
	outcome := OutcomeOK
	if err != nil || unanswered > 0 {
		r.stats.callErrors.Add(1)
		outcome = sender.CodeNodeUnreachable
	}
	r.stats.calls.Add(1)
	if r.cfg.Observer != nil {
		r.cfg.Observer.ObserveRemoteCall(method, outcome, time.Since(start))
	}
	return unanswered, err
}

func (r *Router) fanout(scope sender.Scope, method string, args any, each func(decode func(any) error) error) (int, error) {
	c := call{ID: r.nextID.Add(1), Method: method, args: args}
	if err := c.encodeArgs(); err != nil {
		return 0, err
	}
	w := newWaiter()
	w.fanout = true
	r.pending.Store(c.ID, w)
	defer r.pending.Delete(c.ID)
	payload, err := encodeFrame(&frame{From: r.cfg.Node, Calls: []call{c}})
	if err != nil {
		return 0, &sender.Error{Code: sender.CodeInternal, Message: "cannot encode the call: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	n, err := r.broker.Publish(ctx, r.scopeChannel(scope), payload)
	cancel()
	r.stats.frames.Add(1)
	if err != nil {
		// This node's part is done; the others' is unknown.
		peers := 1
		if r.cfg.Peers != nil {
			peers = max(r.cfg.Peers(), 0)
		}
		r.log.Debug("cluster: a call to every node in scope could not be published", "method", method, "err", err)
		return peers, nil
	}
	w.published(n, nil, nil)
	r.await(w)
	w.mu.Lock()
	answers := w.answers
	w.answers = nil // later ones are late
	unanswered := max(w.expected-w.skipped-len(answers), 0)
	w.mu.Unlock()
	for _, a := range answers {
		if a.Code != "" {
			// A node refused its part: the others' answers still count.
			r.log.Debug("cluster: a node refused its part of a call", "method", method, "code", a.Code, "message", a.Message)
			unanswered++
			continue
		}
		if err := each(func(v any) error { return msgpack.Unmarshal(a.Result, v) }); err != nil {
			unanswered++
		}
	}
	return unanswered, nil
}

// Handle is the Broker's Handler: it takes the answers for this node's
// calls and runs the calls of other nodes.
func (r *Router) Handle(channel string, payload []byte) {
	f, err := decodeFrame(payload)
	if err != nil {
		r.stats.dropped.Add(1)
		r.log.Warn("cluster: node message dropped", "channel", channel, "bytes", len(payload), "err", err)
		return
	}
	r.serve(f)
}

// handleFrom runs a frame that came on the link of node peer: a frame
// that says it is from another node is dropped.
func (r *Router) handleFrom(peer int, payload []byte) {
	f, err := decodeFrame(payload)
	if err == nil && f.From != peer {
		err = fmt.Errorf("the frame says it is from node %d", f.From)
	}
	if err != nil {
		r.stats.dropped.Add(1)
		r.log.Warn("cluster: link frame dropped", "node", peer, "bytes", len(payload), "err", err)
		return
	}
	r.serve(f)
}

// serve takes a frame's answers for this node's calls and runs its calls.
func (r *Router) serve(f *frame) {
	r.stats.framesIn.Add(1)
	for _, a := range f.Answers {
		if w, ok := r.pending.Load(a.ID); ok {
			w.(*waiter).add(a)
		} else {
			r.stats.answersLate.Add(1)
		}
	}
	var answers []answer // one frame of answers for the frame's calls
	for i := range f.Calls {
		c := &f.Calls[i]
		if f.From == r.cfg.Node {
			// This node's own call to every node in scope: its part ran
			// before the publish.
			if w, ok := r.pending.Load(c.ID); ok {
				w.(*waiter).skip()
			}
			continue
		}
		r.stats.served.Add(1)
		res, err := r.cfg.Service.Serve(c.Method, func(v any) error {
			// Any Redis client may have published this call: its arguments
			// are held to the bounds of an RPC call's before they decode.
			if err := msgpackcheck.CheckLimit(c.Args, sender.MaxBatch); err != nil {
				return err
			}
			return msgpack.Unmarshal(c.Args, v)
		})
		if c.ID == 0 {
			continue
		}
		if s, ok := res.(sender.Settling); ok {
			r.answerWhenSettled(f.From, c.ID, s)
			continue
		}
		answers = append(answers, answerOf(c.ID, res, err))
	}
	r.sendAnswers(f.From, answers)
}

// answerOf is the answer of call id that returned res, err.
func answerOf(id uint64, res any, err error) answer {
	a := answer{ID: id}
	if err != nil {
		e := sender.ToError(err).(*sender.Error)
		a.Code, a.Message = e.Code, e.Message
	} else if a.Result, err = msgpack.Marshal(res); err != nil {
		a.Code, a.Message = sender.CodeInternal, "cannot encode the reply: "+err.Error()
	}
	return a
}

// sendAnswers queues answers for node's next frame.
func (r *Router) sendAnswers(node int, answers []answer) {
	if len(answers) == 0 {
		return
	}
	o, err := r.outbox(node)
	if err == nil {
		err = o.addAnswers(answers)
	}
	if err != nil {
		r.log.Debug("cluster: answers could not be queued", "to", node, "answers", len(answers), "err", err)
	}
}

// answerWhenSettled answers call id of node once s has taken effect on
// every node, from a goroutine of its own (which Subscribed's bound
// ends), so that the frames behind it are not held up.
func (r *Router) answerWhenSettled(node int, id uint64, s sender.Settling) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-s.Done:
			r.sendAnswers(node, []answer{answerOf(id, s.Result, nil)})
		case <-r.stopCtx.Done():
		}
	}()
}

// Subscribed is sender.Remote's: nil when this node's subscription to
// scope's channel matches its members, else a channel closed once it does
// or after half the call timeout (the other half is the answer's).
func (r *Router) Subscribed(scope sender.Scope) <-chan struct{} {
	if r.cfg.Subscriptions == nil || scope.Kind == sender.ScopeAll {
		return nil
	}
	kind := bridge.GroupIndex
	if scope.Kind == sender.ScopeUser {
		kind = bridge.UserIndex
	}
	return r.cfg.Subscriptions.Settled(kind, scope.Name, r.cfg.Timeout/2)
}

// encodeArgs encodes the call's arguments, once; its error is the
// call's.
func (c *call) encodeArgs() *sender.Error {
	if c.Args != nil {
		return nil
	}
	body, err := msgpack.Marshal(c.args)
	if err != nil {
		return &sender.Error{Code: sender.CodeInternal, Message: "cannot encode the call: " + err.Error()}
	}
	if len(body) > maxCallBytes {
		return &sender.Error{Code: sender.CodeTooLarge, Message: fmt.Sprintf("a call of %d bytes cannot cross to the other nodes: the limit of a message between nodes is %d", len(body), maxCallBytes)}
	}
	c.Args, c.args = body, nil
	return nil
}

// maxCallBytes bounds the arguments of a call to another node: the frame
// that carries it must stay within what the receiver accepts.
const maxCallBytes = MaxFrameBytes - 64<<10

// outbox returns the outbox of a node's channel. An outbox found after
// Close is closed: queueing to it fails.
func (r *Router) outbox(node int) (*outbox, error) {
	if node < 0 || node > bridge.MaxNodeID {
		return nil, fmt.Errorf("cluster: no node %d", node)
	}
	if o := r.outboxes[node].Load(); o != nil {
		return o, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	o := r.outboxes[node].Load()
	if o == nil {
		o = &outbox{r: r, node: node, channel: r.cfg.Keys.NodeChannel(node), wake: make(chan struct{}, 1)}
		r.outboxes[node].Store(o)
	}
	return o, nil
}

// outbox gathers the calls and answers for one node's channel: while a
// publish to it is under way the next ones wait and then travel together,
// so that many concurrent calls cost few publishes and the latency of a
// lone call is one publish. Calls may also wait a little for others to
// fill their frame (RouterConfig.BatchHold).
//
// Its flusher goroutine stays while calls keep coming (it waits on wake
// for the next ones) and exits once the outbox has been idle for
// outboxIdle: a goroutine started per burst would be a new goroutine, and
// a stack grown anew through rueidis and msgpack, every few calls.
type outbox struct {
	r       *Router
	channel string
	wake    chan struct{} // one pending signal: something was queued, or a call landed while holding

	// inflight counts the calls published to this node that wait for
	// their answer; holding is set while the flusher holds calls back.
	inflight atomic.Int64
	holding  atomic.Bool

	mu      sync.Mutex
	calls   []call
	answers []answer
	waiters []*waiter // of the queued calls, told of the publish
	since   time.Time // when the oldest queued call was queued
	running bool      // the flusher goroutine exists
	closed  bool

	// Owned by the flusher: the batch being sent (its slices are swapped
	// with the queue's, so that neither allocates in the steady state)
	// and the timer of a hold.
	sending batch
	hold    *time.Timer

	// The link to the node, while one is up (link.go); dialing while a
	// dial is under way, not again before redialAt (unix ns), waiting
	// redialWait more after each failure.
	node       int
	link       atomic.Pointer[linkConn]
	dialing    atomic.Bool
	redialAt   atomic.Int64
	redialWait time.Duration // owned by the dialing goroutine
}

// batch is what the flusher takes from the queue at once.
type batch struct {
	calls   []call
	answers []answer
	waiters []*waiter
}

// outboxIdle is how long an outbox's flusher waits for more work before it
// exits.
const outboxIdle = time.Second

var errQueueFull = errors.New("too many calls waiting for their publish")

// add queues a call, with the waiter told of its publish.
func (o *outbox) add(c *call, w *waiter) error {
	return o.queue(func() {
		if len(o.calls) == 0 {
			o.since = time.Now()
		}
		o.calls = append(o.calls, *c)
		o.waiters = append(o.waiters, w)
	}, 1)
}

// addAnswers queues the answers to one frame's calls, so that they travel
// together.
func (o *outbox) addAnswers(a []answer) error {
	return o.queue(func() { o.answers = append(o.answers, a...) }, len(a))
}

// landed is told that a call in flight was answered or given up.
func (o *outbox) landed() {
	o.inflight.Add(-1)
	if o.holding.Load() {
		o.signal()
	}
}

// signal wakes the flusher.
func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default: // a signal is pending already
	}
}

// queue runs put under the lock when n more items fit, and wakes the
// flusher, or starts it when none runs.
func (o *outbox) queue(put func(), n int) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if len(o.calls)+len(o.answers)+n > o.r.cfg.MaxQueued {
		o.mu.Unlock()
		return errQueueFull
	}
	put()
	start := !o.running
	if start {
		o.running = true
		o.r.wg.Add(1) // under o.mu: before Close, which marks o closed under it, waits
	}
	o.mu.Unlock()
	if start {
		go o.run()
		return nil
	}
	o.signal()
	return nil
}

func (o *outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	if l := o.link.Swap(nil); l != nil {
		l.c.Close()
	}
	o.mu.Unlock()
	o.signal()
}

// run is the flusher: it publishes what is queued, waits for more, and
// exits when the outbox is closed or idle.
func (o *outbox) run() {
	defer o.r.wg.Done()
	idle := time.NewTimer(outboxIdle)
	defer idle.Stop()
	o.hold = time.NewTimer(0)
	<-o.hold.C
	defer o.hold.Stop()
	for {
		// Let the goroutines that are about to queue more do so first: a
		// scheduling round, not a timer, so a lone call is not delayed.
		runtime.Gosched()
		if !o.flush() {
			return
		}
		idle.Reset(outboxIdle)
		select {
		case <-o.wake:
		case <-idle.C:
			o.mu.Lock()
			if len(o.calls)+len(o.answers) == 0 && !o.closed {
				o.running = false
				o.mu.Unlock()
				return
			}
			o.mu.Unlock()
		}
	}
}

// holdLocked says how long the queued calls may still wait for more to
// fill their frame: while fewer are queued than are in flight to this
// node (whose answers, when they come, bring their callers' next calls),
// up to BatchHold since the oldest was queued. Answers never wait.
func (o *outbox) holdLocked() time.Duration {
	if o.r.cfg.BatchHold <= 0 || len(o.answers) > 0 || int64(len(o.calls)) >= o.inflight.Load() {
		return 0
	}
	return o.r.cfg.BatchHold - time.Since(o.since)
}

// flush publishes what is queued, a frame at a time, until nothing is. It
// returns false when the outbox is closed: the calls queued then fail, and
// the flusher is done.
func (o *outbox) flush() bool {
	for {
		o.mu.Lock()
		if o.closed {
			for _, w := range o.waiters {
				w.published(0, ErrClosed, nil)
			}
			o.calls, o.answers, o.waiters = nil, nil, nil
			o.running = false
			o.mu.Unlock()
			return false
		}
		if len(o.calls)+len(o.answers) == 0 {
			o.mu.Unlock()
			return true
		}
		// holding is set before holdLocked reads inflight: a landed()
		// either is seen there or sees holding and wakes the flusher.
		o.holding.Store(true)
		if d := o.holdLocked(); d > 0 {
			o.mu.Unlock()
			o.hold.Reset(d)
			select {
			case <-o.wake:
				if !o.hold.Stop() {
					<-o.hold.C
				}
			case <-o.hold.C:
			}
			o.holding.Store(false)
			continue
		}
		o.holding.Store(false)
		b := &o.sending
		b.calls, o.calls = o.calls, b.calls[:0]
		b.answers, o.answers = o.answers, b.answers[:0]
		b.waiters, o.waiters = o.waiters, b.waiters[:0]
		o.mu.Unlock()
		o.send(b)
		clear(b.calls) // drop the arguments and waiters: the slices are kept for reuse
		clear(b.answers)
		clear(b.waiters)
	}
}

// send encodes the calls' arguments and publishes the batch in frames of
// at most maxFrameItems items and about maxFrameItemBytes.
func (o *outbox) send(b *batch) {
	calls, waiters := b.calls[:0], b.waiters[:0]
	for i := range b.calls {
		c, w := b.calls[i], b.waiters[i]
		if w.abandoned() {
			continue // its caller was told it failed: it does not go later
		}
		if e := c.encodeArgs(); e != nil {
			w.mu.Lock()
			w.refused = e
			w.mu.Unlock()
			w.published(0, e, nil)
			continue
		}
		calls, waiters = append(calls, c), append(waiters, w)
	}
	answers := b.answers
	for len(calls)+len(answers) > 0 {
		if o.isClosed() {
			// Close waits for the frame under way, not for the rest.
			for _, w := range waiters {
				w.published(0, ErrClosed, nil)
			}
			return
		}
		f := frame{From: o.r.cfg.Node}
		size := 0
		na := 0
		for na < len(answers) && na < maxFrameItems && (na == 0 || size+answers[na].size() <= maxFrameItemBytes) {
			size += answers[na].size()
			na++
		}
		nc := 0
		for nc < len(calls) && na+nc < maxFrameItems && (na+nc == 0 || size+calls[nc].size() <= maxFrameItemBytes) {
			size += calls[nc].size()
			nc++
		}
		f.Answers, f.Calls = answers[:na:na], calls[:nc:nc]
		answers, calls = answers[na:], calls[nc:]
		n, err := o.publish(&f)
		for _, w := range waiters[:nc] {
			w.published(n, err, o)
		}
		waiters = waiters[nc:]
	}
}

func (o *outbox) publish(f *frame) (int, error) {
	payload, err := encodeFrame(f)
	if err != nil {
		return 0, err
	}
	o.r.stats.frames.Add(1)
	if l := o.link.Load(); l != nil {
		n, err := l.send(payload, o.r.cfg.Timeout)
		if err == nil {
			o.r.links.framesOut.Add(1)
			return 1, nil
		}
		o.dropLink(l, err)
		if n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			// Part of it may have gone (the other end drops a frame cut
			// short), and its calls' time is spent: they fail, rather
			// than travel twice or late.
			return 0, fmt.Errorf("the link to node %d broke: %w", o.node, err)
		}
		// Nothing went: the frame goes through Redis.
	}
	o.dial()
	ctx, cancel := context.WithTimeout(context.Background(), o.r.cfg.Timeout)
	defer cancel()
	return o.r.broker.Publish(ctx, o.channel, payload)
}

// dial starts a dial of the node's link, unless one is under way, the
// last failed too recently, or this node dials no links. It runs on the
// flusher (whose count in the Router's WaitGroup covers the Add).
func (o *outbox) dial() {
	if o.r.cfg.LinkSecret == nil || time.Now().UnixNano() < o.redialAt.Load() || !o.dialing.CompareAndSwap(false, true) {
		return
	}
	o.r.wg.Add(1)
	go func() {
		defer o.r.wg.Done()
		defer o.dialing.Store(false)
		ctx, cancel := context.WithTimeout(o.r.stopCtx, o.r.cfg.Timeout)
		l, err := o.r.dialLink(ctx, o.node)
		cancel()
		if err != nil {
			o.redialWait = min(max(2*o.redialWait, linkRedial), linkRedialMax)
			o.redialAt.Store(time.Now().Add(o.redialWait).UnixNano())
			if !errors.Is(err, errNoLink) {
				o.r.links.dialErrors.Add(1)
				o.r.log.Debug("cluster: no link to a node; its calls go through Redis", "node", o.node, "err", err, "retry", o.redialWait)
			}
			return
		}
		o.redialWait = 0
		o.r.links.dials.Add(1)
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			l.c.Close()
			return
		}
		o.link.Store(l)
		o.r.wg.Add(1)
		o.mu.Unlock()
		go o.watch(l)
	}()
}

// watch waits for the other end of the link to close it (the listener
// sends nothing once the handshake is done) and drops it.
func (o *outbox) watch(l *linkConn) {
	defer o.r.wg.Done()
	var b [1]byte
	_, err := l.c.Read(b[:])
	o.dropLink(l, err)
}

// dropLink closes a link that broke; the next frames go through Redis
// until a new one is up.
func (o *outbox) dropLink(l *linkConn, err error) {
	if o.link.CompareAndSwap(l, nil) {
		o.r.links.lost.Add(1)
		o.r.log.Debug("cluster: link to a node lost; its calls go through Redis", "node", o.node, "err", err)
	}
	l.c.Close()
}

package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// ErrUndelivered: Shutdown left events undelivered (they are counted as
// dropped with DropShutdown).
var ErrUndelivered = errors.New("events: undelivered at shutdown")

// ErrBackpressure: Admit refuses a handshake, the pending events being at
// their bounds (docs/PROTOCOL.md, "When the application cannot keep up").
var ErrBackpressure = errors.New("events: too many events pending")

// Closer closes a connection; *bridge.Hub is one. The Dispatcher needs it
// for OverflowClose.
type Closer interface {
	Disconnect(fd int64, code int, reason string) error
}

// Reasons an event is dropped, as Stats counts them.
const (
	DropQueueFD    = "queue_fd"    // its connection's queue was at Config.QueuePerFD
	DropQueueTotal = "queue_total" // the pending events were at Config.QueueTotal
	DropQueueBytes = "queue_bytes" // the pending events' size was at Config.QueueBytes
	DropRefused    = "refused"     // the application answered 400 or 413: the batch can never be accepted
	DropPoison     = "poison"      // sent alone, it kept failing while the application acknowledged other requests
	DropUnopened   = "unopened"    // its connection's open event never reached the application: it closed before the open was sent, or the open was dropped
	DropShutdown   = "shutdown"    // still pending when Shutdown's deadline passed, or arrived after
)

// DropReasons lists every reason an event is dropped, as Stats counts them.
func DropReasons() []string {
	return []string{DropQueueFD, DropQueueTotal, DropQueueBytes, DropRefused, DropPoison, DropUnopened, DropShutdown}
}

// Stats is a snapshot of a Dispatcher's counters.
type Stats struct {
	Delivered uint64    `json:"delivered"` // events acknowledged by the application
	Requests  uint64    `json:"requests"`  // event requests acknowledged
	Retries   uint64    `json:"retries"`   // event requests that failed and were retried
	Dropped   DropStats `json:"dropped"`   // events dropped, by reason
	Closed    uint64    `json:"closed"`    // connections closed by OverflowClose, or because their open event was dropped
	Splits    uint64    `json:"splits"`    // batches split after failing Config.Retries times
	Pending   int       `json:"pending"`   // events not yet acknowledged, in flight included
	// PendingBytes is the encoded size of the Pending events.
	PendingBytes int `json:"pending_bytes"`
	// Reserved counts the close events reserved: one per connection whose
	// open event was accepted and whose close event has not come yet. Each
	// counts against Config.QueueTotal (one event) and Config.QueueBytes
	// (MaxCloseEventSize), so that a close event always fits.
	Reserved int `json:"reserved"`
	// HandshakesRefused counts the times Admit refused a handshake.
	HandshakesRefused uint64    `json:"handshakes_refused"`
	InFlight          int       `json:"in_flight"` // event requests under way
	Auth              AuthStats `json:"auth"`
}

// DropStats counts dropped events by reason.
type DropStats struct {
	QueueFD    uint64 `json:"queue_fd"`
	QueueTotal uint64 `json:"queue_total"`
	QueueBytes uint64 `json:"queue_bytes"`
	Refused    uint64 `json:"refused"`
	Poison     uint64 `json:"poison"`
	Unopened   uint64 `json:"unopened"`
	Shutdown   uint64 `json:"shutdown"`
}

// Count returns the count of reason (one of DropReasons).
func (s DropStats) Count(reason string) uint64 {
	switch reason {
	case DropQueueFD:
		return s.QueueFD
	case DropQueueTotal:
		return s.QueueTotal
	case DropQueueBytes:
		return s.QueueBytes
	case DropRefused:
		return s.Refused
	case DropPoison:
		return s.Poison
	case DropUnopened:
		return s.Unopened
	case DropShutdown:
		return s.Shutdown
	}
	return 0
}

// AuthStats counts handshake authorizations by outcome.
type AuthStats struct {
	Allowed uint64 `json:"allowed"` // the application allowed the handshake
	Denied  uint64 `json:"denied"`  // it refused it (a deny answer or a 4xx)
	Failed  uint64 `json:"failed"`  // no usable answer: refused with 503
}

// Dispatcher delivers a bridge's events to the application; it is a
// bridge.Listener, and its Authorize method fits bridge.Config.Authorize.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	limit  *limitedLog
	client *http.Client // event requests, at most Concurrency connections
	auth   *http.Client // auth requests, their own connections

	ctx    context.Context // cancelled when the senders must stop at once
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sender goroutines

	mu           sync.Mutex
	wake         *sync.Cond // a sender waits on it for ready connections
	fds          map[int64]*fdQueue
	ready        []*fdQueue // connections with events to send and none in flight, FIFO
	pending      int        // events not yet acknowledged, of every connection
	pendingBytes int        // their encoded size
	reserved     int        // close events reserved (fdQueue.reserved)
	inFlight     int
	closer       Closer
	idle         chan struct{} // set by Shutdown; closed when pending reaches 0
	stopped      bool          // the senders stop; later events are dropped
	stats        Stats         // counters guarded by mu; Retries, Closed and Auth are atomics below

	retries, closed, refusedHS  atomic.Uint64
	acks                        atomic.Uint64 // requests acknowledged, read without d.mu
	allowed, denied, authFailed atomic.Uint64
	shutdownOnce                sync.Once
	shutdownDone                chan struct{}
}

// fdQueue is one connection's pending events, in order; events[:inFlight]
// are in the request under way.
type fdQueue struct {
	fd       int64
	path     []byte // the connection's path, JSON-encoded, for its message and close events
	seq      uint64 // of the last event queued
	events   []event
	inFlight int
	ready    bool // in Dispatcher.ready
	ended    bool // its close event is queued
	closing  bool // OverflowClose has closed it
	reserved bool // its close event is reserved (Dispatcher.reserved)
	openSent bool // its open event has been in a request
	unopened bool // the application never got its open event: later events are dropped (DropUnopened)

	// suspect events (the first ones) were in a batch that failed
	// Config.Retries times: they travel in a request of their own, all
	// together, or one per request when single.
	suspect int
	single  bool
	acksAt  uint64 // Dispatcher.acks when the suspect events' first request began
	tried   int    // attempts made at the suspect events' request (the same body)
}

var (
	_ bridge.Listener = (*Dispatcher)(nil)
	_ bridge.Admitter = (*Dispatcher)(nil) // the hub asks Admit before each upgrade
)

// New returns a Dispatcher; with cfg.URL set it starts cfg.Concurrency
// sender goroutines, which Shutdown stops.
func New(cfg Config) (*Dispatcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("events: invalid config: %w", err)
	}
	d := &Dispatcher{
		cfg:          cfg,
		log:          cfg.Logger,
		limit:        newLimitedLog(cfg.Logger),
		client:       newClient(cfg.Concurrency, cfg.Timeout),
		auth:         newClient(cfg.Concurrency, cfg.AuthTimeout),
		fds:          map[int64]*fdQueue{},
		shutdownDone: make(chan struct{}),
	}
	d.wake = sync.NewCond(&d.mu)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if cfg.URL != "" {
		for range cfg.Concurrency {
			d.wg.Add(1)
			go d.sender()
		}
	}
	return d, nil
}

// SetCloser gives the Dispatcher the hub whose connections it may close
// under OverflowClose. Until it is set, OverflowClose only drops.
func (d *Dispatcher) SetCloser(c Closer) {
	d.mu.Lock()
	d.closer = c
	d.mu.Unlock()
}

// Config returns the Dispatcher's configuration with defaults applied.
func (d *Dispatcher) Config() Config { return d.cfg }

// Admit reports whether a new connection may be accepted: nil while the
// pending events leave room for one more connection's open and close
// events, an error wrapping ErrBackpressure otherwise. The hub asks it
// before each upgrade, through an optional interface of package bridge,
// and answers a refusal with 503 and Retry-After. A connection admitted
// whose open event does not fit after all (handshakes run in parallel, and
// headers vary) is closed by OnOpen with CloseTryAgainLater.
func (d *Dispatcher) Admit() error {
	if d.cfg.URL == "" {
		return nil
	}
	d.mu.Lock()
	reason := d.roomLocked(2, admitOpenBytes+MaxCloseEventSize)
	n, size := d.pending+d.reserved, d.pendingBytes+d.reserved*MaxCloseEventSize
	d.mu.Unlock()
	if reason == "" {
		return nil
	}
	d.refusedHS.Add(1)
	d.limit.logf("admit", slog.LevelWarn, "handshake refused: too many events pending", "events", n, "bytes", size,
		"queue_total", d.cfg.QueueTotal, "queue_bytes", d.cfg.QueueBytes)
	return fmt.Errorf("%w: %d events, %d bytes (with the close events reserved) of %d and %d", ErrBackpressure,
		n, size, d.cfg.QueueTotal, d.cfg.QueueBytes)
}

// admitOpenBytes is the room Admit asks for an open event besides its
// close event: a browser's handshake encodes to one or two KiB.
const admitOpenBytes = 4 << 10

// roomLocked returns "" when n more events of size bytes fit within the
// bounds, counting the close events reserved, or the reason they do not.
func (d *Dispatcher) roomLocked(n, size int) string {
	switch {
	case d.pending+d.reserved+n > d.cfg.QueueTotal:
		return DropQueueTotal
	case d.pendingBytes+d.reserved*MaxCloseEventSize+size > d.cfg.QueueBytes:
		return DropQueueBytes
	}
	return ""
}

// OnOpen queues the open event of a connection, with room reserved for its
// close event. When they do not fit, the open event is dropped, the
// connection closed with CloseTryAgainLater, and its later events dropped:
// the application never hears of it.
func (d *Dispatcher) OnOpen(info bridge.ConnInfo) {
	if d.cfg.URL == "" {
		return
	}
	ev := encodeOpen(info, time.Now().UnixMilli())
	d.mu.Lock()
	if d.stopped {
		d.droppedAfterStop(info.FD)
		return
	}
	q := d.queueLocked(info.FD)
	q.path = marshal(info.Path)
	reason := d.roomLocked(2, ev.size()+MaxCloseEventSize)
	if reason == "" {
		q.reserved = true
		d.reserved++
		d.pushLocked(q, ev)
		d.mu.Unlock()
		return
	}
	d.countDropLocked(reason, 1)
	q.seq++
	q.unopened = true
	closer := d.closer
	pending := d.pending
	d.mu.Unlock()
	d.limit.logf("drop:"+reason, slog.LevelWarn, "event dropped", "fd", info.FD, "reason", reason, "type", "open",
		"pending", pending, "bytes", ev.size())
	if closer != nil {
		if err := closer.Disconnect(info.FD, CloseTryAgainLater, "events queue full"); err == nil {
			d.closed.Add(1)
		}
	}
}

// OnMessage queues a message event, or drops it when it does not fit.
func (d *Dispatcher) OnMessage(fd int64, op bridge.Opcode, data []byte) {
	if d.cfg.URL == "" {
		return
	}
	// Encoded before the lock is taken; a dropped message wasted it, but
	// the lock is never held for the cost of a large message.
	ev := encodeMessage(fd, time.Now().UnixMilli(), op, data)
	d.mu.Lock()
	if d.stopped {
		d.droppedAfterStop(fd)
		return
	}
	q := d.queueLocked(fd)
	ev.path = q.path
	if q.unopened {
		d.countDropLocked(DropUnopened, 1)
		d.mu.Unlock()
		d.limit.logf("drop:"+DropUnopened, slog.LevelWarn, "event dropped", "fd", fd, "reason", DropUnopened, "type", "message")
		return
	}
	reason := ""
	if len(q.events) >= d.cfg.QueuePerFD {
		reason = DropQueueFD
	} else {
		reason = d.roomLocked(1, ev.size())
	}
	if reason == "" {
		d.pushLocked(q, ev)
		d.mu.Unlock()
		return
	}
	d.countDropLocked(reason, 1)
	q.seq++ // a dropped message takes its seq: the gap tells the application
	var closer Closer
	if d.cfg.Overflow == OverflowClose && !q.closing && d.closer != nil {
		q.closing = true
		closer = d.closer
	}
	queued, pending := len(q.events), d.pending
	d.mu.Unlock()

	d.limit.logf("drop:"+reason, slog.LevelWarn, "event dropped", "fd", fd, "reason", reason,
		"queued", queued, "pending", pending, "policy", string(d.cfg.Overflow))
	if closer != nil {
		// Not under d.mu: the hub takes its own locks.
		if err := closer.Disconnect(fd, CloseTryAgainLater, "events queue full"); err == nil {
			d.closed.Add(1)
			d.limit.logf("close", slog.LevelWarn, "events queue full, connection closed", "fd", fd, "code", CloseTryAgainLater)
		}
	}
}

// OnClose queues the close event of a connection, in the room its open
// event reserved. A connection whose open event is its only event queued
// and was never sent is withdrawn instead: both are dropped
// (DropUnopened), and the application never hears of it. (With messages
// queued, they and the close are delivered after the open, as usual.)
func (d *Dispatcher) OnClose(fd int64, ev bridge.CloseEvent) {
	if d.cfg.URL == "" {
		return
	}
	e := encodeClose(fd, time.Now().UnixMilli(), ev)
	d.mu.Lock()
	if d.stopped {
		d.droppedAfterStop(fd)
		return
	}
	q := d.queueLocked(fd)
	e.path = q.path
	if q.unopened || (!q.openSent && len(q.events) == 1 && q.events[0].typ == "open") {
		n := 1 + len(q.events) // the close event and what is queued
		d.discardLocked(q)
		delete(d.fds, fd)
		d.countDropLocked(DropUnopened, n)
		d.mu.Unlock()
		d.limit.logf("drop:"+DropUnopened, slog.LevelWarn, "event dropped", "fd", fd, "reason", DropUnopened,
			"type", "close", "events", n)
		return
	}
	q.ended = true
	if q.reserved {
		q.reserved = false
		d.reserved--
	} else if reason := d.roomLocked(1, e.size()); reason != "" {
		// No room was reserved: there was no open event (the Listener
		// contract says there always is). Dropped like a message.
		d.countDropLocked(reason, 1)
		q.seq++
		if len(q.events) == 0 && q.inFlight == 0 {
			delete(d.fds, fd)
		}
		d.mu.Unlock()
		d.limit.logf("drop:"+reason, slog.LevelWarn, "event dropped", "fd", fd, "reason", reason, "type", "close")
		return
	}
	d.pushLocked(q, e)
	d.mu.Unlock()
}

// LostReason and LostSeq mark the close event a surviving cluster node
// posts for an fd of a node whose heartbeat expired (PostLost). LostSeq is
// larger than any seq the lost node can have given (2^53-1, exact in PHP
// and JSON), so a receiver that keeps the last seq per fd takes the close
// after whatever the lost node delivered, and drops it when it comes twice.
const (
	LostReason = "node_lost"
	LostSeq    = 1<<53 - 1
)

// PostLost queues a close event (code 1006, reason node_lost, by server,
// lost_node: node, seq LostSeq) for each of fds, the connections of
// another node whose heartbeat expired; they are delivered like this
// node's own events. They take room as messages do: PostLost returns how
// many of fds (the first ones) fit; the caller posts the others later. An
// fd with events queued here already is skipped (counted as taken).
func (d *Dispatcher) PostLost(node int, fds []int64) int {
	if d.cfg.URL == "" {
		return len(fds)
	}
	ms := time.Now().UnixMilli()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return 0
	}
	for i, fd := range fds {
		if d.fds[fd] != nil {
			continue
		}
		ev := encodeLost(fd, ms, node)
		if d.roomLocked(1, ev.size()) != "" {
			return i
		}
		q := d.queueLocked(fd)
		q.seq = LostSeq - 1
		q.ended = true
		d.pushLocked(q, ev)
	}
	return len(fds)
}

// discardLocked removes q's queued events (none may be in flight) and its
// reservation from the counts. q may stay in the ready list: empty, it is
// skipped there.
func (d *Dispatcher) discardLocked(q *fdQueue) {
	for _, ev := range q.events {
		d.pendingBytes -= ev.size()
	}
	d.pending -= len(q.events)
	q.events = nil
	q.suspect, q.single = 0, false
	if q.reserved {
		q.reserved = false
		d.reserved--
	}
	d.idleCheckLocked()
}

// idleCheckLocked tells a waiting Shutdown when nothing is pending.
func (d *Dispatcher) idleCheckLocked() {
	if d.pending == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// queueLocked returns fd's queue, creating it at the connection's first
// event.
func (d *Dispatcher) queueLocked(fd int64) *fdQueue {
	q := d.fds[fd]
	if q == nil {
		q = &fdQueue{fd: fd}
		d.fds[fd] = q
	}
	return q
}

// pushLocked gives ev the next seq of its connection, appends it to q and
// wakes a sender if q was idle.
func (d *Dispatcher) pushLocked(q *fdQueue, ev event) {
	q.seq++
	ev.seq = q.seq
	q.events = append(q.events, ev)
	d.pending++
	d.pendingBytes += ev.size()
	if !q.ready && q.inFlight == 0 {
		d.markReadyLocked(q)
	}
}

// droppedAfterStop counts and logs an event that arrived after the senders
// stopped; it releases d.mu, which the caller holds.
func (d *Dispatcher) droppedAfterStop(fd int64) {
	d.countDropLocked(DropShutdown, 1)
	d.mu.Unlock()
	d.limit.logf("drop:"+DropShutdown, slog.LevelWarn, "event dropped", "fd", fd, "reason", DropShutdown)
}

func (d *Dispatcher) markReadyLocked(q *fdQueue) {
	q.ready = true
	d.ready = append(d.ready, q)
	d.wake.Signal()
}

func (d *Dispatcher) countDropLocked(reason string, n int) {
	switch reason {
	case DropQueueFD:
		d.stats.Dropped.QueueFD += uint64(n)
	case DropQueueTotal:
		d.stats.Dropped.QueueTotal += uint64(n)
	case DropQueueBytes:
		d.stats.Dropped.QueueBytes += uint64(n)
	case DropRefused:
		d.stats.Dropped.Refused += uint64(n)
	case DropPoison:
		d.stats.Dropped.Poison += uint64(n)
	case DropUnopened:
		d.stats.Dropped.Unopened += uint64(n)
	case DropShutdown:
		d.stats.Dropped.Shutdown += uint64(n)
	}
}

// batch is one request's events: a run of consecutive events of each of
// its connections.
type batch struct {
	queues []*fdQueue
	counts []int // events taken from each queue
	events []event
	acksAt uint64 // Dispatcher.acks when these events' first request began
	tried  int    // attempts made at this body before (it was put back)
}

// sender is one of the Concurrency goroutines: it takes a batch, delivers
// it, and starts over, until Shutdown stops it.
func (d *Dispatcher) sender() {
	defer d.wg.Done()
	for {
		b := d.nextBatch()
		if b == nil {
			return
		}
		d.finish(b, d.deliver(b))
	}
}

// nextBatch waits for connections with events to send and takes, in the
// order they became ready, as many of their events as one request holds.
// It returns nil when the senders stop.
func (d *Dispatcher) nextBatch() *batch {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		for len(d.ready) == 0 && !d.stopped {
			d.wake.Wait()
		}
		if d.stopped {
			return nil
		}
		if b := d.takeLocked(); len(b.events) > 0 {
			d.inFlight++
			return b
		}
	}
}

// takeLocked takes a batch off the ready list. A connection with suspect
// events travels alone: with all of them, or with the first one when
// single.
func (d *Dispatcher) takeLocked() *batch {
	b := &batch{acksAt: d.acks.Load()}
	size := 0
	for len(d.ready) > 0 && len(b.events) < d.cfg.BatchSize {
		q := d.ready[0]
		if len(q.events) > 0 && len(b.events) > 0 && (q.suspect > 0 || size+q.events[0].size() > d.cfg.BatchBytes) {
			break // it starts the next request
		}
		// Popped by reslicing: append copies only the waiting ones when it
		// grows the array, so a list that never empties does not grow.
		d.ready[0] = nil
		d.ready = d.ready[1:]
		q.ready = false
		if len(q.events) == 0 {
			continue
		}
		limit := d.cfg.BatchSize
		switch {
		case q.single:
			limit = 1
		case q.suspect > 0:
			limit = q.suspect
		}
		n := 0
		for n < len(q.events) && n < limit && len(b.events) < d.cfg.BatchSize {
			ev := q.events[n]
			if len(b.events) > 0 && size+ev.size() > d.cfg.BatchBytes {
				break // a single larger event travels alone
			}
			b.events = append(b.events, ev)
			size += ev.size()
			n++
		}
		if q.events[0].typ == "open" {
			q.openSent = true
		}
		q.inFlight = n
		b.queues = append(b.queues, q)
		b.counts = append(b.counts, n)
		if q.suspect > 0 {
			b.acksAt, b.tried = q.acksAt, q.tried
			break // alone
		}
	}
	if len(d.ready) > 0 {
		d.wake.Signal() // more is ready: another sender may take it
	}
	return b
}

// outcome is how a batch's delivery ended.
type outcome int

const (
	acknowledged outcome = iota // a 2xx answer
	refused                     // 400 or 413 for a single event: dropped, never retried (a larger batch is split)
	stopped                     // the senders stopped first: still pending
	split                       // failed Config.Retries times: its parts go alone
	putBack                     // one connection's, failed Config.Retries times, the application failing everything: others get a turn
	poison                      // one event, failed alone while others were acknowledged: dropped
)

// finish records a batch's outcome: acknowledged, refused or poison events
// leave their queues, a split batch's connections are marked suspect, and
// the connections with more events become ready again. A batch whose
// delivery stopped stays pending for Shutdown to count.
func (d *Dispatcher) finish(b *batch, out outcome) {
	var closeFD int64 // a connection whose open event was dropped (poison or refused)
	var dropped event // the poison event
	d.mu.Lock()
	d.inFlight--
	for i, q := range b.queues {
		n := b.counts[i]
		q.inFlight = 0
		switch out {
		case stopped:
			continue
		case split:
			// Lossless: the same events, in the same order, go again
			// in smaller requests.
			q.suspect = n
			q.single = len(b.queues) == 1
			q.acksAt, q.tried = b.acksAt, 0
			if !d.stopped {
				d.markReadyLocked(q)
			}
			continue
		case putBack:
			// The same events go alone, as the same body, when their
			// turn comes again.
			q.suspect = n
			q.acksAt, q.tried = b.acksAt, b.tried
			if !d.stopped {
				d.markReadyLocked(q)
			}
			continue
		case poison:
			dropped = q.events[0]
		}
		for _, ev := range q.events[:n] {
			d.pendingBytes -= ev.size()
		}
		ended := false
		for _, ev := range q.events[:n] {
			ended = ended || ev.typ == "close"
		}
		first := q.events[0]
		clear(q.events[:n])
		q.events = q.events[n:]
		if len(q.events) == 0 {
			q.events = nil // an idle connection keeps no array
		}
		d.pending -= n
		if q.suspect > 0 {
			q.suspect = max(q.suspect-n, 0)
			q.single = q.single && q.suspect > 0
			// The next suspect event is a new body: other requests must
			// be acknowledged while it fails for it to be dropped.
			q.tried, q.acksAt = 0, d.acks.Load()
		}
		if (out == poison || out == refused) && first.typ == "open" && !ended {
			// The application never got it: it must not get the rest.
			d.countDropLocked(DropUnopened, len(q.events))
			d.discardLocked(q)
			q.unopened = true
			if !q.ended {
				closeFD = q.fd
			}
		}
		switch {
		case len(q.events) > 0:
			if !d.stopped {
				d.markReadyLocked(q)
			}
		case q.ended:
			delete(d.fds, q.fd)
		}
	}
	switch out {
	case stopped, split, putBack:
		if out == split {
			d.stats.Splits++
		}
		d.mu.Unlock()
		return
	case refused:
		d.countDropLocked(DropRefused, len(b.events))
	case poison:
		d.countDropLocked(DropPoison, 1)
	case acknowledged:
		d.stats.Delivered += uint64(len(b.events))
		d.stats.Requests++
	}
	d.idleCheckLocked()
	closer := d.closer
	d.mu.Unlock()
	if out == poison {
		d.limit.logf("drop:"+DropPoison, slog.LevelError, "event dropped", "fd", dropped.fd, "seq", dropped.seq,
			"type", dropped.typ, "reason", DropPoison, "bytes", dropped.size())
	}
	if closeFD != 0 && closer != nil {
		if err := closer.Disconnect(closeFD, CloseInternalError, "events: the application did not accept the open event"); err == nil {
			d.closed.Add(1)
		}
	}
}

// CloseInternalError is the close code of a connection whose open event
// the application failed on (DropPoison): the application never heard of
// it, so it cannot stay.
const CloseInternalError = 1011

// deliver posts b until it is acknowledged or refused, or the senders stop,
// with exponential backoff between attempts. 400 and 413 are refusals: the
// application says it can never accept this body, and retrying it would
// hold its connections' later events forever. After Config.Retries
// retries a batch of several connections is split (one request per
// connection); a batch of one connection is split (one request per event)
// only if the application acknowledged other requests meanwhile, and so is
// a single event dropped (poison). A failure of everything means the
// application is down: then nothing is dropped, and a batch of one
// connection is put back after its retries, so that the others get their
// turn (and may show that the application is up).
func (d *Dispatcher) deliver(b *batch) outcome {
	body := batchBody(d.cfg.NodeID, b.events)
	for attempt := b.tried + 1; ; attempt++ {
		b.tried = attempt
		start := time.Now()
		status, err := d.postEvents(body, attempt)
		d.observeDelivery(status, err, len(b.events), time.Since(start))
		if err == nil && status >= 200 && status <= 299 {
			d.acks.Add(1)
			return acknowledged
		}
		if err == nil && (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge) {
			if len(b.events) > 1 {
				// Which event is refused, or is the body just too large?
				// The parts go alone, down to single events, so that only
				// what the application refuses on its own is dropped.
				d.limit.logf("split", slog.LevelWarn, "the application refused a batch of events; its parts go alone",
					"status", status, "events", len(b.events), "connections", len(b.queues), "bytes", len(body))
				return split
			}
			ev := b.events[0]
			d.log.Error("the application refused an event; it is dropped", "status", status,
				"fd", ev.fd, "seq", ev.seq, "type", ev.typ, "bytes", len(body))
			return refused
		}
		if d.ctx.Err() != nil {
			return stopped
		}
		if attempt > d.cfg.Retries && (attempt-1)%(d.cfg.Retries+1) == d.cfg.Retries {
			// Every Retries+1 attempts: on the first budget, and again
			// after each turn put back.
			switch {
			case len(b.queues) > 1:
				d.limit.logf("split", slog.LevelWarn, "events batch failed too often; its connections go alone",
					"attempts", attempt, "events", len(b.events), "connections", len(b.queues))
				return split
			case d.acks.Load() == b.acksAt:
				// Nothing else acknowledged either: the application is
				// down, not failing on these events. After the pause,
				// the others get their turn.
				d.retries.Add(1)
				if !d.pause(d.backoff(attempt)) {
					return stopped
				}
				return putBack
			case len(b.events) > 1:
				d.limit.logf("split", slog.LevelWarn, "events of a connection failed too often; they go one by one",
					"attempts", attempt, "events", len(b.events), "fd", b.queues[0].fd)
				return split
			default:
				return poison
			}
		}
		d.retries.Add(1)
		backoff := d.backoff(attempt)
		args := []any{"attempt", attempt, "events", len(b.events), "connections", len(b.queues), "retry_in", backoff.String()}
		if err != nil {
			args = append(args, "err", redactError(err))
		} else {
			args = append(args, "status", status)
		}
		d.limit.logf("delivery", slog.LevelWarn, "events delivery failed, will retry", args...)
		if !d.pause(backoff) {
			return stopped
		}
	}
}

// pause waits for dur; false when the senders must stop first.
func (d *Dispatcher) pause(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}

// backoff is the pause after the attempt-th failure: retryMin (or
// RetryMax, if lower), doubling up to RetryMax.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := min(retryMin, d.cfg.RetryMax)
	for i := 1; i < attempt && b < d.cfg.RetryMax; i++ {
		b = min(b*2, d.cfg.RetryMax)
	}
	return b
}

// observeDelivery tells the Observer, if any, how a request ended.
func (d *Dispatcher) observeDelivery(status int, err error, events int, took time.Duration) {
	obs := d.cfg.Observer
	if obs == nil {
		return
	}
	outcome := OutcomeFailed
	switch {
	case err == nil && status >= 200 && status <= 299:
		outcome = OutcomeAcknowledged
	case err == nil && (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge):
		outcome = OutcomeRefused
	case d.ctx.Err() != nil:
		outcome = OutcomeCancelled
	}
	obs.ObserveDelivery(outcome, events, took)
}

// Stats returns the Dispatcher's counters.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	s := d.stats
	s.Pending = d.pending
	s.PendingBytes = d.pendingBytes
	s.Reserved = d.reserved
	s.InFlight = d.inFlight
	d.mu.Unlock()
	s.HandshakesRefused = d.refusedHS.Load()
	s.Retries = d.retries.Load()
	s.Closed = d.closed.Load()
	s.Auth = AuthStats{Allowed: d.allowed.Load(), Denied: d.denied.Load(), Failed: d.authFailed.Load()}
	return s
}

// Shutdown delivers what is pending (events that arrive meanwhile
// included) until nothing is or ctx is done; then it stops the senders,
// cancelling the requests under way, and counts and logs the events left
// undelivered (DropShutdown), as it does any event that arrives later. It
// returns an error wrapping ErrUndelivered (and ctx.Err(), if done) when
// events were left. It is idempotent.
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	var err error
	first := false
	d.shutdownOnce.Do(func() {
		first = true
		err = d.shutdown(ctx)
		close(d.shutdownDone)
	})
	if first {
		return err
	}
	select {
	case <-d.shutdownDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Dispatcher) shutdown(ctx context.Context) error {
	d.mu.Lock()
	idle := make(chan struct{})
	if d.pending == 0 {
		close(idle)
	} else {
		d.idle = idle
	}
	d.mu.Unlock()

	var err error
	select {
	case <-idle:
	case <-ctx.Done():
	}

	d.mu.Lock()
	d.stopped = true
	d.idle = nil
	d.wake.Broadcast()
	d.mu.Unlock()
	d.cancel() // requests under way return, backoffs end
	d.wg.Wait()

	d.mu.Lock()
	left, conns := d.pending, len(d.fds)
	d.countDropLocked(DropShutdown, left)
	d.pending, d.pendingBytes, d.reserved = 0, 0, 0
	clear(d.fds)
	clear(d.ready)
	d.ready = nil
	d.mu.Unlock()
	if left > 0 {
		d.log.Warn("events undelivered at shutdown", "events", left, "connections", conns)
		err = fmt.Errorf("%w: %d events", ErrUndelivered, left)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %d events: %w", ErrUndelivered, left, ctx.Err())
		}
	}
	d.limit.stop()
	d.client.CloseIdleConnections()
	d.auth.CloseIdleConnections()
	return err
}

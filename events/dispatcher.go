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
	DropShutdown   = "shutdown"    // still pending when Shutdown's deadline passed, or arrived after
)

// Stats is a snapshot of a Dispatcher's counters.
type Stats struct {
	Delivered uint64    `json:"delivered"` // events acknowledged by the application
	Requests  uint64    `json:"requests"`  // event requests acknowledged
	Retries   uint64    `json:"retries"`   // event requests that failed and were retried
	Dropped   DropStats `json:"dropped"`   // events dropped, by reason
	Closed    uint64    `json:"closed"`    // connections closed by OverflowClose
	Pending   int       `json:"pending"`   // events not yet acknowledged, in flight included
	InFlight  int       `json:"in_flight"` // event requests under way
	Auth      AuthStats `json:"auth"`
}

// DropStats counts dropped events by reason.
type DropStats struct {
	QueueFD    uint64 `json:"queue_fd"`
	QueueTotal uint64 `json:"queue_total"`
	QueueBytes uint64 `json:"queue_bytes"`
	Refused    uint64 `json:"refused"`
	Shutdown   uint64 `json:"shutdown"`
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
	inFlight     int
	closer       Closer
	idle         chan struct{} // set by Shutdown; closed when pending reaches 0
	stopped      bool          // the senders stop; later events are dropped
	stats        Stats         // counters guarded by mu; Retries, Closed and Auth are atomics below

	retries, closed             atomic.Uint64
	allowed, denied, authFailed atomic.Uint64
	shutdownOnce                sync.Once
	shutdownDone                chan struct{}
}

// fdQueue is one connection's pending events, in order; events[:inFlight]
// are in the request under way.
type fdQueue struct {
	fd       int64
	seq      uint64 // of the last event queued
	events   []event
	inFlight int
	ready    bool // in Dispatcher.ready
	ended    bool // its close event is queued
	closing  bool // OverflowClose has closed it
}

var _ bridge.Listener = (*Dispatcher)(nil)

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

// OnOpen queues the open event of a connection.
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
	d.pushLocked(d.queueLocked(info.FD), ev)
	d.mu.Unlock()
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
	reason := ""
	switch {
	case len(q.events) >= d.cfg.QueuePerFD:
		reason = DropQueueFD
	case d.pending >= d.cfg.QueueTotal:
		reason = DropQueueTotal
	case d.pendingBytes+ev.size() > d.cfg.QueueBytes:
		reason = DropQueueBytes
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

// OnClose queues the close event of a connection; it is always kept.
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
	q.ended = true
	d.pushLocked(q, e)
	d.mu.Unlock()
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

// takeLocked takes a batch off the ready list.
func (d *Dispatcher) takeLocked() *batch {
	b := &batch{}
	size := 0
	for len(d.ready) > 0 && len(b.events) < d.cfg.BatchSize {
		q := d.ready[0]
		if len(q.events) > 0 && len(b.events) > 0 && size+q.events[0].size() > d.cfg.BatchBytes {
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
		n := 0
		for n < len(q.events) && len(b.events) < d.cfg.BatchSize {
			ev := q.events[n]
			if len(b.events) > 0 && size+ev.size() > d.cfg.BatchBytes {
				break // a single larger event travels alone
			}
			b.events = append(b.events, ev)
			size += ev.size()
			n++
		}
		q.inFlight = n
		b.queues = append(b.queues, q)
		b.counts = append(b.counts, n)
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
	refused                     // 400 or 413: dropped, never retried
	stopped                     // the senders stopped first: still pending
)

// finish records a batch's outcome: acknowledged or refused events leave
// their queues, and the connections with more events become ready again. A
// batch whose delivery stopped stays pending for Shutdown to count.
func (d *Dispatcher) finish(b *batch, out outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight--
	for i, q := range b.queues {
		n := b.counts[i]
		q.inFlight = 0
		if out == stopped {
			continue
		}
		for _, ev := range q.events[:n] {
			d.pendingBytes -= ev.size()
		}
		clear(q.events[:n])
		q.events = q.events[n:]
		if len(q.events) == 0 {
			q.events = nil // an idle connection keeps no array
		}
		d.pending -= n
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
	case stopped:
		return
	case refused:
		d.countDropLocked(DropRefused, len(b.events))
	case acknowledged:
		d.stats.Delivered += uint64(len(b.events))
		d.stats.Requests++
	}
	if d.pending == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// deliver posts b until it is acknowledged or refused, or the senders stop,
// with exponential backoff between attempts. 400 and 413 are refusals: the
// application says it can never accept this body, and retrying it would
// hold its connections' later events forever.
func (d *Dispatcher) deliver(b *batch) outcome {
	body := batchBody(d.cfg.NodeID, b.events)
	backoff := min(retryMin, d.cfg.RetryMax)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		status, err := d.postEvents(body, attempt)
		d.observeDelivery(status, err, len(b.events), time.Since(start))
		if err == nil && status >= 200 && status <= 299 {
			return acknowledged
		}
		if err == nil && (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge) {
			d.log.Error("the application refused a batch of events; they are dropped", "status", status,
				"events", len(b.events), "connections", len(b.queues), "bytes", len(body))
			return refused
		}
		if d.ctx.Err() != nil {
			return stopped
		}
		d.retries.Add(1)
		args := []any{"attempt", attempt, "events", len(b.events), "connections", len(b.queues), "retry_in", backoff.String()}
		if err != nil {
			args = append(args, "err", err.Error())
		} else {
			args = append(args, "status", status)
		}
		d.limit.logf("delivery", slog.LevelWarn, "events delivery failed, will retry", args...)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return stopped
		}
		backoff = min(backoff*2, d.cfg.RetryMax)
	}
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
	s.InFlight = d.inFlight
	d.mu.Unlock()
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
	d.pending, d.pendingBytes = 0, 0
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

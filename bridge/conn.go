package bridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type connState uint8

const (
	stateOpen    connState = iota
	stateClosing           // a close is under way: nothing new is accepted
	stateClosed            // the socket is closed
)

type itemKind uint8

const (
	itemData     itemKind = iota // a message or a fragment of one (op, data, finish)
	itemPrepared                 // a broadcast frame, encoded once for all connections
	itemControl                  // ping or pong (op, data)
	itemClose                    // close frame (code, reason in data)
	itemOwed                     // the rest of a frame written in part directly (bufConn.owed; direct.go)
)

// item is one entry of a connection's send queue.
type item struct {
	kind      itemKind
	finish    bool
	validText bool // for a text message: its data is UTF-8 (checked outside the lock)
	op        Opcode
	code      int
	data      []byte
	pm        *websocket.PreparedMessage
	ref       *sharedPayload // a broadcast's payload: charged to the budget once for all queues
	size      int            // payload bytes, counted against the queue's bounds and the budget
	cont      bool           // continues an open fragmented message: bounded by the message, not the queue
}

// conn is one WebSocket connection. Its reader goroutine (run) owns the
// connection's lifetime; its writer goroutine (writeLoop) exists only while
// the queue holds something and is the only goroutine that writes to ws.
type conn struct {
	hub    *Hub
	worker *worker
	fd     int64
	ws     *websocket.Conn
	bc     *bufConn // the socket under ws
	slot   *slot    // the admission slot, released when the reader returns
	info   keptInfo // the handshake, compact (info.go)
	direct bool     // messages for many connections may be written directly (direct.go)
	polled bool     // read by the poll mode's pool, not a goroutine of its own (poll.go)

	pingedAt  int64 // unix nanoseconds; read and written by the worker goroutine only
	lastWrite int64 // unix nanoseconds of the last write, with a write delay only (delay.go); under mu

	rate rateBucket // the client's rate limits; the reader goroutine only

	// Poll mode only (poll.go): who reads the connection (pollOwned,
	// pollParked, pollSolo), the last sign of life from the client (unix
	// nanoseconds; alive) and whether the keepalive tick found it dead.
	pst     atomic.Uint32
	seen    atomic.Int64
	expired atomic.Bool
	lowat   int32 // the SO_RCVLOWAT set while a message is awaited whole; its reader only
	unread  bool  // a refused message was left unread (gorilla is inside it); its reader only
	// fragAt is when the open fragmented message last got a push (unix
	// nanoseconds), 0 when none is open: the worker's keepalive tick reads
	// it to abort an idle one, so an idle fragment costs no timer.
	fragAt atomic.Int64
	// size is what this connection holds against the budget: its queue,
	// its held broadcasts and the item its writer is writing. Written under
	// mu (the writer subtracts what it wrote), read by a sweep without it.
	size atomic.Int64
	// own is the part of size that is this connection's alone (not a
	// broadcast's payload, which other queues may hold too): what closing
	// it gives back to the budget at once. Same rules as size.
	own atomic.Int64
	tr  connTrace // byte counts, and the trace while watched (trace.go)

	mu          sync.Mutex
	state       connState
	q           []item // FIFO: q[head:] are waiting
	head        int
	queuedBytes int           // payload bytes of q[head:]
	held        []item        // broadcasts waiting for an open fragmented message to finish
	heldBytes   int           // payload bytes of held
	fragmenting bool          // a push with finish=false is queued and not yet finished
	fragBytes   int           // bytes pushed into the open fragmented message so far
	fragQueued  int           // continuation items in q (item.cont)
	writing     bool          // a writer goroutine is running
	drained     chan struct{} // closed by the writer when it exits, if set
	byServer    bool          // the bridge started the close
	closeCode   int
	closeReason string
	peerClosed  bool // the client sent a close frame
	closeWait   bool // the close frame is written: the read deadline is the close timeout
	peerCode    int
	peerReason  string

	msgw io.WriteCloser // writer goroutine only: the open fragmented message

	idxMu     sync.Mutex          // orders joins, leaves, binds and unindex; taken before mu
	groups    map[string]struct{} // guarded by idxMu; nil until a join
	user      string              // guarded by idxMu
	unindexed bool                // guarded by idxMu: the connection has ended
}

func (c *conn) queuedLocked() int { return len(c.q) - c.head }

func (c *conn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateOpen
}

// enqueue adds it to the send queue. directed is true for a push addressed
// to this fd (it continues an open fragmented message); broadcasts and the
// bridge's own keepalive pings are not directed.
//
// Bounds: a new message must fit the queue (QueueSize, QueueBytes); while a
// fragmented message is open, broadcasts wait in held, under a bound of the
// same size of their own; pushes that continue the message are bounded by
// the message (MaxPushSize in all, QueueSize of them waiting), so the push
// that finishes it always fits. Everything is charged to the Hub's budget.
func (c *conn) enqueue(it item, directed bool) error {
	return c.enqueueVia(it, directed, nil)
}

// enqueueVia is enqueue for one message of many (batch.go): when the
// connection needs its flusher, it is put on fb instead of its worker's
// flush list, which fb fills a chunk at a time. A nil fb is enqueue.
func (c *conn) enqueueVia(it item, directed bool, fb *flushBatch) error {
	if r := c.tr.ring.Load(); r != nil {
		return r.pushed(&it, directed, c.enqueueItem(it, directed, fb))
	}
	return c.enqueueItem(it, directed, fb)
}

// enqueueItem is enqueueVia but the trace.
func (c *conn) enqueueItem(it item, directed bool, fb *flushBatch) error {
	err := c.tryEnqueue(it, directed, fb)
	if err != errOverBudget {
		return err
	}
	if it.kind == itemControl && !directed {
		return ErrQueueFull // a keepalive ping or a pong reply: skip it, no policy
	}
	h := c.hub
	if h.cfg.Overflow == OverflowClose {
		h.sweep(int64(it.size))
		err = c.tryEnqueue(it, directed, fb)
		if err != errOverBudget && err != ErrUnknownFD { // ErrUnknownFD: the sweep closed this one
			return err
		}
	}
	h.budget.refused.Add(1)
	c.worker.overflows.Add(1)
	return ErrQueueFull
}

func (c *conn) tryEnqueue(it item, directed bool, fb *flushBatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return ErrUnknownFD
	}
	if it.kind == itemData && directed && !c.fragmenting {
		// A complete message is checked whole; fragments may split a
		// character, so a fragmented message is the pusher's to get right.
		if it.op == OpContinuation {
			return fmt.Errorf("%w: continuation without an open fragmented message", ErrInvalidOpcode)
		}
		if it.op == OpText && it.finish && !it.validText {
			return ErrInvalidUTF8
		}
	}
	cfg := &c.hub.cfg
	it.cont = it.kind == itemData && directed && c.fragmenting
	held := !it.cont && c.fragmenting && (it.kind == itemData || it.kind == itemPrepared)
	switch {
	case it.cont:
		if c.fragBytes+it.size > cfg.MaxPushSize {
			return c.fragmentTooLargeLocked(it.size)
		}
		if !it.finish && c.fragQueued >= cfg.QueueSize {
			return c.overflowLocked(it, directed)
		}
	case held:
		if len(c.held) >= cfg.QueueSize || c.heldBytes+it.size > cfg.QueueBytes {
			c.worker.heldOverflows.Add(1)
			return c.overflowLocked(it, directed)
		}
	default:
		if c.queuedLocked() >= cfg.QueueSize || c.queuedBytes+it.size > cfg.QueueBytes {
			return c.overflowLocked(it, directed)
		}
	}
	if !c.hub.charge(&it, c.size.Load(), !it.cont) {
		return errOverBudget
	}
	c.size.Add(int64(it.size))
	if it.ref == nil {
		c.own.Add(int64(it.size))
	}
	if held {
		c.held = append(c.held, it)
		c.heldBytes += it.size
		return nil // a writer starts when the message is finished
	}
	c.q = append(c.q, it)
	c.queuedBytes += it.size
	if it.cont {
		c.fragQueued++
	}
	if it.kind == itemData && directed {
		switch {
		case !it.finish:
			c.fragmenting = true
			c.fragBytes += it.size
			c.fragAt.Store(time.Now().UnixNano())
		case c.fragmenting:
			c.fragmenting, c.fragBytes = false, 0
			c.fragAt.Store(0)
			c.q = append(c.q, c.held...)
			c.queuedBytes += c.heldBytes
			clear(c.held)
			c.held, c.heldBytes = nil, 0
		}
	}
	c.startWriterVia(fb)
	return nil
}

// overflowLocked refuses it under the overflow policy.
func (c *conn) overflowLocked(it item, directed bool) error {
	if it.kind == itemControl && !directed {
		return ErrQueueFull // a keepalive ping or a pong reply: skip it, no policy
	}
	c.worker.overflows.Add(1)
	if c.hub.cfg.Overflow == OverflowClose {
		c.hub.log.Warn("send queue full, closing slow connection", "fd", c.fd, "queued", c.queuedLocked(), "bytes", c.queuedBytes, "held", len(c.held))
		c.closeLocked(CloseSlowConsumer, "send queue full", false)
	}
	return ErrQueueFull
}

// fragmentTooLargeLocked refuses a push that would take the open
// fragmented message past MaxPushSize. The frames already written cannot
// be taken back and the message cannot be finished as the pusher meant, so
// it is aborted: the connection is closed with 1011.
func (c *conn) fragmentTooLargeLocked(size int) error {
	limit := c.hub.cfg.MaxPushSize
	c.worker.fragTooLarge.Add(1)
	c.hub.log.Warn("fragmented message too large, closing", "fd", c.fd, "bytes", c.fragBytes+size, "limit", limit)
	c.closeLocked(CloseInternalError, "fragmented message too large", false)
	return fmt.Errorf("%w: the fragmented message would be %d bytes, the limit is %d", ErrTooLarge, c.fragBytes+size, limit)
}

// abortIdleFragment closes the connection with 1011 if the fragmented
// message that got its last push at is still open and still idle.
func (c *conn) abortIdleFragment(at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen || !c.fragmenting || c.fragAt.Load() != at {
		return
	}
	c.worker.fragTimeouts.Add(1)
	c.hub.log.Warn("fragmented message not finished in time, closing", "fd", c.fd, "bytes", c.fragBytes, "timeout", c.hub.cfg.FragmentTimeout)
	c.closeLocked(CloseInternalError, "fragmented message not finished", false)
}

// closeOverBudget closes the connection with 1008, dropping its queue, to
// bring the Hub's queued bytes under the budget (a sweep found it among the
// largest, holding size).
func (c *conn) closeOverBudget(size int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	c.hub.log.Warn("queued bytes budget reached, closing the connection with one of the largest queues", "fd", c.fd, "bytes", size)
	return c.closeLocked(CloseSlowConsumer, "send queue budget exceeded", false)
}

// close starts a server-side close with code and reason. flush keeps what is
// queued (it is written before the close frame); otherwise it is dropped.
// It reports false when the connection was already closing.
func (c *conn) close(code int, reason string, flush bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeLocked(code, reason, flush)
}

func (c *conn) closeLocked(code int, reason string, flush bool) bool {
	if c.state != stateOpen {
		return false
	}
	c.state = stateClosing
	if !flush {
		c.clearLocked()
	}
	c.dropHeldLocked() // they wait behind a message that will never finish now
	c.fragAt.Store(0)
	c.byServer, c.closeCode, c.closeReason = true, code, reason
	c.q = append(c.q, item{kind: itemClose, code: code, data: []byte(reason)})
	c.startWriterLocked()
	c.kick() // a parked connection waits for the client's close in a goroutine of its own
	return true
}

// peerClose runs in the reader goroutine when the client's close frame
// arrives: answer it (unless we started the close) and accept nothing more.
func (c *conn) peerClose(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if code == websocket.CloseNoStatusReceived && c.bc.closeWithOneByte() {
		// gorilla passes a close frame with a 1-byte payload as an empty
		// one; it is a protocol error.
		c.closeLocked(websocket.CloseProtocolError, "invalid close frame payload", false)
		return
	}
	c.peerClosed, c.peerCode, c.peerReason = true, code, reason
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.clearLocked()
	if !validCloseCode(code) {
		code = websocket.CloseNoStatusReceived // an empty close frame
	}
	c.q = append(c.q, item{kind: itemClose, code: code})
	c.startWriterLocked()
}

// clearLocked drops everything queued and held, giving its bytes back.
func (c *conn) clearLocked() {
	for i := c.head; i < len(c.q); i++ {
		c.giveBack(&c.q[i])
	}
	c.size.Add(-int64(c.queuedBytes))
	clear(c.q)
	c.q, c.head, c.queuedBytes, c.fragQueued = nil, 0, 0, 0
	c.dropHeldLocked()
	c.fragAt.Store(0)
}

func (c *conn) dropHeldLocked() {
	for i := range c.held {
		c.giveBack(&c.held[i])
	}
	c.size.Add(-int64(c.heldBytes))
	clear(c.held)
	c.held, c.heldBytes = nil, 0
}

func (c *conn) startWriterLocked() { c.startWriterVia(nil) }

// startWriterVia is startWriterLocked, putting c on fb (batch.go) instead
// of its flush list when fb is not nil (under c.mu).
func (c *conn) startWriterVia(fb *flushBatch) {
	if !c.writing && len(c.q) > c.head {
		c.writing = true
		if c.delayLocked() {
			return // its writer starts after the write delay
		}
		if c.flushableLocked() {
			if fb != nil {
				fb.add(c) // its flusher gets it with the rest of fb's chunk
				return
			}
			c.worker.scheduleFlush(c) // its worker's flusher writes it (direct.go)
			return
		}
		c.hub.startWriter(c)
	}
}

// next pops the next item for the writer; false when the queue is empty.
func (c *conn) next() (item, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.q) || c.state == stateClosed {
		return item{}, false
	}
	it := c.q[c.head]
	c.q[c.head] = item{}
	c.head++
	if c.head == len(c.q) {
		if cap(c.q) > 4 {
			c.q = nil // an idle connection keeps no burst-sized array
		} else {
			c.q = c.q[:0]
		}
		c.head = 0
	}
	c.queuedBytes -= it.size
	if it.cont {
		c.fragQueued--
	}
	return it, true // still charged: written gives it back
}

// written gives back the bytes of an item the writer took, once its write
// has ended (or failed).
func (c *conn) written(it *item) {
	c.size.Add(-int64(it.size))
	c.giveBack(it)
}

// giveBack gives an item's bytes back to the budget and takes them off
// own; the caller takes them off size. Both counters are atomic: written
// calls it without mu, the item being the writer's alone.
func (c *conn) giveBack(it *item) {
	if it.ref == nil {
		c.own.Add(-int64(it.size))
	}
	c.hub.uncharge(it)
}

// exitIfIdle ends the writer when nothing was queued since it looked.
func (c *conn) exitIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head < len(c.q) && c.state != stateClosed {
		return false
	}
	c.bc.release() // no I/O: everything was flushed
	c.noteWriteLocked()
	c.writerExitLocked()
	return true
}

func (c *conn) writerExitLocked() {
	c.writing = false
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
}

// writeLoop is the connection's writer: it drains the queue, gathering the
// frames of a backlog into few socket writes, and exits when the queue is
// empty and everything is written.
func (c *conn) writeLoop() {
	var it item
	taken := false // it was taken from the queue and is not written yet
	defer func() {
		if r := recover(); r != nil {
			c.logPanic("writer", r)
			if taken {
				c.written(&it)
			}
			c.mu.Lock()
			c.bc.release()
			c.clearLocked()
			c.writerExitLocked()
			c.mu.Unlock()
			c.closeSocket() // the reader sees the error and finishes the connection
		}
	}()
	c.bc.gather()
	for {
		var ok bool
		it, ok = c.next()
		if !ok {
			// Write out what was gathered before looking again, so a
			// message is never held back waiting for another.
			if err := c.bc.flush(); err != nil {
				c.writeFailed(err)
			}
			if c.exitIfIdle() {
				return
			}
			continue
		}
		taken = true
		err := c.write(it)
		c.tr.frameOut(&it, err)
		c.written(&it)
		taken = false
		if err == nil && (it.kind == itemData || it.kind == itemPrepared) { // itemOwed: counted when its frame began
			c.worker.bytesOut.Add(uint64(it.size))
		}
		if it.kind == itemClose && errors.Is(err, websocket.ErrCloseSent) {
			err = nil // gorilla sent its own (1002, 1009) first: that one stands
		}
		if err == nil && it.kind == itemClose {
			err = c.bc.flush() // before the close timeout starts
		}
		if err != nil {
			c.writeFailed(err)
		}
	}
}

// writeFailed drops everything queued and closes the socket; the reader
// then finishes the connection.
//
// ErrCloseSent is not a failure of the socket: gorilla wrote its own close
// frame (a protocol error, a message over the read limit) from the reader,
// which is ending; nothing more is written, and finish closes the socket
// once the close frame has had its chance to arrive.
func (c *conn) writeFailed(err error) {
	closeSent := errors.Is(err, websocket.ErrCloseSent)
	c.mu.Lock()
	if c.state == stateOpen {
		c.hub.log.Debug("write failed", "fd", c.fd, "err", err)
		c.state = stateClosing
		if !closeSent {
			c.endedLocked("write failed")
		}
	}
	c.clearLocked()
	c.mu.Unlock()
	if !closeSent {
		c.closeSocket()
	}
}

// closeSocket closes the socket; the reader then finishes the connection.
// In poll mode the socket leaves the epoll set first, and a parked
// connection is woken to find the socket closed.
func (c *conn) closeSocket() {
	if c.polled {
		c.hub.poll.forget(c)
	}
	_ = c.ws.Close()
	c.kick()
}

func (c *conn) write(it item) error {
	cfg := &c.hub.cfg
	deadline := time.Now().Add(cfg.WriteTimeout)
	switch it.kind {
	case itemControl:
		return c.ws.WriteControl(int(it.op), it.data, deadline)
	case itemClose:
		err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(it.code, string(it.data)), deadline)
		// Wait a bounded time for the client's close frame, then the
		// reader gives up and closes the socket.
		c.mu.Lock()
		c.closeWait = true
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.CloseTimeout))
		c.mu.Unlock()
		return err
	case itemPrepared:
		_ = c.ws.SetWriteDeadline(deadline)
		return c.ws.WritePreparedMessage(it.pm)
	case itemOwed:
		_ = c.bc.SetWriteDeadline(deadline)
		return c.bc.flush()
	}
	_ = c.ws.SetWriteDeadline(deadline)
	frag := cfg.FragmentSize
	if c.msgw == nil && it.finish && (frag == 0 || len(it.data) <= frag) {
		return c.ws.WriteMessage(int(it.op), it.data)
	}
	if c.msgw == nil {
		w, err := c.ws.NextWriter(int(it.op))
		if err != nil {
			return err
		}
		c.msgw = w
	}
	for data := it.data; len(data) > 0; {
		n := len(data)
		if frag > 0 && n > frag {
			n = frag
		}
		if _, err := c.msgw.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	if !it.finish {
		return nil
	}
	w := c.msgw
	c.msgw = nil
	return w.Close()
}

// opened gives the open event to the Listener. The hub calls it on the
// handshake's goroutine before it starts the reader: OnOpen is deep (the
// events dispatcher, the cluster's fd tracker), and on the reader it grew
// the stack every idle reader then kept (4 KiB against 2 KiB; RSS 8.9
// against 6.2 KiB per idle connection with events on, docs/BENCHMARKS.md).
func (c *conn) opened() {
	if l := c.hub.cfg.Listener; l != nil {
		info, ok := c.hub.Info(c.fd) // with the user and groups it was given
		if !ok {
			info = c.connInfo()
		}
		l.OnOpen(info)
	}
}

// run is the connection's reader goroutine, started once the open event is
// delivered: it delivers the connection's messages and close event and owns
// the connection's end. In poll mode (poll.go) it reads what the client
// sent meanwhile and returns once the connection is idle, leaving it to
// the poller.
func (c *conn) run() {
	if c.polled {
		c.prepareRead()
		c.hub.poll.serve(c)
		return
	}
	defer c.hub.release(c.slot)
	err := c.readLoop()
	c.finish(err)
}

// prepareRead sets gorilla's read limit and control frame handlers.
func (c *conn) prepareRead() {
	cfg := &c.hub.cfg
	// gorilla's limit bounds the frames' bytes as they arrive; readMessage
	// bounds the message once inflated.
	c.ws.SetReadLimit(wireLimit(cfg))
	c.ws.SetPongHandler(func(string) error { c.alive(); return nil })
	c.ws.SetPingHandler(func(payload string) error {
		c.alive()
		_ = c.enqueue(item{kind: itemControl, op: OpPong, data: []byte(payload), size: len(payload)}, false)
		return nil
	})
	c.ws.SetCloseHandler(func(code int, reason string) error {
		c.peerClose(code, reason)
		return nil
	})
	c.rate.fill(cfg)
}

// alive notes that the client showed a sign of life: in goroutine mode it
// moves the read deadline (PingInterval+PongTimeout on); in poll mode it
// keeps the time, which the worker's keepalive tick compares (no goroutine
// waits with a deadline). The deadline is moved under mu, so that it cannot
// undo the close timeout the writer sets once the state has left open.
func (c *conn) alive() {
	if c.polled {
		c.seen.Store(time.Now().UnixNano())
		return
	}
	cfg := &c.hub.cfg
	c.mu.Lock()
	if c.state == stateOpen {
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
	}
	c.mu.Unlock()
}

func (c *conn) readLoop() error {
	c.prepareRead()
	alive := c.alive // one closure for the loop's life
	for {
		alive()
		if err := c.waitReadable(alive); err != nil {
			return c.readFailed(err)
		}
		if err := c.readOne(); err != nil {
			return err
		}
	}
}

// readOne reads the client's next message and gives it to the Listener,
// or refuses it. err (from readFailed) ends the connection.
func (c *conn) readOne() error {
	cfg := &c.hub.cfg
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return c.readFailed(err)
	}
	if !c.isOpen() {
		// Closing: the next NextReader discards it, until the
		// client's close frame or the close timeout.
		c.worker.refused[refusedClosing].Add(1)
		return nil
	}
	limited := cfg.rateLimited()
	maxBytes := int64(1<<63 - 1)
	if limited {
		var ok bool
		ok, maxBytes = c.rate.allow(cfg, time.Since(c.info.connectedAt))
		if !ok {
			c.refuse(refusedMessageRate)
			c.unread = true
			return nil // unread: the next NextReader discards it
		}
	}
	data, why, err := c.readMessage(mt, r, maxBytes)
	if limited {
		// What was read counts against the rates, given to the
		// application or not: a client refused for its byte rate
		// cannot make the bridge read and inflate more meanwhile.
		c.rate.take(cfg, len(data))
	}
	if err != nil {
		return c.readFailed(err)
	}
	c.unread = why != refusedNone
	if why != refusedNone {
		c.refuse(why)
		return nil
	}
	c.worker.messagesIn.Add(1)
	c.worker.bytesIn.Add(uint64(len(data)))
	c.tr.frameIn(mt, data)
	c.safely("message", func() {
		if l := cfg.Listener; l != nil {
			l.OnMessage(c.fd, Opcode(mt), data)
		}
	})
	return nil
}

// readFailed ends the read loop on err. A forbidden RSV1 (bufConn.Read)
// fails the connection with 1002; the keepalive's read deadline ends it
// as the bridge's 1006. Over gorilla's read limit (the
// frames on the wire) the message is refused as too big: gorilla wrote
// close 1009 unless the frame's length overflowed, so one is queued too
// (the writer's fails harmlessly when gorilla's went first).
func (c *conn) readFailed(err error) error {
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		c.refuse(refusedTooBig)
	case errors.Is(err, errReservedBit):
		c.close(websocket.CloseProtocolError, errReservedBit.Error(), false)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && c.polled && !c.expired.Load() {
			// Poll mode: the pool's bound on a message under way.
			c.pollTimedOut()
		} else if errors.As(err, &ne) && ne.Timeout() { // gorilla hides os.ErrDeadlineExceeded
			c.mu.Lock()
			if c.state == stateOpen {
				c.endedLocked("no pong in time")
			}
			c.mu.Unlock()
		}
	}
	return err
}

// endedLocked records that the bridge ends the open connection without a
// close frame (one could not get through): its close event is 1006 by the
// server.
func (c *conn) endedLocked(reason string) {
	c.byServer, c.closeCode, c.closeReason = true, websocket.CloseAbnormalClosure, reason
}

// refuse counts a message that is not given to the Listener and closes the
// connection, unless the rate policy is to drop it.
func (c *conn) refuse(why msgRefusal) {
	c.worker.refused[why].Add(1)
	if (why == refusedMessageRate || why == refusedByteRate) && c.hub.cfg.ClientRatePolicy == RatePolicyDrop {
		return
	}
	rc := refusalClose[why]
	c.close(rc.code, rc.reason, false)
}

// finish ends the connection after its reader stopped: it lets the writer
// send what a close needs (bounded by CloseTimeout), closes the socket,
// waits for the writer, unregisters the fd and reports the close.
func (c *conn) finish(readErr error) {
	c.mu.Lock()
	graceful := c.state == stateClosing
	peerClosed := c.peerClosed // the reader has stopped: it no longer changes
	if c.state == stateOpen {
		c.state = stateClosing
		c.clearLocked()
	}
	var drained chan struct{}
	if c.writing {
		c.drained = make(chan struct{})
		drained = c.drained
	}
	c.mu.Unlock()

	if drained != nil && graceful {
		t := time.NewTimer(c.hub.cfg.CloseTimeout)
		select {
		case <-drained:
		case <-t.C:
		}
		t.Stop()
	}
	if c.polled {
		c.hub.poll.forget(c) // before the socket is closed: its number may be reused at once
	}
	if !peerClosed && c.mustLinger(readErr) {
		c.bc.linger(c.hub.cfg.CloseTimeout)
	}
	_ = c.ws.Close()
	if drained != nil {
		<-drained // the socket is closed: a blocked write returns at once
	}
	c.mu.Lock()
	c.state = stateClosed
	c.clearLocked()
	ev := c.closeEventLocked()
	c.mu.Unlock()
	c.tr.closed(ev)
	c.hub.log.Debug("connection ended", "fd", c.fd, "code", ev.Code, "by_server", ev.ByServer, "read_err", readErr)

	c.unindex()
	c.worker.countClose(ev)
	c.worker.remove(c)
	c.safely("close", func() {
		if l := c.hub.cfg.Listener; l != nil {
			l.OnClose(c.fd, ev)
		}
	})
}

// mustLinger reports whether the socket must linger before it is closed:
// the reader stopped on an error of the client's (a protocol error, a
// message over the read limit) that the bridge answered with a close
// frame (finish calls it when the client's close has not come). The
// client's unread bytes would make closing the socket send a reset, which
// may destroy the close frame before the client reads it.
func (c *conn) mustLinger(readErr error) bool {
	if readErr == nil {
		return false
	}
	if _, _, sent := c.bc.sentClose(); !sent {
		return false
	}
	var ne net.Error
	return !errors.As(readErr, &ne) && !errors.Is(readErr, io.EOF) && !errors.Is(readErr, io.ErrUnexpectedEOF) && !errors.Is(readErr, net.ErrClosed)
}

// closeEventLocked reports how the connection ended: the client's close
// when it closed first; else the first close frame written on the socket,
// which is the bridge's own or the one gorilla wrote when it failed the
// connection (1002 for a protocol error, 1009 over the read limit); else
// the close the bridge started without getting its frame out; else 1006.
func (c *conn) closeEventLocked() CloseEvent {
	code, reason, sent := c.bc.sentClose()
	switch {
	case c.peerClosed && !c.byServer: // our frame, if any, answered it
		return CloseEvent{Code: c.peerCode, Reason: c.peerReason}
	case sent:
		return CloseEvent{Code: code, Reason: reason, ByServer: true}
	case c.byServer:
		return CloseEvent{Code: c.closeCode, Reason: c.closeReason, ByServer: true}
	}
	return CloseEvent{Code: websocket.CloseAbnormalClosure}
}

// safely runs f, turning a panic into a log line and a close of this
// connection only.
func (c *conn) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.logPanic(what, r)
			c.close(CloseInternalError, "internal error", false)
		}
	}()
	f()
}

func (c *conn) logPanic(where string, r any) {
	c.hub.log.Error("panic recovered, closing connection", "fd", c.fd, "in", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

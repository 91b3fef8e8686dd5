package bridge

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
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
	size      int // bytes counted against Config.QueueBytes
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
	info   ConnInfo

	pingedAt int64 // unix nanoseconds; read and written by the worker goroutine only

	rate rateBucket // the client's rate limits; the reader goroutine only

	mu          sync.Mutex
	state       connState
	q           []item // FIFO: q[head:] are waiting
	head        int
	held        []item // broadcasts waiting for an open fragmented message to finish
	queuedBytes int
	fragmenting bool          // a push with finish=false is queued and not yet finished
	writing     bool          // a writer goroutine is running
	drained     chan struct{} // closed by the writer when it exits, if set
	byServer    bool          // the bridge started the close
	closeCode   int
	closeReason string
	peerClosed  bool // the client sent a close frame
	peerCode    int
	peerReason  string

	msgw io.WriteCloser // writer goroutine only: the open fragmented message

	idxMu     sync.Mutex          // orders joins, leaves, binds and unindex; taken before mu
	groups    map[string]struct{} // guarded by idxMu; nil until a join
	user      string              // guarded by idxMu
	unindexed bool                // guarded by idxMu: the connection has ended
}

func (c *conn) queuedLocked() int { return len(c.q) - c.head + len(c.held) }

func (c *conn) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateOpen
}

// enqueue adds it to the send queue. directed is true for a push addressed
// to this fd (it continues an open fragmented message); broadcasts and the
// bridge's own keepalive pings are not directed.
func (c *conn) enqueue(it item, directed bool) error {
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
	if c.queuedLocked() >= cfg.QueueSize || c.queuedBytes+it.size > cfg.QueueBytes {
		if it.kind == itemControl && !directed {
			return ErrQueueFull // a keepalive ping or a pong reply: skip it, no policy
		}
		c.worker.overflows.Add(1)
		if cfg.Overflow == OverflowClose {
			c.hub.log.Warn("send queue full, closing slow connection", "fd", c.fd, "queued", c.queuedLocked(), "bytes", c.queuedBytes)
			c.closeLocked(CloseSlowConsumer, "send queue full", false)
		}
		return ErrQueueFull
	}
	c.queuedBytes += it.size
	switch {
	case it.kind == itemData && directed:
		c.q = append(c.q, it)
		c.fragmenting = !it.finish
		if it.finish && len(c.held) > 0 {
			c.q = append(c.q, c.held...)
			c.held = nil
		}
	case c.fragmenting && (it.kind == itemData || it.kind == itemPrepared):
		c.held = append(c.held, it)
	default:
		c.q = append(c.q, it)
	}
	c.startWriterLocked()
	return nil
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
	c.held = nil // they wait behind a message that will never finish now
	c.byServer, c.closeCode, c.closeReason = true, code, reason
	c.q = append(c.q, item{kind: itemClose, code: code, data: []byte(reason)})
	c.startWriterLocked()
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

func (c *conn) clearLocked() {
	clear(c.q)
	c.q, c.head, c.held, c.queuedBytes = nil, 0, nil, 0
}

func (c *conn) startWriterLocked() {
	if !c.writing && len(c.q) > c.head {
		c.writing = true
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
	return it, true
}

// exitIfIdle ends the writer when nothing was queued since it looked.
func (c *conn) exitIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head < len(c.q) && c.state != stateClosed {
		return false
	}
	c.bc.release() // no I/O: everything was flushed
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
	defer func() {
		if r := recover(); r != nil {
			c.logPanic("writer", r)
			c.mu.Lock()
			c.bc.release()
			c.clearLocked()
			c.writerExitLocked()
			c.mu.Unlock()
			_ = c.ws.Close() // the reader sees the error and finishes the connection
		}
	}()
	c.bc.gather()
	for {
		it, ok := c.next()
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
		err := c.write(it)
		if err == nil && (it.kind == itemData || it.kind == itemPrepared) {
			c.worker.bytesOut.Add(uint64(it.size))
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
func (c *conn) writeFailed(err error) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.hub.log.Debug("write failed", "fd", c.fd, "err", err)
		c.state = stateClosing
	}
	c.clearLocked()
	c.mu.Unlock()
	_ = c.ws.Close()
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
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.CloseTimeout))
		return err
	case itemPrepared:
		_ = c.ws.SetWriteDeadline(deadline)
		return c.ws.WritePreparedMessage(it.pm)
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

// run is the connection's reader goroutine: it delivers events and owns the
// connection's end.
func (c *conn) run() {
	defer c.hub.release(c.slot)
	c.safely("open", func() {
		if l := c.hub.cfg.Listener; l != nil {
			info, ok := c.hub.Info(c.fd) // with the user and groups it was given
			if !ok {
				info = c.info
			}
			l.OnOpen(info)
		}
	})
	err := c.readLoop()
	c.finish(err)
}

func (c *conn) readLoop() error {
	cfg := &c.hub.cfg
	idle := cfg.PingInterval + cfg.PongTimeout
	alive := func() {
		if c.isOpen() {
			_ = c.ws.SetReadDeadline(time.Now().Add(idle))
		}
	}
	// gorilla's limit bounds the frames' bytes as they arrive; readMessage
	// bounds the message once inflated.
	c.ws.SetReadLimit(wireLimit(cfg))
	c.ws.SetPongHandler(func(string) error { alive(); return nil })
	c.ws.SetPingHandler(func(payload string) error {
		alive()
		_ = c.enqueue(item{kind: itemControl, op: OpPong, data: []byte(payload), size: len(payload)}, false)
		return nil
	})
	c.ws.SetCloseHandler(func(code int, reason string) error {
		c.peerClose(code, reason)
		return nil
	})
	limited := cfg.rateLimited()
	c.rate.fill(cfg)
	for {
		alive()
		mt, r, err := c.ws.NextReader()
		if err != nil {
			return c.readFailed(err)
		}
		if !c.isOpen() {
			continue // closing: the next NextReader discards it, until the client's close frame or the close timeout
		}
		maxBytes := int64(1<<63 - 1)
		if limited {
			var ok bool
			ok, maxBytes = c.rate.allow(cfg, time.Since(c.info.ConnectedAt))
			if !ok {
				c.refuse(refusedMessageRate)
				continue // unread: the next NextReader discards it
			}
		}
		data, why, err := c.readMessage(mt, r, maxBytes)
		c.worker.messagesIn.Add(1)
		c.worker.bytesIn.Add(uint64(len(data)))
		if err != nil {
			return c.readFailed(err)
		}
		if why != refusedNone {
			c.refuse(why)
			continue
		}
		if limited {
			c.rate.take(cfg, len(data))
		}
		c.safely("message", func() {
			if l := cfg.Listener; l != nil {
				l.OnMessage(c.fd, Opcode(mt), data)
			}
		})
	}
}

// readFailed ends the read loop on err. Over gorilla's read limit (the
// frames on the wire) the message is refused as too big: gorilla wrote
// close 1009 unless the frame's length overflowed, so one is queued too
// (the writer's fails harmlessly when gorilla's went first).
func (c *conn) readFailed(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		c.refuse(refusedTooBig)
	}
	return err
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
	_ = c.ws.Close()
	if drained != nil {
		<-drained // the socket is closed: a blocked write returns at once
	}
	c.mu.Lock()
	c.state = stateClosed
	c.clearLocked()
	ev := c.closeEventLocked()
	c.mu.Unlock()
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

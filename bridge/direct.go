package bridge

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// Direct writes by the flushers. A message for many connections (a
// broadcast, a group, a user, many fds), and a whole push to one fd, is
// queued on each connection as before, which is cheap (a lock and an
// append, no system call), so the call returns quickly; a connection whose
// writer is not running is not given a writer goroutine but put on its
// worker's flush list (Config.Flushers lists, each serving a share of the
// workers). The list's flusher goroutine takes the list and, for each connection, writes every frame
// queued for it with one non-blocking write system call, from one buffer.
// While a pass writes, the next broadcasts queue up, and the next pass
// writes each connection's share of them with one system call: the
// batches grow by themselves exactly when messages come faster than they
// can be written one by one, and no message waits for a timer. No writer
// goroutine is woken, nothing is allocated per delivery, and no deadline
// is set (a non-blocking write cannot stall).
//
// Every guarantee of the queue stays:
//   - one writer at a time: a connection on a flush list counts as having
//     a writer (writing is set); the flusher writes under the connection's
//     lock and under the socket's (bufConn.mu), which every other write to
//     the socket takes too (gorilla's close frames from the reader);
//   - order: the flusher writes a prefix of the queue, in order; whatever
//     it cannot write as a plain frame (a fragment of a message, a ping, a
//     close frame, a compressed frame) and everything after it goes to a
//     writer goroutine;
//   - fragments: an open fragmented message holds broadcasts (held) and is
//     written by a writer goroutine;
//   - slow clients: a write that does not fit the socket's buffer (EAGAIN)
//     leaves the queue to a writer goroutine, under the write deadline; a
//     write that fits in part leaves the rest owed on the socket
//     (bufConn.owed), charged to the budget as an item (itemOwed) at the
//     head of the queue, written first by that writer;
//   - bounded queues: the queue's bounds and the budget apply as before.
//
// It applies to plain TCP sockets without compression (a connection that
// negotiated permessage-deflate gets compressed frames from its writer,
// and TLS sockets have no descriptor to write to).

// directMaxFrame bounds the frames written directly: a larger message goes
// through the queue, where its writer may cut it into fragments.
const directMaxFrame = 64 << 10

// serverFrame encodes one unmasked, final frame of op with data, as a
// server sends it.
func serverFrame(op Opcode, data []byte) []byte {
	n := len(data)
	var f []byte
	switch {
	case n <= 125:
		f = make([]byte, 2, 2+n)
		f[1] = byte(n)
	case n <= 0xffff:
		f = make([]byte, 4, 4+n)
		f[1] = 126
		binary.BigEndian.PutUint16(f[2:], uint16(n))
	default:
		f = make([]byte, 10, 10+n)
		f[1] = 127
		binary.BigEndian.PutUint64(f[2:], uint64(n))
	}
	f[0] = 0x80 | byte(op)
	return append(f, data...)
}

// initRaw keeps the socket's descriptor when it is a plain one (not TLS).
func (b *bufConn) initRaw(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		b.raw = rc
	}
}

// errNoDirect: the socket cannot be written directly now.
var errNoDirect = errors.New("bridge: no direct write")

// writeDirect writes frame (one or more frames) with one non-blocking system call and returns
// how many bytes went out; 0 with a nil error when the socket's buffer is
// full. When only part went out, the rest is owed: written before anything
// else on the socket, by the writer the caller starts, whose deadline is
// set here.
func (b *bufConn) writeDirect(w *rawWriter, frame []byte, timeout time.Duration) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.raw == nil || b.buf != nil || b.owed != nil {
		return 0, errNoDirect
	}
	w.buf = frame
	err := b.raw.Control(w.call)
	n, werr := w.n, w.err
	w.buf, w.err = nil, nil
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		if werr == syscall.EAGAIN {
			return 0, nil
		}
		return 0, werr
	}
	b.noteClose(frame) // the frames are committed to the socket
	if n < len(frame) {
		b.owed = append([]byte(nil), frame[n:]...) // frame is the caller's buffer
		_ = b.setDeadlineLocked(time.Now().Add(timeout))
	}
	return n, nil
}

// rawWriter is a flusher's write callback for RawConn.Control, made once
// with its arguments and results beside it, so that a write allocates
// nothing (a closure made per write escapes to the heap).
type rawWriter struct {
	buf  []byte
	n    int
	err  error
	call func(fd uintptr)
}

func newRawWriter() *rawWriter {
	w := &rawWriter{}
	w.call = func(fd uintptr) {
		for {
			w.n, w.err = syscall.Write(int(fd), w.buf)
			if w.err != syscall.EINTR {
				return
			}
		}
	}
	return w
}

// payOwedLocked writes the rest of a frame written in part (under b.mu).
func (b *bufConn) payOwedLocked() error {
	if b.owed == nil {
		return nil
	}
	_, err := b.Conn.Write(b.owed)
	b.owed = nil
	return err
}

// chargeForced counts it against the budget whatever the total: for the
// rest of a frame already begun on a socket.
func (h *Hub) chargeForced(it *item) {
	if it.ref != nil && it.ref.refs.Add(1) > 1 {
		return
	}
	h.budget.queued.Add(int64(it.size))
}

// flushList is a worker's list of connections for its flusher.
type flushList struct {
	mu    sync.Mutex
	conns []*conn
	wake  chan struct{} // one token: the list is not empty
	stop  chan struct{} // closed once no connection is left (Shutdown)
	once  sync.Once     // closes stop
	done  chan struct{} // closed when the flusher has returned
}

func newFlushList() *flushList {
	return &flushList{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// flushableLocked reports whether c's flusher can write the head of its
// queue (under c.mu, c.writing just set).
func (c *conn) flushableLocked() bool {
	return c.direct && c.plain(&c.q[c.head])
}

// plain reports whether it goes out as one plain frame that the flusher
// can encode itself: a fan-out message with its frame, or a whole text or
// binary push within the fragment size (not a fragment of a message, which
// its writer goroutine cuts and follows).
func (c *conn) plain(it *item) bool {
	switch it.kind {
	case itemPrepared:
		return it.ref != nil && it.ref.frame != nil
	case itemData:
		frag := c.hub.cfg.FragmentSize
		return it.finish && !it.cont && c.msgw == nil && (it.op == OpText || it.op == OpBinary) &&
			len(it.data)+10 <= directMaxFrame && (frag == 0 || len(it.data) <= frag)
	}
	return false
}

// appendFrame appends the plain frame of it (c.plain(it)) to buf.
func appendFrame(buf []byte, it *item) []byte {
	if it.kind == itemPrepared {
		return append(buf, it.ref.frame...)
	}
	n := len(it.data)
	switch {
	case n <= 125:
		buf = append(buf, 0x80|byte(it.op), byte(n))
	case n <= 0xffff:
		buf = append(buf, 0x80|byte(it.op), 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0x80|byte(it.op), 127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return append(buf, it.data...)
}

// scheduleFlush puts c on its worker's flush list.
func (w *worker) scheduleFlush(c *conn) {
	f := w.flush
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run writes out the connections put on the list, a pass over the whole
// list at a time, until stop is closed.
func (f *flushList) run() {
	defer close(f.done)
	var conns []*conn
	buf := make([]byte, 0, maxCoalesce)
	w := newRawWriter()
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			return
		}
		f.mu.Lock()
		conns, f.conns = f.conns, conns[:0]
		f.mu.Unlock()
		for i, c := range conns {
			buf = c.flushDirect(w, buf)
			conns[i] = nil
		}
		if cap(conns) > 4096 {
			conns = nil // after a burst, keep no list of its size
		}
	}
}

// stopFlushers ends the flushers once no connection is left.
func (h *Hub) stopFlushers() {
	for _, f := range h.flushers {
		f.once.Do(func() { close(f.stop) })
		<-f.done
	}
}

// startFlushers starts Config.Flushers flushers and gives each worker one,
// round-robin.
func (h *Hub) startFlushers() {
	h.flushers = make([]*flushList, h.cfg.Flushers)
	for i := range h.flushers {
		h.flushers[i] = newFlushList()
		go h.flushers[i].run()
	}
	for i, w := range h.workers {
		w.flush = h.flushers[i%len(h.flushers)]
	}
}

// flushDirect writes the plain frames at the head of c's queue with one
// non-blocking system call (the flusher, for a connection whose writing it
// holds), and passes what is left to a writer goroutine or to the next
// pass. buf is the flusher's, returned for reuse.
func (c *conn) flushDirect(w *rawWriter, buf []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.q) || c.state == stateClosed {
		c.clearLocked()
		c.noteWriteLocked()
		c.writerExitLocked()
		return buf
	}
	buf = buf[:0]
	k, size := 0, 0
	for i := c.head; i < len(c.q); i++ {
		it := &c.q[i]
		if !c.plain(it) || (k > 0 && len(buf)+it.size+10 > maxCoalesce) {
			break
		}
		buf = appendFrame(buf, it)
		k++
		size += it.size
	}
	if k == 0 {
		c.hub.startWriter(c) // a push, a ping or a close at the head: a writer's work
		return buf
	}
	n, err := c.bc.writeDirect(w, buf, c.hub.cfg.WriteTimeout)
	if err != nil || n == 0 {
		c.hub.startWriter(c) // a full socket or an error: the writer waits or fails
		return buf
	}
	for range k {
		it := c.q[c.head]
		c.q[c.head] = item{}
		c.head++
		c.queuedBytes -= it.size
		c.tr.frameOut(&it, nil)
		c.written(&it)
	}
	c.worker.bytesOut.Add(uint64(size))
	c.worker.direct.Add(uint64(k))
	c.noteWriteLocked()
	if n < len(buf) {
		// The rest is owed (bufConn.owed, copied from buf): charged as an
		// item at the head of the queue until its writer has written it.
		c.worker.directPartial.Add(1)
		owed := item{kind: itemOwed, size: len(buf) - n}
		c.hub.chargeForced(&owed)
		c.size.Add(int64(owed.size))
		c.own.Add(int64(owed.size))
		c.head--
		c.q[c.head] = owed
		c.queuedBytes += owed.size
		c.hub.startWriter(c)
		return buf
	}
	if c.head < len(c.q) {
		c.worker.scheduleFlush(c) // more came meanwhile: the next pass
		return buf
	}
	if cap(c.q) > 4 {
		c.q = nil // an idle connection keeps no burst-sized array
	} else {
		c.q = c.q[:0]
	}
	c.head = 0
	c.writerExitLocked()
	return buf
}

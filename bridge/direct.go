package bridge

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Direct writes: a message for many connections (a broadcast, a group, a
// user, many fds) is written by the goroutine that delivers it, straight to
// each connection whose queue is empty and which has no writer, with one
// non-blocking write system call, instead of being queued for a writer
// goroutine woken for it. At broadcast scale that is the write floor: one
// system call per delivery, no goroutine switch, no allocation, no deadline
// (a non-blocking write cannot stall).
//
// Every guarantee of the queue stays:
//   - one writer at a time: the direct write happens under the
//     connection's lock, only while no writer goroutine runs, and under the
//     socket's lock (bufConn.mu), which every other write to the socket
//     (gorilla's close frames from the reader) takes too;
//   - order: only a connection with nothing queued and nothing being
//     written is written to directly; anything pushed meanwhile waits for
//     the lock and is queued after;
//   - fragments: an open fragmented message holds broadcasts (held), and
//     the direct path is never taken while one is open;
//   - slow clients: a write that does not fit the socket's buffer (EAGAIN)
//     writes nothing and the message is queued as before; a write that fits
//     in part leaves the rest of the frame owed on the socket (bufConn.owed,
//     a slice of the shared frame, no copy), written first by the writer
//     goroutine started for it, under the write deadline, before anything
//     else; the rest is charged to the budget as a queued item (itemOwed)
//     until it is written.
//
// It applies to plain TCP sockets without compression (a connection that
// negotiated permessage-deflate gets the compressed frame from its writer,
// and TLS sockets have no file descriptor to write to).

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

// initDirect lets the bufConn write directly when its socket is a plain
// one with a file descriptor.
func (b *bufConn) initDirect() bool {
	sc, ok := b.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	b.raw = rc
	return true
}

// errNoDirect: the socket cannot be written directly now.
var errNoDirect = errors.New("bridge: no direct write")

// writeDirect writes frame with one non-blocking system call and returns
// how many bytes went out; 0 with a nil error when the socket's buffer is
// full. When only part went out, the rest is owed: written before anything
// else on the socket, by the writer the caller starts, whose deadline is
// set here.
func (b *bufConn) writeDirect(frame []byte, timeout time.Duration) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.raw == nil || b.buf != nil || b.owed != nil {
		return 0, errNoDirect
	}
	n := 0
	var werr error
	err := b.raw.Control(func(fd uintptr) {
		for {
			n, werr = syscall.Write(int(fd), frame)
			if werr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		if werr == syscall.EAGAIN {
			return 0, nil
		}
		return 0, werr
	}
	b.noteClose(frame) // the whole frame is committed to the socket
	if n < len(frame) {
		b.owed = frame[n:]
		_ = b.setDeadlineLocked(time.Now().Add(timeout))
	}
	return n, nil
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

// writeDirectLocked writes a message for many connections directly when
// nothing is queued and no writer runs (under c.mu). It reports whether the
// message was taken: written whole, or in part with the rest owed and a
// writer started for it. Not taken, it is queued as usual.
func (c *conn) writeDirectLocked(it *item) bool {
	if !c.direct || it.ref == nil || it.ref.frame == nil || c.writing || c.head < len(c.q) || c.state != stateOpen || c.recentlyWrittenLocked() {
		return false
	}
	frame := it.ref.frame
	n, err := c.bc.writeDirect(frame, c.hub.cfg.WriteTimeout)
	if err != nil || n == 0 {
		return false // queued: its writer writes it, or finds the socket's error
	}
	c.worker.bytesOut.Add(uint64(it.size))
	c.worker.direct.Add(1)
	c.noteWriteLocked()
	if n == len(frame) {
		return true
	}
	c.worker.directPartial.Add(1)
	// The rest is owed: charged as an item until the writer has written it
	// (forced: the frame has begun, it must be finished).
	owed := item{kind: itemOwed, ref: it.ref, size: it.size}
	c.hub.chargeForced(&owed)
	c.size.Add(int64(owed.size))
	c.q = append(c.q, owed)
	c.queuedBytes += owed.size
	c.startWriterLocked()
	return true
}

// chargeForced counts it against the budget whatever the total: for the
// rest of a frame already begun on a socket.
func (h *Hub) chargeForced(it *item) {
	if it.ref != nil && it.ref.refs.Add(1) > 1 {
		return
	}
	h.budget.queued.Add(int64(it.size))
}

// parallelMin is the fan-out from which a delivery is shared among the
// cores: below it one goroutine is faster than starting others.
const parallelMin = 1024

// deliverParallel is deliver over the cores: conns is cut into one run per
// core (GOMAXPROCS), each delivered by its own goroutine.
func (h *Hub) deliverParallel(conns []*conn, it item, skip fdSet) int {
	p := runtime.GOMAXPROCS(0)
	if p < 2 || len(conns) < parallelMin {
		return h.deliver(conns, it, skip)
	}
	p = min(p, len(conns)/(parallelMin/2))
	var n atomic.Int64
	var wg sync.WaitGroup
	for i := 1; i < p; i++ {
		part := conns[len(conns)*i/p : len(conns)*(i+1)/p]
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Add(int64(h.deliver(part, it, skip)))
		}()
	}
	n.Add(int64(h.deliver(conns[:len(conns)/p], it, skip)))
	wg.Wait()
	return int(n.Load())
}

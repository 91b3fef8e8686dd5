package bridge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// maxCoalesce bounds the bytes a connection's writer gathers before one
// write to the socket.
const maxCoalesce = 64 << 10

// deadlineSlack: a new write deadline less than this much later than the
// one already on the socket is not applied (each change costs a runtime
// timer update). Writes thus get at least WriteTimeout minus the slack; with
// a WriteTimeout under two seconds the slack is half of it, so that the
// deadline on the socket is never one that has passed.
const deadlineSlack = time.Second

// slackFor returns the deadline slack for a write timeout.
func slackFor(writeTimeout time.Duration) time.Duration {
	return min(deadlineSlack, writeTimeout/2)
}

var coalescePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// bufConn is the socket under a WebSocket connection. While the
// connection's writer runs, the frames gorilla writes (a header and a
// payload each) are gathered and written together: one system call per
// message instead of two, and one for a whole backlog of small messages.
// Otherwise (gorilla's own protocol replies from the reader) writes go
// straight through.
type bufConn struct {
	net.Conn

	mu      sync.Mutex
	buf     *[]byte       // gathered bytes while the writer runs
	applied time.Time     // the write deadline set on the socket
	slack   time.Duration // slackFor(WriteTimeout)

	raw  syscall.RawConn // the socket's descriptor (direct writes, waitReadable); nil when it has none (TLS)
	br   *bufio.Reader   // gorilla's read buffer over this bufConn (hijacker); nil if gorilla has its own
	owed []byte          // the rest of a frame written in part directly: written before anything else

	out outFrames // what frames were written (noteClose)
	in  inFrames  // the reader goroutine's: what frames were read (Read)
}

// Write gathers p while the writer runs, writing out first when the batch
// would grow past maxCoalesce; a large p goes out without a copy. A close
// frame goes out at once with what was gathered before it: gorilla writes
// its own (1002, 1009) from the reader, and the connection may end before
// the writer flushes again.
func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	closing := b.noteClose(p)
	if b.buf == nil {
		if err := b.payOwedLocked(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	if closing {
		*b.buf = append(*b.buf, p...)
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(*b.buf)+len(p) > maxCoalesce {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxCoalesce/2 {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// SetWriteDeadline applies t unless it only extends the socket's deadline
// by less than the slack.
func (b *bufConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setDeadlineLocked(t)
}

func (b *bufConn) setDeadlineLocked(t time.Time) error {
	if !t.IsZero() && !b.applied.IsZero() && !t.Before(b.applied) && t.Sub(b.applied) < b.slack {
		return nil
	}
	b.applied = t
	return b.Conn.SetWriteDeadline(t)
}

// Close closes the socket at once. Under wss:// it skips TLS's
// close_notify alert: tls.Conn.Close writes it with a 5 s deadline of its
// own, so closing a client that stopped reading would wait 5 s (and the
// hub, at its shutdown deadline, closes the remaining connections one
// after the other). The WebSocket close frame already ends the stream.
func (b *bufConn) Close() error {
	if tc, ok := b.Conn.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return b.Conn.Close()
}

// lingerBytes bounds what linger reads and discards.
const lingerBytes = 1 << 20

// linger ends the socket's write side after the close frame (a FIN) and
// reads and discards what the client still sends, until it closes, for at
// most timeout and lingerBytes, so that closing the socket then does not
// reset a connection whose close frame the client has not read yet.
func (b *bufConn) linger(timeout time.Duration) {
	raw := b.Conn
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn() // the TLS stream is over: its bytes are discarded as they are
	}
	cw, ok := raw.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	b.mu.Lock()
	_ = b.flushLocked()
	_ = cw.CloseWrite()
	b.mu.Unlock()
	_ = raw.SetReadDeadline(time.Now().Add(timeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(raw, lingerBytes))
}

// gather starts gathering writes (the writer goroutine starts).
func (b *bufConn) gather() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if b.buf == nil {
		b.buf = coalescePool.Get().(*[]byte)
	}
	b.mu.Unlock()
}

// flush writes out what was gathered.
func (b *bufConn) flush() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// release ends gathering (the writer exits); whatever was not flushed is
// dropped, which happens only after a failed write.
func (b *bufConn) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.owed = nil
	if b.buf == nil {
		return
	}
	*b.buf = (*b.buf)[:0]
	if cap(*b.buf) <= maxCoalesce {
		coalescePool.Put(b.buf)
	}
	b.buf = nil
}

// flushLocked writes what is owed of a frame written in part directly,
// then what was gathered.
func (b *bufConn) flushLocked() error {
	if err := b.payOwedLocked(); err != nil {
		if b.buf != nil {
			*b.buf = (*b.buf)[:0]
		}
		return err
	}
	if b.buf == nil || len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// hijacker hands gorilla's Upgrade a bufConn instead of the raw socket;
// with answer set, the bufConn writes the handshake's answer through an
// answerRewriter (deflate.go), which ServeHTTP removes after the upgrade.
//
// It also hands gorilla the connection's read buffer (readBuf bytes, over
// the bufConn), which gorilla takes as its own since the Upgrader's
// ReadBufferSize is 0: the bridge can then see whether gorilla holds
// unread bytes (bufConn.br.Buffered), so that its reader waits for the
// socket in a shallow frame when it holds none (waitReadable).
type hijacker struct {
	http.ResponseWriter
	slack   time.Duration
	answer  []byte
	readBuf int
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	bc := &bufConn{slack: h.slack}
	bc.initRaw(c)
	if h.answer != nil {
		c = &answerRewriter{Conn: c, answer: h.answer}
	}
	bc.Conn = c
	if brw.Reader.Buffered() == 0 { // else gorilla refuses the early data, as before
		// More than 256 bytes, or gorilla allocates its own 4 KiB.
		bc.br = bufio.NewReaderSize(bc, max(h.readBuf, 257))
		brw = bufio.NewReadWriter(bc.br, brw.Writer)
	}
	return bc, brw, nil
}

package rpc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"

	"github.com/wsbridge/wsbridge/sender"
)

// guard reads a client's frame stream for the server codec and hands it
// only frames the service can answer: a frame with a bad header, over the
// size limit, or with a codec the service does not speak is refused from
// its header alone. Refused frames get a goridge error reply; after a fatal
// one the connection is closed.
//
// Memory follows what a client sends, not what it announces: a frame's
// header is checked before anything is allocated for it; an accepted
// payload is read into a buffer that grows as its bytes arrive (past the
// first chunk), never allocated at the announced size up front; a refused
// payload is discarded through the read buffer, only its method name kept
// (at most maxEchoedMethod bytes, for the error reply).
//
// It also bounds and counts requests in flight (read, not yet answered):
// past maxInFlight it stops reading until a reply is written, so a client
// that sends calls without reading the replies holds at most that many
// calls, goroutines and replies; a shutdown waits for them. It serializes
// writes, since its own error replies and the codec's responses share the
// socket, and gives each write a deadline: a client that does not read its
// replies is disconnected. With an idle timeout, a request must arrive
// whole within it of the previous one.
type guard struct {
	conn     net.Conn
	br       *bufio.Reader
	maxFrame uint32
	lim      limits
	onFatal  func(remote string, err error)

	rdl     time.Time // the idle read deadline (zero: none); reader only
	inFrame bool      // a request has begun arriving; reader only
	fdl     time.Time // when the request under way must have arrived (zero: not armed); reader only

	wmu     sync.Mutex
	wdl     time.Time // the write deadline set on conn; under wmu
	wfailed bool      // a write failed and conn was closed; under wmu

	inflight atomic.Int64
	freed    chan struct{} // a token when inflight falls below maxInFlight
	closing  atomic.Bool
}

// limits are a connection's bounds and the counters of their hits, shared
// by the connections of a Server.
type limits struct {
	maxInFlight  int64
	writeTimeout time.Duration
	idleTimeout  time.Duration // 0: none
	readTimeout  time.Duration // 0: none
	c            *counters
	log          *slog.Logger
}

// counters are a Server's counts of refusals and limits reached.
type counters struct {
	refusedConns  atomic.Uint64
	refusedFrames atomic.Uint64
	inFlightWaits atomic.Uint64
	writeTimeouts atomic.Uint64
	idleTimeouts  atomic.Uint64
	readTimeouts  atomic.Uint64
}

// maxEchoedMethod bounds the method name a refused frame's error reply
// repeats; a longer one is answered with an empty name.
const maxEchoedMethod = 1 << 10

// firstChunk is what an accepted payload larger than the connection's
// buffer first gets; past it the buffer at most doubles as bytes arrive.
const firstChunk = 64 << 10

func newGuard(conn net.Conn, maxFrame uint32, lim limits, onFatal func(string, error)) *guard {
	g := &guard{conn: conn, maxFrame: maxFrame, lim: lim, onFatal: onFatal, freed: make(chan struct{}, 1)}
	g.br = bufio.NewReaderSize(frameReader{g}, 4096)
	return g
}

// frameReader is conn as the guard's bufio.Reader reads it: the first read
// that has to wait for more of a request already begun arms ReadTimeout,
// once per request, so a request that arrives whole in the buffer costs no
// timer update. The wait for a request's first byte has only the idle
// deadline.
type frameReader struct{ g *guard }

func (r frameReader) Read(p []byte) (int, error) {
	g := r.g
	if g.inFrame && g.fdl.IsZero() && g.lim.readTimeout > 0 {
		g.fdl = time.Now().Add(g.lim.readTimeout)
		if g.rdl.IsZero() || g.fdl.Before(g.rdl) {
			_ = g.conn.SetReadDeadline(g.fdl)
		}
	}
	return g.conn.Read(p)
}

// beginFrame waits for the first byte of the next request (up to the idle
// deadline), from when on the request must arrive within ReadTimeout.
func (g *guard) beginFrame() error {
	if _, err := g.br.Peek(1); err != nil {
		return err
	}
	g.inFrame = true
	return nil
}

// endFrame is called once a request has arrived whole: the idle deadline
// is back, if the request's own was armed.
func (g *guard) endFrame() {
	g.inFrame = false
	if !g.fdl.IsZero() {
		g.fdl = time.Time{}
		_ = g.conn.SetReadDeadline(g.rdl)
	}
}

// next reads the next request frame the guard accepts and returns its
// header and its payload (method name, then arguments), read into buf's
// memory when it is large enough. Refused frames are answered on the way.
// An error ends the connection: io.EOF when the client is gone, after a
// fatal frame, or after a timeout.
func (g *guard) next(buf []byte) (header, []byte, error) {
	for {
		g.waitSlot()
		g.setReadDeadline()
		if err := g.beginFrame(); err != nil {
			return header{}, nil, g.readErr(err)
		}
		h, ok, err := g.nextFrame()
		if err != nil {
			return header{}, nil, err
		}
		if !ok {
			g.endFrame()
			continue
		}
		if _, err := g.br.Discard(rpcHeader); err != nil {
			g.answered() // the client is gone: nothing to answer
			return header{}, nil, g.readErr(err)
		}
		buf, err = readPayload(g.br, buf, int(h.payloadLen))
		if err != nil {
			g.answered()
			return header{}, nil, g.readErr(err)
		}
		g.endFrame()
		return h, buf, nil
	}
}

// readPayload reads n bytes from r into buf's memory when it holds them,
// else into a buffer that grows as the bytes arrive: firstChunk, then at
// most doubling, never past n. A client that announces a large payload
// and sends less holds about twice what it sent, not what it announced.
func readPayload(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n || n <= firstChunk {
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	if cap(buf) < firstChunk {
		buf = make([]byte, 0, firstChunk)
	}
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), n-len(buf)))
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// waitSlot returns once fewer than maxInFlight requests are in flight.
// Only the reader adds to inflight, so the count stays below the limit
// until the reader counts the next request.
func (g *guard) waitSlot() {
	if g.inflight.Load() < g.lim.maxInFlight {
		return
	}
	g.lim.c.inFlightWaits.Add(1)
	for g.inflight.Load() >= g.lim.maxInFlight {
		<-g.freed // every call in flight writes its reply, or fails to and frees its slot
	}
}

// answered counts a request in flight as answered.
func (g *guard) answered() {
	if g.inflight.Add(-1) == g.lim.maxInFlight-1 {
		select {
		case g.freed <- struct{}{}:
		default:
		}
	}
}

// deadlineStep is how far a deadline must move before it is set again
// (each change costs a timer update): a second, or half of a timeout
// under two seconds. A wait therefore gets at least the timeout minus the
// step.
func deadlineStep(timeout time.Duration) time.Duration {
	return min(time.Second, timeout/2)
}

// setReadDeadline gives the next request idleTimeout to arrive whole.
func (g *guard) setReadDeadline() {
	if g.lim.idleTimeout <= 0 {
		return
	}
	now := time.Now()
	if g.rdl.Sub(now) < g.lim.idleTimeout-deadlineStep(g.lim.idleTimeout) {
		g.rdl = now.Add(g.lim.idleTimeout)
		_ = g.conn.SetReadDeadline(g.rdl)
	}
}

// readErr turns a read error into the codec's: io.EOF when the connection
// ends quietly (the client is gone, or idle or stalled in a request past
// the timeouts, counted).
func (g *guard) readErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if !g.fdl.IsZero() && (g.rdl.IsZero() || g.fdl.Before(g.rdl)) {
			g.lim.c.readTimeouts.Add(1)
			g.lim.log.Debug("rpc: closing a connection stalled in a request", "remote", g.conn.RemoteAddr().String(), "read_timeout", g.lim.readTimeout.String())
			return io.EOF
		}
		g.lim.c.idleTimeouts.Add(1)
		g.lim.log.Debug("rpc: closing an idle connection", "remote", g.conn.RemoteAddr().String(), "idle_timeout", g.lim.idleTimeout.String())
		return io.EOF
	}
	return eof(err)
}

// nextFrame examines the next frame's header, which it leaves unread. It
// returns ok once a frame is accepted, skips refused frames after answering
// them, and returns io.EOF when the connection must end.
func (g *guard) nextFrame() (h header, ok bool, err error) {
	b, err := g.br.Peek(headerSize)
	if err != nil {
		return h, false, g.readErr(err)
	}
	if _, err := parseHeader(b); err != nil {
		return h, false, g.fatal(0, err)
	}
	if b, err = g.br.Peek(rpcHeader); err != nil {
		return h, false, g.readErr(err)
	}
	h, _ = parseHeader(b)
	codec := h.flags & servedCodecs
	if codec == 0 {
		codec = frame.CodecJSON
	}
	if h.payloadLen > g.maxFrame {
		return h, false, g.fatal(h.seq, fmt.Errorf("frame payload of %d bytes is over the limit of %d bytes", h.payloadLen, g.maxFrame))
	}
	refusal := h.check(b[10])
	if refusal == nil {
		// Counted before closing is read, the reverse of Shutdown's order
		// (set closing, then wait for no request in flight): either
		// Shutdown waits for this request or the request sees closing.
		g.inflight.Add(1)
		if !g.closing.Load() {
			return h, true, nil
		}
		g.answered()
		refusal = &sender.Error{Code: sender.CodeShuttingDown, Message: "the bridge is shutting down"}
	} else {
		g.lim.c.refusedFrames.Add(1)
	}
	// Skip the refused frame and answer it; the stream stays in step. Only
	// the method name is kept, for the reply.
	if _, err := g.br.Discard(rpcHeader); err != nil {
		return h, false, g.readErr(err)
	}
	var method []byte
	rest := int(h.payloadLen)
	if h.methodLen <= h.payloadLen && h.methodLen <= maxEchoedMethod {
		method = make([]byte, h.methodLen)
		if _, err := io.ReadFull(g.br, method); err != nil {
			return h, false, g.readErr(err)
		}
		rest -= len(method)
	}
	if _, err := g.br.Discard(rest); err != nil {
		return h, false, g.readErr(err)
	}
	msg := refusal.Error()
	var e *sender.Error
	if !errors.As(refusal, &e) {
		msg = sender.CodeBadRequest + ": " + msg
	}
	if err := g.writeFrame(errorFrame(codec, h.seq, string(method), msg)); err != nil {
		return h, false, io.EOF // the connection is closed
	}
	return h, false, nil
}

// fatal answers a frame that cannot be trusted and ends the connection.
func (g *guard) fatal(seq uint32, err error) error {
	g.lim.c.refusedFrames.Add(1)
	g.onFatal(g.conn.RemoteAddr().String(), err)
	if g.writeFrame(errorFrame(frame.CodecJSON, seq, "", sender.CodeBadRequest+": "+err.Error())) == nil {
		g.linger()
	}
	return io.EOF // net/rpc then closes the codec quietly
}

// How long and how much a connection ended by a fatal frame keeps reading.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

// linger lets the client read the error reply. Closing a socket with unread
// input makes the kernel reset the connection, and a reset can discard the
// reply before the client reads it; so the guard ends its side of the
// stream and reads and discards what the client still sends, for a while.
// Calls the client sent before the bad frame may still be running: their
// replies are written first (within the same while).
func (g *guard) linger() {
	deadline := time.Now().Add(lingerTime)
	for g.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	g.wmu.Lock() // never in the middle of a reply
	if cw, ok := g.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	g.wmu.Unlock()
	g.inFrame, g.fdl = false, time.Time{} // the discard below is not a request: ReadTimeout must not replace the deadline
	_ = g.conn.SetReadDeadline(deadline)
	_, _ = io.CopyN(io.Discard, g.br, lingerBytes)
}

func eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

// writeFrame writes b whole within the write timeout. A write that fails
// (past the timeout: the client does not read its replies) leaves the
// stream cut mid-frame, so the connection is closed; its reader then ends.
func (g *guard) writeFrame(b []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.wfailed {
		return net.ErrClosed
	}
	now := time.Now()
	if g.wdl.Sub(now) < g.lim.writeTimeout-deadlineStep(g.lim.writeTimeout) {
		g.wdl = now.Add(g.lim.writeTimeout)
		_ = g.conn.SetWriteDeadline(g.wdl)
	}
	_, err := g.conn.Write(b)
	if err != nil {
		g.wfailed = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			g.lim.c.writeTimeouts.Add(1)
			g.lim.log.Warn("rpc: closing a connection that does not read its replies", "remote", g.conn.RemoteAddr().String(), "write_timeout", g.lim.writeTimeout.String())
		}
		_ = g.conn.Close()
	}
	return err
}

// writeResponse writes the reply to an accepted request.
func (g *guard) writeResponse(p []byte) error {
	err := g.writeFrame(p)
	g.answered()
	return err
}

func (g *guard) Close() error { return g.conn.Close() }

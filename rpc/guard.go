package rpc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// guard reads a client's frame stream for the server codec and hands it
// only frames the service can answer: a frame with a bad header, over the
// size limit, or with a codec the service does not speak is refused before
// its payload is allocated or decoded. Refused frames get a goridge error
// reply; after a fatal one the connection is closed.
//
// It also counts requests in flight (read, not yet answered) so that a
// shutdown can wait for them, and serializes writes, since its own error
// replies and the codec's responses share the socket.
type guard struct {
	conn     net.Conn
	br       *bufio.Reader
	maxFrame uint32
	onFatal  func(remote string, err error)

	wmu      sync.Mutex
	inflight atomic.Int64
	closing  atomic.Bool
}

func newGuard(conn net.Conn, maxFrame uint32, onFatal func(string, error)) *guard {
	return &guard{conn: conn, br: bufio.NewReaderSize(conn, 4096), maxFrame: maxFrame, onFatal: onFatal}
}

// next reads the next request frame the guard accepts and returns its
// header and its payload (method name, then arguments), read into buf's
// memory when it is large enough. Refused frames are answered on the way.
// An error ends the connection: io.EOF when the client is gone or after a
// fatal frame.
func (g *guard) next(buf []byte) (header, []byte, error) {
	for {
		h, ok, err := g.nextFrame()
		if err != nil {
			return header{}, nil, err
		}
		if !ok {
			continue
		}
		if cap(buf) < int(h.payloadLen) {
			buf = make([]byte, h.payloadLen)
		}
		buf = buf[:h.payloadLen]
		if _, err := g.br.Discard(rpcHeader); err != nil {
			g.inflight.Add(-1) // the client is gone: nothing to answer
			return header{}, nil, eof(err)
		}
		if _, err := io.ReadFull(g.br, buf); err != nil {
			g.inflight.Add(-1)
			return header{}, nil, eof(err)
		}
		return h, buf, nil
	}
}

// nextFrame examines the next frame's header, which it leaves unread. It
// returns ok once a frame is accepted, skips refused frames after answering
// them, and returns io.EOF when the connection must end.
func (g *guard) nextFrame() (h header, ok bool, err error) {
	b, err := g.br.Peek(headerSize)
	if err != nil {
		return h, false, eof(err)
	}
	if _, err := parseHeader(b); err != nil {
		return h, false, g.fatal(0, err)
	}
	if b, err = g.br.Peek(rpcHeader); err != nil {
		return h, false, eof(err)
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
		g.inflight.Add(-1)
		refusal = &Error{Code: CodeShuttingDown, Message: "the bridge is shutting down"}
	}
	// Skip the refused frame and answer it; the stream stays in step.
	if _, err := g.br.Discard(rpcHeader); err != nil {
		return h, false, eof(err)
	}
	payload := make([]byte, h.payloadLen)
	if _, err := io.ReadFull(g.br, payload); err != nil {
		return h, false, eof(err)
	}
	method := ""
	if h.methodLen <= h.payloadLen {
		method = string(payload[:h.methodLen])
	}
	msg := refusal.Error()
	var e *Error
	if !errors.As(refusal, &e) {
		msg = CodeBadRequest + ": " + msg
	}
	if err := g.writeFrame(errorFrame(codec, h.seq, method, msg)); err != nil {
		return h, false, eof(err)
	}
	return h, false, nil
}

// fatal answers a frame that cannot be trusted and ends the connection.
func (g *guard) fatal(seq uint32, err error) error {
	g.onFatal(g.conn.RemoteAddr().String(), err)
	if g.writeFrame(errorFrame(frame.CodecJSON, seq, "", CodeBadRequest+": "+err.Error())) == nil {
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
	_ = g.conn.SetReadDeadline(deadline)
	_, _ = io.CopyN(io.Discard, g.br, lingerBytes)
}

func eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

func (g *guard) writeFrame(b []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, err := g.conn.Write(b)
	return err
}

// writeResponse writes the reply to an accepted request.
func (g *guard) writeResponse(p []byte) error {
	err := g.writeFrame(p)
	g.inflight.Add(-1)
	return err
}

func (g *guard) Close() error { return g.conn.Close() }

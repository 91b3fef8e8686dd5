package rpc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// guard sits between a client's socket and goridge's codec. It reads the
// frame stream ahead of the codec and lets through only frames the service
// can answer: a frame with a bad header, over the size limit, or with a
// codec the service does not speak never reaches goridge (whose codec would
// allocate the announced size, or panic on some inputs). Refused frames get
// a goridge error reply; after a fatal one the connection is closed.
//
// It also counts requests in flight (read, not yet answered) so that a
// shutdown can wait for them, and serializes writes, since its own error
// replies and the codec's responses share the socket.
type guard struct {
	conn     net.Conn
	br       *bufio.Reader
	maxFrame uint32
	onFatal  func(remote string, err error)

	remaining int // bytes of the current accepted frame not yet passed on

	wmu      sync.Mutex
	inflight atomic.Int64
	closing  atomic.Bool
}

func newGuard(conn net.Conn, maxFrame uint32, onFatal func(string, error)) *guard {
	return &guard{conn: conn, br: bufio.NewReaderSize(conn, 4096), maxFrame: maxFrame, onFatal: onFatal}
}

// Read passes on the bytes of accepted frames, header included.
func (g *guard) Read(p []byte) (int, error) {
	for g.remaining == 0 {
		if err := g.nextFrame(); err != nil {
			return 0, err
		}
	}
	if len(p) > g.remaining {
		p = p[:g.remaining]
	}
	n, err := g.br.Read(p)
	g.remaining -= n
	return n, err
}

// nextFrame examines the next frame's header. It returns nil once a frame is
// accepted (its bytes are then passed on), skips refused frames after
// answering them, and returns io.EOF when the connection must end.
func (g *guard) nextFrame() error {
	b, err := g.br.Peek(headerSize)
	if err != nil {
		return eof(err)
	}
	h, err := parseHeader(b)
	if err != nil {
		return g.fatal(0, err)
	}
	if b, err = g.br.Peek(rpcHeader); err != nil {
		return eof(err)
	}
	h, _ = parseHeader(b)
	codec := h.flags & servedCodecs
	if codec == 0 {
		codec = frame.CodecJSON
	}
	if h.payloadLen > g.maxFrame {
		return g.fatal(h.seq, fmt.Errorf("frame payload of %d bytes is over the limit of %d bytes", h.payloadLen, g.maxFrame))
	}
	refusal := h.check(b[10])
	if refusal == nil && g.closing.Load() {
		refusal = &Error{Code: CodeShuttingDown, Message: "the bridge is shutting down"}
	}
	if refusal == nil {
		g.inflight.Add(1)
		g.remaining = rpcHeader + int(h.payloadLen)
		return nil
	}
	// Skip the refused frame and answer it; the stream stays in step.
	if _, err := g.br.Discard(rpcHeader); err != nil {
		return eof(err)
	}
	payload := make([]byte, h.payloadLen)
	if _, err := io.ReadFull(g.br, payload); err != nil {
		return eof(err)
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
		return eof(err)
	}
	return nil
}

// fatal answers a frame that cannot be trusted and ends the connection.
func (g *guard) fatal(seq uint32, err error) error {
	g.onFatal(g.conn.RemoteAddr().String(), err)
	_ = g.writeFrame(errorFrame(frame.CodecJSON, seq, "", CodeBadRequest+": "+err.Error()))
	return io.EOF // net/rpc then closes the codec quietly
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

// Write carries one response frame from goridge's codec (it writes each
// frame with a single Write).
func (g *guard) Write(p []byte) (int, error) {
	g.wmu.Lock()
	n, err := g.conn.Write(p)
	g.wmu.Unlock()
	g.inflight.Add(-1)
	return n, err
}

func (g *guard) Close() error { return g.conn.Close() }

package bridge

import (
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sync"
	"syscall"
	"unsafe"

	"github.com/gorilla/websocket"
)

// The read path of a connection: a client's message is read in bounded
// pieces (never more than MaxMessageSize after inflating it), text is
// validated as it arrives, and the client's rate is checked; the loop
// itself is conn.readLoop.

// msgRefusal is why a client's message is not given to the Listener.
type msgRefusal uint8

const (
	refusedNone        msgRefusal = iota
	refusedMessageRate            // over ClientMessageRate
	refusedByteRate               // over ClientByteRate
	refusedTooBig                 // over MaxMessageSize once inflated
	refusedInvalidUTF8            // a text message that is not UTF-8
	refusedBadDeflate             // compressed data that does not inflate
	refusedClosing                // arrived after the connection began closing (discarded; nothing more to close)
	numMsgRefusals
)

// Close codes and reasons of the refusals that close the connection
// (the rate ones only under RatePolicyClose).
var refusalClose = [numMsgRefusals]struct {
	code   int
	reason string
}{
	refusedMessageRate: {websocket.ClosePolicyViolation, "message rate exceeded"},
	refusedByteRate:    {websocket.ClosePolicyViolation, "byte rate exceeded"},
	refusedTooBig:      {websocket.CloseMessageTooBig, "message too big"},
	refusedInvalidUTF8: {CloseInvalidPayload, "invalid UTF-8 in text message"},
	refusedBadDeflate:  {CloseInvalidPayload, "invalid compressed data"},
}

// firstReadSize is the buffer a message is first read into; it doubles up
// to MaxMessageSize as the message proves longer.
const firstReadSize = 512

// readMessage reads the message r returns, of type mt, into a buffer of at
// most MaxMessageSize bytes (the inflated size, whatever the compressed one)
// and at most allowBytes. It validates text as it arrives, so invalid UTF-8
// refuses the message at the first bad byte, before the message is
// complete. A refused message is left unread: gorilla's next NextReader
// discards the rest of it without inflating it. err is a read error: the
// connection is over.
func (c *conn) readMessage(mt int, r io.Reader, allowBytes int64) ([]byte, msgRefusal, error) {
	limit := c.hub.cfg.MaxMessageSize
	text := mt == websocket.TextMessage
	var u utf8Stream
	buf := make([]byte, 0, min(firstReadSize, limit))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				why, err := probeEnd(r)
				if why == refusedNone && err == nil && text && !u.complete() {
					why = refusedInvalidUTF8
				}
				return buf, why, err
			}
			nb := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if text && n > 0 && !u.write(buf[len(buf):len(buf)+n]) {
			return buf, refusedInvalidUTF8, nil
		}
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > allowBytes {
			return buf, refusedByteRate, nil
		}
		switch {
		case err == io.EOF:
			if text && !u.complete() {
				return buf, refusedInvalidUTF8, nil
			}
			return buf, refusedNone, nil
		case isInflateError(err):
			return buf, refusedBadDeflate, nil
		case err != nil:
			return buf, refusedNone, err
		}
	}
}

// waitReadable waits, when gorilla holds no unread bytes, until the socket
// has bytes to read (or is closed, or its read deadline passes) before the
// reader goes into gorilla. An idle connection's reader then waits in a
// shallow frame instead of the depth of gorilla's frame reader, bufio and
// net: the garbage collector halves a stack that uses less than a quarter
// of it, so an idle reader's stack shrinks from 4 KiB to 2 KiB. The
// runtime's readiness is edge-triggered, so it waits only after a peek
// (recv MSG_PEEK, non-blocking) found nothing, as Go's own reads wait only
// after EAGAIN: one more system call each time gorilla's buffer runs dry.
// Over TLS (no descriptor; tls.Conn buffers records of its own) it does
// nothing.
//
// A client's pong (the answer to the keepalive ping) at the head of the
// socket is taken here, not by gorilla: gorilla handles control frames
// inside NextReader and goes on to wait for the next frame there, deep, so
// every keepalive round would grow the idle readers' stacks back to 4 KiB.
// Only a whole, plain pong at a frame boundary is taken (FIN, no reserved
// bit, masked, at most 125 bytes, all of it in the socket); it does what
// gorilla's pong handler does (alive) and is followed like every frame
// (inFrames). Anything else is left to gorilla.
func (c *conn) waitReadable(alive func()) error {
	b := c.bc
	for {
		if b == nil || b.raw == nil || b.br == nil || b.br.Buffered() > 0 || b.in.badRSV1 {
			return nil // gorilla has bytes to read, or the error bufConn.Read keeps for it
		}
		if err := b.raw.Read(peekReadable); err != nil {
			return err
		}
		if !b.takePong() {
			return nil
		}
		alive()
	}
}

// takePong reads a whole plain pong frame from the head of the socket, if
// that is what is there (the reader goroutine, gorilla's buffer empty).
func (b *bufConn) takePong() bool {
	p := pongPool.Get().(*pongPeek)
	defer pongPool.Put(p)
	_, ok := b.takeFrame(p, false)
	return ok
}

// takeFrame reads a whole plain control frame from the head of the socket
// into p.f and returns its size, if that is what is there at a frame
// boundary of what gorilla has read: a pong, or with pingsToo a ping or a
// pong (plainControl). The frame is followed like every frame (inFrames).
// Anything else is left where it is, for gorilla.
func (b *bufConn) takeFrame(p *pongPeek, pingsToo bool) (int, bool) {
	if b.in.skip != 0 || b.in.hn != 0 || b.in.closeSeen {
		return 0, false // not at a frame boundary of what gorilla has read
	}
	p.n, p.size = 0, len(p.f)
	if err := b.raw.Read(p.peek); err != nil || p.n < 6 || !plainControl(p.f[0], p.f[1], pingsToo) {
		return 0, false
	}
	size := 6 + int(p.f[1]&0x7f)
	if p.n < size {
		return 0, false // not all arrived: gorilla waits for the rest
	}
	p.n, p.size = 0, size
	if err := b.raw.Read(p.take); err != nil || p.n != size {
		// Cannot happen (the bytes were there and only this goroutine
		// reads); the stream is lost: gorilla fails on what follows.
		b.in.badRSV1 = true
		return 0, false
	}
	b.in.follow(p.f[:size])
	return size, true
}

// plainControl reports whether a frame whose first two bytes are b0 and b1
// is a whole plain pong (with pingsToo: a ping or a pong): FIN, no reserved
// bit, masked, at most 125 bytes.
func plainControl(b0, b1 byte, pingsToo bool) bool {
	ok := b0 == 0x80|websocket.PongMessage || pingsToo && b0 == 0x80|websocket.PingMessage
	return ok && b1&0x80 != 0 && b1&0x7f <= 125
}

// pongPeek is takePong's buffer and RawConn.Read callbacks, made once per
// pooled value so that a peek allocates nothing.
type pongPeek struct {
	f          [2 + 4 + 125]byte
	n, size    int
	peek, take func(fd uintptr) bool
}

var pongPool = sync.Pool{New: func() any {
	p := &pongPeek{}
	recv := func(fd uintptr, flags uintptr) bool {
		r, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.f[0])), uintptr(p.size), flags, 0, 0)
		if errno == syscall.EINTR {
			return false
		}
		if errno == 0 {
			p.n = int(r)
		}
		return true
	}
	p.peek = func(fd uintptr) bool { return recv(fd, syscall.MSG_PEEK|syscall.MSG_DONTWAIT) }
	p.take = func(fd uintptr) bool { return recv(fd, syscall.MSG_DONTWAIT) }
	return p
}}

// peekReadable is waitReadable's RawConn.Read callback: true when the
// socket has a byte to read, its end, or an error for gorilla to find. A
// function, not a closure or method value, and recvfrom(2) without the
// address syscall.Recvfrom decodes: a peek allocates nothing.
func peekReadable(fd uintptr) bool {
	var one [1]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// probeEnd reads past a message that filled MaxMessageSize: a further byte
// refuses it as too big; the end of the message accepts it.
func probeEnd(r io.Reader) (msgRefusal, error) {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		switch {
		case n > 0:
			return refusedTooBig, nil
		case err == io.EOF:
			return refusedNone, nil
		case isInflateError(err):
			return refusedBadDeflate, nil
		case err != nil:
			return refusedNone, err
		}
	}
}

// isInflateError reports whether err comes from inflating a compressed
// message (permessage-deflate) whose data is not valid DEFLATE. gorilla
// passes these through without failing the connection. The uncompressed
// reader never returns io.ErrUnexpectedEOF itself (a socket that ends
// mid-frame is a *websocket.CloseError with code 1006); the inflater does
// when the data ends inside a block.
func isInflateError(err error) bool {
	var corrupt flate.CorruptInputError
	var internal flate.InternalError
	return errors.As(err, &corrupt) || errors.As(err, &internal) || errors.Is(err, io.ErrUnexpectedEOF)
}

// wireLimit is gorilla's read limit, which counts the bytes of a message's
// frames as they arrive (compressed, when they are). Uncompressed it is the
// message limit itself; with compression it leaves room for DEFLATE's
// overhead on incompressible data (5 bytes per stored block of up to 64 KiB,
// and some), so that a message within MaxMessageSize once inflated is not
// refused for its compressed size. The inflated size is readMessage's to
// check.
func wireLimit(cfg *Config) int64 {
	if !cfg.Compression {
		return cfg.MaxMessageSize
	}
	if cfg.MaxMessageSize > math.MaxInt64/2 {
		return math.MaxInt64
	}
	return cfg.MaxMessageSize + cfg.MaxMessageSize/64 + 1024
}

// outFrames follows the frames gorilla writes to a connection's socket, so
// that the close event can report the close frame actually sent: the
// bridge's own, or the one gorilla writes when it fails a connection
// itself (1002 on a protocol error, 1009 over the read limit), which
// gorilla reports only as an error without a code.
//
// It relies on how gorilla v1.5.3 writes (conn.go): the first write on the
// socket is the whole handshake response (Upgrader.Upgrade); after it, every
// write starts with a complete frame header (WriteControl and prepared
// messages write whole frames; messageWriter.flushFrame writes the header
// with the start of the payload, then possibly the rest of the payload as a
// second write). Counting the payload bytes of each frame therefore finds
// every frame header, even when a payload looks like a frame.
type outFrames struct {
	remaining   int64 // payload bytes of the current frame not yet written
	closeReason string
	closeCode   uint16 // of the first close frame written; 0 for none yet
	upgraded    bool   // the handshake response was written
	lost        bool   // a write did not start as expected: stop following
}

// noteClose follows one write of p (under b.mu) and reports whether p
// holds the first close frame written.
func (b *bufConn) noteClose(p []byte) bool {
	o := &b.out
	if !o.upgraded {
		o.upgraded = true
		return false
	}
	for len(p) > 0 && !o.lost && o.closeCode == 0 {
		if o.remaining > 0 {
			k := min(o.remaining, int64(len(p)))
			p, o.remaining = p[k:], o.remaining-k
			continue
		}
		if len(p) < 2 {
			o.lost = true
			return false
		}
		h, n := 2, int64(p[1]&0x7f)
		switch n {
		case 126:
			h = 4
		case 127:
			h = 10
		}
		if len(p) < h {
			o.lost = true
			return false
		}
		switch n {
		case 126:
			n = int64(binary.BigEndian.Uint16(p[2:4]))
		case 127:
			n = int64(binary.BigEndian.Uint64(p[2:10]) & math.MaxInt64)
		}
		if p[0]&0x0f == websocket.CloseMessage {
			payload := p[h:min(len(p), h+int(min(n, 125)))]
			o.closeCode = websocket.CloseNoStatusReceived
			if len(payload) >= 2 {
				o.closeCode = binary.BigEndian.Uint16(payload)
				o.closeReason = string(payload[2:])
			}
			return true
		}
		p, o.remaining = p[h:], n
	}
	return false
}

// sentClose returns the first close frame written on the socket.
func (b *bufConn) sentClose() (code int, reason string, ok bool) {
	if b == nil {
		return 0, "", false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.out.closeCode), b.out.closeReason, b.out.closeCode != 0
}

// RefusedCounts counts the messages from clients that were not given to
// the Listener, by reason. Each refusal but a rate one under
// RatePolicyDrop also closed its connection (the close code in brackets).
type RefusedCounts struct {
	MessageRate uint64 `json:"message_rate"` // over ClientMessageRate (1008 or dropped)
	ByteRate    uint64 `json:"byte_rate"`    // over ClientByteRate (1008 or dropped)
	TooBig      uint64 `json:"too_big"`      // over MaxMessageSize, inflated or on the wire (1009)
	InvalidUTF8 uint64 `json:"invalid_utf8"` // text that is not UTF-8, found as it arrived (1007)
	BadDeflate  uint64 `json:"bad_deflate"`  // compressed data that does not inflate (1007)
	// Closing counts the messages that arrived after the connection began
	// closing (a close sent or received): RFC 6455 has them discarded, and
	// the application has or will have the close event.
	Closing uint64 `json:"closing"`
}

func (w *worker) refusedCounts() RefusedCounts {
	return RefusedCounts{
		MessageRate: w.refused[refusedMessageRate].Load(),
		ByteRate:    w.refused[refusedByteRate].Load(),
		TooBig:      w.refused[refusedTooBig].Load(),
		InvalidUTF8: w.refused[refusedInvalidUTF8].Load(),
		BadDeflate:  w.refused[refusedBadDeflate].Load(),
		Closing:     w.refused[refusedClosing].Load(),
	}
}

// RefusedTotal sums the workers' refusal counts.
func (s Stats) RefusedTotal() RefusedCounts {
	var r RefusedCounts
	for _, w := range s.Workers {
		r.MessageRate += w.Refused.MessageRate
		r.ByteRate += w.Refused.ByteRate
		r.TooBig += w.Refused.TooBig
		r.InvalidUTF8 += w.Refused.InvalidUTF8
		r.BadDeflate += w.Refused.BadDeflate
		r.Closing += w.Refused.Closing
	}
	return r
}

// inFrames follows the headers of the frames the client sends, as gorilla
// reads them through the bufConn, for what gorilla does not check or tell:
//   - the payload length of the client's first close frame. A close frame
//     with a 1-byte payload is invalid (RFC 6455 section 5.5.1: a body
//     starts with a 2-byte code), but gorilla hands it to the close handler
//     as 1005, like an empty one;
//   - RSV1 on a control frame or a continuation frame, which RFC 7692
//     section 6 forbids; with compression negotiated gorilla (v1.5.3)
//     accepts it. Read stops before such a frame and then fails with
//     errReservedBit, so gorilla never reads it.
//
// Every byte after the handshake goes through Read (gorilla's
// reader is a bufio.Reader over the bufConn, since ReadBufferSize is at
// least 256; an upgrade request followed by early data is refused by
// gorilla). The reader goroutine alone calls Read and the close handler.
type inFrames struct {
	skip      int64    // masking key and payload bytes of the current frame still to come
	hdr       [10]byte // the header being read, without its masking key
	hn        uint8    // header bytes read
	closeSeen bool     // the first close frame's header was read
	closeLen1 bool     // and its payload was 1 byte
	badRSV1   bool     // a control or continuation frame had RSV1 set: Read fails from there
}

// errReservedBit fails the read of a frame with a reserved bit set where
// RFC 7692 forbids it (the connection is closed with 1002).
var errReservedBit = errors.New("RSV1 set on a control or continuation frame")

// Read reads from the socket and follows the frame headers in what it read.
// It returns the bytes before a frame with a forbidden RSV1, then
// errReservedBit.
func (b *bufConn) Read(p []byte) (int, error) {
	if b.in.badRSV1 {
		return 0, errReservedBit
	}
	n, err := b.Conn.Read(p)
	if k := b.in.follow(p[:n]); k < n {
		if k == 0 {
			return 0, errReservedBit
		}
		return k, nil
	}
	return n, err
}

// follow reads the frame headers in p and returns how many bytes of p
// gorilla may read: len(p), or fewer when a frame with a forbidden RSV1
// starts in p.
func (f *inFrames) follow(p []byte) int {
	n0 := len(p)
	for len(p) > 0 && !f.closeSeen {
		if f.skip > 0 {
			k := min(f.skip, int64(len(p)))
			p, f.skip = p[k:], f.skip-k
			continue
		}
		if f.hn == 0 {
			// RSV1 (0x40) on opcode 0 (continuation) or 8 and up (control).
			if op := p[0] & 0x0f; p[0]&0x40 != 0 && (op == 0 || op >= websocket.CloseMessage) {
				f.badRSV1 = true
				return n0 - len(p)
			}
		}
		f.hdr[f.hn] = p[0]
		f.hn++
		p = p[1:]
		if f.hn < 2 {
			continue
		}
		need := uint8(2)
		switch f.hdr[1] & 0x7f {
		case 126:
			need = 4
		case 127:
			need = 10
		}
		if f.hn < need {
			continue
		}
		n := int64(f.hdr[1] & 0x7f)
		switch n {
		case 126:
			n = int64(binary.BigEndian.Uint16(f.hdr[2:4]))
		case 127:
			n = int64(binary.BigEndian.Uint64(f.hdr[2:10]) & (math.MaxInt64 >> 1))
		}
		if f.hdr[0]&0x0f == websocket.CloseMessage {
			f.closeSeen, f.closeLen1 = true, n == 1
		}
		if f.hdr[1]&0x80 != 0 {
			n += 4 // the masking key
		}
		f.hn, f.skip = 0, n
	}
	return n0
}

// closeWithOneByte reports whether the client's first close frame had a
// 1-byte payload (the reader goroutine only).
func (b *bufConn) closeWithOneByte() bool { return b != nil && b.in.closeLen1 }

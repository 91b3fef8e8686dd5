package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"unicode/utf8"
)

// The messages nodes send each other on their node channels: a frame
// holds a batch of requests (to the node that owns an fd, or to the nodes
// subscribed to a group, user or broadcast channel) or a batch of replies
// (to the node that asked). Binary, little work to decode, every count
// and size bounded:
//
//	frame   = version:1 (WireVersion) kind:1 (1 requests, 2 replies) from:uvarint (node id) count:uvarint item*
//	request = id:uvarint op:1 flags:1 (bit 0 ack, bit 1 finish) body
//	  push        fd:uvarint opcode:1 data:bytes
//	  disconnect  fd:uvarint code:uvarint reason:string
//	  check, info fd:uvarint
//	  group, user name:string opcode:1 data:bytes except:fds
//	  broadcast   opcode:1 data:bytes except:fds
//	reply   = id:uvarint flags:1 (bit 0 ok) count:uvarint code:string body:bytes
//	bytes   = len:uvarint byte*      string = bytes, UTF-8      fds = n:uvarint fd:uvarint*
//
// A reply's code is an error code ("" when none), its body the answer of
// an info request (JSON). A decoded frame's Data and Body point into the
// decoded buffer; its Except lists are its own.
const (
	// WireVersion is the frame format's version; a node drops frames of
	// another version (counted as malformed).
	WireVersion = 1
	// MaxFrameBytes bounds a frame.
	MaxFrameBytes = 64 << 20
	// MaxBatch bounds the items of a frame.
	MaxBatch = 4096
	// MaxNameBytes bounds a group name or user id.
	MaxNameBytes = 1024
	// MaxReasonBytes bounds a close reason (what a close frame holds).
	MaxReasonBytes = 123
	// MaxCodeBytes bounds a reply's error code.
	MaxCodeBytes = 64
	// MaxExcept bounds an except list.
	MaxExcept = 1 << 16
)

const (
	kindRequests = 1
	kindReplies  = 2
	flagAck      = 1
	flagFinish   = 2
	flagOK       = 1
)

// Op is a request's kind.
type Op uint8

// The requests.
const (
	OpPush Op = 1 + iota
	OpDisconnect
	OpCheck
	OpInfo
	OpGroup
	OpUser
	OpBroadcast
	numOps
)

// Request is one request between nodes. The fields an Op does not use
// are zero.
type Request struct {
	ID     uint64
	Op     Op
	Ack    bool    // the sender waits for a reply
	FD     int64   // push, disconnect, check, info
	Opcode uint8   // push, group, user, broadcast
	Finish bool    // push
	Data   []byte  // push, group, user, broadcast
	Code   int     // disconnect: the close code
	Reason string  // disconnect
	Name   string  // group, user
	Except []int64 // group, user, broadcast
}

// Reply answers the request with the same ID.
type Reply struct {
	ID    uint64
	OK    bool   // push, disconnect, check: the owner's answer
	Count int64  // group, user, broadcast: deliveries
	Code  string // an error code, "" when none
	Body  []byte // info: the connection's info
}

// Frame is a batch of requests or of replies from one node.
type Frame struct {
	From     int
	Requests []Request // a request frame
	Replies  []Reply   // a reply frame
}

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("cluster: malformed node message")

// AppendFrame appends f's encoding to dst. It refuses what the decoder
// would refuse.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	if (len(f.Requests) == 0) == (len(f.Replies) == 0) {
		return dst, errors.New("cluster: a frame holds requests or replies")
	}
	if f.From < 0 || f.From > maxNodeID {
		return dst, fmt.Errorf("cluster: frame from node %d", f.From)
	}
	start := len(dst)
	dst = append(dst, WireVersion)
	if len(f.Requests) > 0 {
		if len(f.Requests) > MaxBatch {
			return dst[:start], fmt.Errorf("cluster: %d requests in one frame, at most %d", len(f.Requests), MaxBatch)
		}
		dst = append(dst, kindRequests)
		dst = binary.AppendUvarint(dst, uint64(f.From))
		dst = binary.AppendUvarint(dst, uint64(len(f.Requests)))
		for i := range f.Requests {
			var err error
			if dst, err = appendRequest(dst, &f.Requests[i]); err != nil {
				return dst[:start], err
			}
		}
	} else {
		if len(f.Replies) > MaxBatch {
			return dst[:start], fmt.Errorf("cluster: %d replies in one frame, at most %d", len(f.Replies), MaxBatch)
		}
		dst = append(dst, kindReplies)
		dst = binary.AppendUvarint(dst, uint64(f.From))
		dst = binary.AppendUvarint(dst, uint64(len(f.Replies)))
		for i := range f.Replies {
			r := &f.Replies[i]
			if len(r.Code) > MaxCodeBytes || r.Count < 0 || r.Count > 1<<62 || !utf8.ValidString(r.Code) {
				return dst[:start], fmt.Errorf("cluster: reply %d: code of %d bytes or count %d", r.ID, len(r.Code), r.Count)
			}
			dst = binary.AppendUvarint(dst, r.ID)
			dst = append(dst, boolFlag(r.OK, flagOK))
			dst = binary.AppendUvarint(dst, uint64(r.Count))
			dst = appendBytes(dst, []byte(r.Code))
			dst = appendBytes(dst, r.Body)
		}
	}
	if len(dst)-start > MaxFrameBytes {
		return dst[:start], fmt.Errorf("cluster: frame of %d bytes, at most %d", len(dst)-start, MaxFrameBytes)
	}
	return dst, nil
}

func appendRequest(dst []byte, r *Request) ([]byte, error) {
	if r.Op < OpPush || r.Op >= numOps {
		return dst, fmt.Errorf("cluster: request %d: unknown op %d", r.ID, r.Op)
	}
	if len(r.Name) > MaxNameBytes || len(r.Reason) > MaxReasonBytes || len(r.Except) > MaxExcept || r.Code < 0 || r.Code > 4999 ||
		r.FD < 0 || r.FD > maxFD || !utf8.ValidString(r.Name) || !utf8.ValidString(r.Reason) {
		return dst, fmt.Errorf("cluster: request %d: a field past its bound", r.ID)
	}
	dst = binary.AppendUvarint(dst, r.ID)
	dst = append(dst, byte(r.Op), boolFlag(r.Ack, flagAck)|boolFlag(r.Finish, flagFinish))
	switch r.Op {
	case OpPush:
		dst = binary.AppendUvarint(dst, uint64(r.FD))
		dst = append(dst, r.Opcode)
		dst = appendBytes(dst, r.Data)
	case OpDisconnect:
		dst = binary.AppendUvarint(dst, uint64(r.FD))
		dst = binary.AppendUvarint(dst, uint64(r.Code))
		dst = appendBytes(dst, []byte(r.Reason))
	case OpCheck, OpInfo:
		dst = binary.AppendUvarint(dst, uint64(r.FD))
	case OpGroup, OpUser, OpBroadcast:
		if r.Op != OpBroadcast {
			dst = appendBytes(dst, []byte(r.Name))
		}
		dst = append(dst, r.Opcode)
		dst = appendBytes(dst, r.Data)
		dst = binary.AppendUvarint(dst, uint64(len(r.Except)))
		for _, fd := range r.Except {
			if fd < 0 || fd > maxFD {
				return dst, fmt.Errorf("cluster: request %d: fd %d in except", r.ID, fd)
			}
			dst = binary.AppendUvarint(dst, uint64(fd))
		}
	}
	return dst, nil
}

func boolFlag(b bool, f byte) byte {
	if b {
		return f
	}
	return 0
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// reader decodes with bounds: every read fails once the input is short.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("short")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uvarint(limit uint64, what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint (%s)", what)
		return 0
	}
	r.off += n
	if v > limit {
		r.fail("%s %d past its bound %d", what, v, limit)
		return 0
	}
	return v
}

func (r *reader) bytes(limit int, what string) []byte {
	n := int(r.uvarint(uint64(limit), what+" length"))
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail("%s of %d bytes, %d left", what, n, len(r.b)-r.off)
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) str(limit int, what string) string {
	b := r.bytes(limit, what)
	if r.err == nil && !utf8.Valid(b) {
		r.fail("%s is not UTF-8", what)
	}
	return string(b)
}

// maxFD is bridge.MaxFD.
const maxFD = 1<<53 - 1

// DecodeFrame decodes one frame; every error wraps ErrMalformed.
func DecodeFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) > MaxFrameBytes {
		return f, fmt.Errorf("%w: frame of %d bytes, at most %d", ErrMalformed, len(b), MaxFrameBytes)
	}
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != WireVersion {
		return f, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, WireVersion)
	}
	kind := r.byte()
	f.From = int(r.uvarint(maxNodeID, "node id"))
	n := int(r.uvarint(MaxBatch, "count"))
	if r.err == nil && n == 0 {
		r.fail("empty frame")
	}
	// Each item takes at least 3 bytes: a count past what is left is
	// refused before anything is allocated for it.
	if r.err == nil && n > (len(b)-r.off)/3 {
		r.fail("%d items in %d bytes", n, len(b)-r.off)
	}
	switch {
	case r.err != nil:
	case kind == kindRequests:
		f.Requests = make([]Request, n)
		for i := range f.Requests {
			r.request(&f.Requests[i])
		}
	case kind == kindReplies:
		f.Replies = make([]Reply, n)
		for i := range f.Replies {
			p := &f.Replies[i]
			p.ID = r.uvarint(^uint64(0), "reply id")
			flags := r.byte()
			if flags&^flagOK != 0 {
				r.fail("reply flags %#x", flags)
			}
			p.OK = flags&flagOK != 0
			p.Count = int64(r.uvarint(1<<62, "count"))
			p.Code = r.str(MaxCodeBytes, "code")
			p.Body = r.bytes(MaxFrameBytes, "body")
		}
	default:
		r.fail("kind %d", kind)
	}
	if r.err == nil && r.off != len(b) {
		r.fail("%d bytes after the last item", len(b)-r.off)
	}
	if r.err != nil {
		return Frame{}, r.err
	}
	return f, nil
}

func (r *reader) request(q *Request) {
	q.ID = r.uvarint(^uint64(0), "request id")
	q.Op = Op(r.byte())
	flags := r.byte()
	if r.err != nil {
		return
	}
	if q.Op < OpPush || q.Op >= numOps {
		r.fail("op %d", q.Op)
		return
	}
	if flags&^(flagAck|flagFinish) != 0 {
		r.fail("request flags %#x", flags)
	}
	q.Ack, q.Finish = flags&flagAck != 0, flags&flagFinish != 0
	switch q.Op {
	case OpPush:
		q.FD = int64(r.uvarint(maxFD, "fd"))
		q.Opcode = r.byte()
		q.Data = r.bytes(MaxFrameBytes, "data")
	case OpDisconnect:
		q.FD = int64(r.uvarint(maxFD, "fd"))
		q.Code = int(r.uvarint(4999, "close code"))
		q.Reason = r.str(MaxReasonBytes, "reason")
	case OpCheck, OpInfo:
		q.FD = int64(r.uvarint(maxFD, "fd"))
	case OpGroup, OpUser, OpBroadcast:
		if q.Op != OpBroadcast {
			q.Name = r.str(MaxNameBytes, "name")
		}
		q.Opcode = r.byte()
		q.Data = r.bytes(MaxFrameBytes, "data")
		n := int(r.uvarint(MaxExcept, "except count"))
		if r.err == nil && n > len(r.b)-r.off { // one byte an fd at least
			r.fail("except list of %d in %d bytes", n, len(r.b)-r.off)
		}
		if r.err == nil && n > 0 {
			q.Except = make([]int64, n)
			for i := range q.Except {
				q.Except[i] = int64(r.uvarint(maxFD, "except fd"))
			}
		}
	}
}

// Inbox is a Broker Handler for a node's channel: it decodes each
// message and hands the frame on; a malformed message (from a rogue
// publisher or another version) is counted and dropped, never more.
type Inbox struct {
	// OnFrame receives each well-formed frame. It runs on the broker's
	// goroutine for the channel; Data and Body alias the message, which
	// the Handler contract lets it keep only until it returns.
	OnFrame func(channel string, f Frame)
	// Logger receives a line per malformed message at debug level.
	Logger *slog.Logger

	malformed, frames atomic.Uint64
}

// Handle is the Handler to give the broker.
func (in *Inbox) Handle(channel string, payload []byte) {
	f, err := DecodeFrame(payload)
	if err != nil {
		in.malformed.Add(1)
		if in.Logger != nil {
			in.Logger.Debug("malformed node message dropped", "channel", channel, "bytes", len(payload), "err", err)
		}
		return
	}
	in.frames.Add(1)
	if in.OnFrame != nil {
		in.OnFrame(channel, f)
	}
}

// Malformed returns how many messages were dropped as malformed.
func (in *Inbox) Malformed() uint64 { return in.malformed.Load() }

// Frames returns how many frames were handed on.
func (in *Inbox) Frames() uint64 { return in.frames.Load() }

package rpc

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	netrpc "net/rpc"
	"strconv"
	"sync"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/internal/msgpackcheck"
	"github.com/wsbridge/wsbridge/sender"
)

// serverCodec is net/rpc's ServerCodec for the goridge v3 RPC protocol: the
// frames, codec flags, and sequence and method options of goridge's own
// server codec (pkg/rpc), byte for byte (TestCodecMatchesGoridge). It reads
// the frames its guard has accepted and already parsed, instead of parsing
// them a second time, and writes each reply with one Write.
//
// It encodes replies in its own way, which is why it exists: goridge's codec
// encodes JSON with goccy/go-json, whose encoder needs a large stack, in
// net/rpc's goroutine of the call, which is new for every call and starts
// with a small stack. Copying that stack was 15–17% of the CPU time of a
// push (docs/BENCHMARKS.md). Here the replies most calls have (a bool, a
// count, a list of bools) are written directly, and other JSON replies go
// through encoding/json. Arguments are decoded in ServeCodec's own
// long-lived goroutine, JSON with encoding/json: goccy/go-json v0.10.3
// reads past the end of `{"\` (a panic that killed the process, or a hang),
// and the arguments come from outside.
type serverCodec struct {
	g *guard

	// Read side: used by ServeCodec's goroutine only; net/rpc reads one
	// request (header, then body) at a time.
	buf    []byte // the current request's payload
	codec  byte   // the current request's codec flag
	method string
	args   []byte // the current request's encoded arguments, in buf

	obs     Observer
	methods map[string]bool

	mu    sync.Mutex
	calls map[uint64]pendingCall // read and not yet answered, by sequence
}

type pendingCall struct {
	codec byte
	start time.Time
	n     int // calls in flight with this sequence number (a client may reuse one)
}

// maxKeptBuffer bounds the buffers a connection keeps between calls, so an
// idle connection does not hold on to a large request's memory.
const maxKeptBuffer = 64 << 10

var replyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (s *Server) newCodec(g *guard) *serverCodec {
	return &serverCodec{g: g, obs: s.cfg.Observer, methods: s.methods, calls: map[uint64]pendingCall{}}
}

// ReadRequestHeader takes the next frame the guard accepts. Its errors end
// the connection (net/rpc stops reading after them).
func (c *serverCodec) ReadRequestHeader(r *netrpc.Request) error {
	h, payload, err := c.g.next(c.buf[:0])
	if err != nil {
		return err
	}
	c.buf = payload
	c.codec = h.flags & servedCodecs
	c.method = string(payload[:h.methodLen])
	c.args = payload[h.methodLen:]
	r.Seq = uint64(h.seq)
	r.ServiceMethod = c.method
	c.mu.Lock()
	p, ok := c.calls[r.Seq]
	if !ok {
		p = pendingCall{codec: c.codec, start: time.Now()}
	}
	p.n++
	c.calls[r.Seq] = p
	c.mu.Unlock()
	return nil
}

// ReadRequestBody decodes the arguments into out (nil: discard them, for a
// method that does not exist). An empty body leaves out as it is, as
// goridge's codec does. Arguments that do not decode are a bad_request that
// names the method.
func (c *serverCodec) ReadRequestBody(out any) error {
	args := c.args
	c.args = nil
	if cap(c.buf) > maxKeptBuffer {
		defer func() { c.buf = nil }()
	}
	if out == nil || len(args) == 0 {
		return nil
	}
	var err error
	switch c.codec {
	case frame.CodecMsgpack:
		if err = msgpackcheck.CheckLimit(args, sender.MaxBatch); err == nil {
			err = msgpack.Unmarshal(args, out)
		}
	case frame.CodecGob:
		err = gob.NewDecoder(bytes.NewReader(args)).Decode(out)
	default:
		err = json.Unmarshal(args, out)
	}
	if err != nil {
		return sender.BadRequest(fmt.Sprintf("cannot decode the arguments of %s: %v", c.method, err))
	}
	return nil
}

// WriteResponse tells the Observer of the call, then writes the reply frame:
// the request's codec, sequence and method, and the encoded body, or the
// ERROR flag and the error text. net/rpc calls it from each call's
// goroutine, one at a time per connection.
func (c *serverCodec) WriteResponse(r *netrpc.Response, body any) error {
	c.mu.Lock()
	call, ok := c.calls[r.Seq] // net/rpc answers each request read once
	if call.n--; call.n > 0 {
		c.calls[r.Seq] = call
	} else {
		delete(c.calls, r.Seq)
	}
	c.mu.Unlock()
	if !ok {
		call.codec = frame.CodecJSON
	}

	bp := replyPool.Get().(*[]byte)
	b := append((*bp)[:0], make([]byte, rpcHeader)...)
	b = append(b, r.ServiceMethod...)
	errText := r.Error
	if errText == "" {
		var err error
		if b, err = appendReply(b, call.codec, body); err != nil {
			b = b[:rpcHeader+len(r.ServiceMethod)]
			errText = sender.CodeInternal + ": cannot encode the reply of " + r.ServiceMethod + ": " + err.Error()
		}
	}
	flags := call.codec
	if errText != "" {
		flags |= frame.ERROR
		b = append(b, errText...)
	}
	putHeader(b, flags, uint32(len(b)-rpcHeader), uint32(r.Seq), uint32(len(r.ServiceMethod)))

	if ok && c.obs != nil {
		method := r.ServiceMethod
		if !c.methods[method] {
			method = MethodUnknown
		}
		c.obs.ObserveCall(method, outcomeOf(errText), time.Since(call.start))
	}
	err := c.g.writeResponse(b)
	if cap(b) <= maxKeptBuffer {
		*bp = b
		replyPool.Put(bp)
	}
	return err
}

// appendReply appends body (a pointer to the method's reply) encoded with
// codec.
func appendReply(b []byte, codec byte, body any) ([]byte, error) {
	switch codec {
	case frame.CodecMsgpack:
		data, err := msgpack.Marshal(body)
		return append(b, data...), err
	case frame.CodecGob:
		buf := bytes.NewBuffer(b)
		err := gob.NewEncoder(buf).Encode(body)
		return buf.Bytes(), err
	}
	switch v := body.(type) {
	case *bool:
		return strconv.AppendBool(b, *v), nil
	case *int:
		return strconv.AppendInt(b, int64(*v), 10), nil
	case *[]bool:
		if *v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, ok := range *v {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendBool(b, ok)
		}
		return append(b, ']'), nil
	}
	data, err := json.Marshal(body)
	return append(b, data...), err
}

// Close closes the connection; net/rpc calls it when ServeCodec returns.
func (c *serverCodec) Close() error { return c.g.Close() }

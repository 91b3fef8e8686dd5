package cluster

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/msgpackcheck"
	"github.com/wsbridge/wsbridge/sender"
)

// The messages nodes send each other (docs/SCALING.md, "Messages between
// nodes"). One message is a frame, msgpack-encoded: the calls and the
// answers one node has for another (on that node's channel), or one call
// for every node in a scope (on a group's, a user's or the broadcast
// channel). A call names a Sender method ("Push") and carries its
// arguments as the RPC's msgpack codec encodes them; the receiving node
// runs its own part of it with sender.Service.Serve, the code the RPC and
// HTTP transports call, and answers with the method's reply or error code.

// frameVersion is the version of the frame format; a node drops frames of
// another version (counted).
const frameVersion = 1

// Bounds of a frame a node accepts from its channels (any Redis client may
// publish there): larger or fuller frames are dropped and counted.
const (
	// MaxFrameBytes bounds an encoded frame: a push of the largest message
	// (WSBRIDGE_MAX_PUSH_SIZE, at most 32 MiB by default rules) and room.
	MaxFrameBytes = 64 << 20
	// maxFrameItems bounds the calls plus answers of one frame.
	maxFrameItems = 4096
	// maxFrameItemBytes is what a sender puts in one frame before starting
	// the next (a single larger item travels alone).
	maxFrameItemBytes = 1 << 20
	// maxFrameArray bounds any array or map in a frame (an answer may list
	// a large group's members); a call's arguments are held to
	// sender.MaxBatch before they are decoded.
	maxFrameArray = 1 << 20
)

// frame is one message between nodes.
type frame struct {
	Version int      `msgpack:"v"`
	From    int      `msgpack:"f"` // the sending node's id
	Calls   []call   `msgpack:"c,omitempty"`
	Answers []answer `msgpack:"a,omitempty"`
}

// call is a Sender method to run on the receiving node.
type call struct {
	// ID is the sender's number for the answer; 0: no answer wanted.
	ID     uint64             `msgpack:"i"`
	Method string             `msgpack:"m"`
	Args   msgpack.RawMessage `msgpack:"a"`

	args any // the arguments until the sender encodes them into Args
}

// answer is the reply to a call: its result, or an error code and message.
type answer struct {
	ID      uint64             `msgpack:"i"`
	Result  msgpack.RawMessage `msgpack:"r,omitempty"`
	Code    string             `msgpack:"c,omitempty"`
	Message string             `msgpack:"e,omitempty"`
}

func (c *call) size() int   { return len(c.Method) + len(c.Args) + 16 }
func (a *answer) size() int { return len(a.Result) + len(a.Code) + len(a.Message) + 16 }

// errMalformed wraps every reason a frame is refused.
var errMalformed = errors.New("cluster: malformed node message")

// The codec below reads and writes the frame struct's msgpack form by
// hand, without reflection, and must stay exactly what msgpack.Marshal
// and msgpack.Unmarshal (v5.4.1) make of the struct tags above: nodes of
// either codec talk to each other during a rolling upgrade. The
// reflection codec is kept in message_test.go, and FuzzDecodeFrame and
// FuzzEncodeFrame hold the two against each other.

// encodeFrame sets f.Version and encodes f into a new slice of exactly its
// size, which the caller owns. The bytes are those msgpack.Marshal writes
// for *frame: a map of the fields in the struct's order, empty omitempty
// fields left out, ints in their shortest form, call and answer IDs as
// uint64 (9 bytes), the raw arguments and results as they are (an empty
// one as nil).
//
// The slice is not taken back into a pool after the publish: the broker
// hands it to rueidis without a copy, and a publish that times out
// returns while the command may still wait in rueidis's queue to be
// written.
func encodeFrame(f *frame) ([]byte, error) {
	f.Version = frameVersion
	e := encoderPool.Get().(*frameEncoder)
	e.w.b = make([]byte, 0, frameSize(f))
	e.frame(f)
	b := e.w.b
	e.w.b = nil
	encoderPool.Put(e)
	return b, nil
}

// frameEncoder is a msgpack.Encoder writing into the slice of w; pooled
// without the slice (each frame gets its own), so that the pool holds
// nothing of a frame's size.
type frameEncoder struct {
	enc *msgpack.Encoder
	w   sliceWriter
}

var encoderPool = sync.Pool{New: func() any {
	e := new(frameEncoder)
	e.enc = msgpack.NewEncoder(&e.w)
	return e
}}

// sliceWriter appends to b; it has the WriteByte a msgpack.Encoder wants
// in order not to wrap it in a writer of its own.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *sliceWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// frame writes f. The errors of the Encoder's methods are their writer's,
// and a sliceWriter never fails.
func (e *frameEncoder) frame(f *frame) {
	n := 2
	if len(f.Calls) > 0 {
		n++
	}
	if len(f.Answers) > 0 {
		n++
	}
	enc := e.enc
	_ = enc.EncodeMapLen(n)
	_ = enc.EncodeString("v")
	_ = enc.EncodeInt(int64(f.Version))
	_ = enc.EncodeString("f")
	_ = enc.EncodeInt(int64(f.From))
	if len(f.Calls) > 0 {
		_ = enc.EncodeString("c")
		_ = enc.EncodeArrayLen(len(f.Calls))
		for i := range f.Calls {
			c := &f.Calls[i]
			_ = enc.EncodeMapLen(3)
			_ = enc.EncodeString("i")
			_ = enc.EncodeUint64(c.ID)
			_ = enc.EncodeString("m")
			_ = enc.EncodeString(c.Method)
			_ = enc.EncodeString("a")
			e.raw(c.Args)
		}
	}
	if len(f.Answers) > 0 {
		_ = enc.EncodeString("a")
		_ = enc.EncodeArrayLen(len(f.Answers))
		for i := range f.Answers {
			a := &f.Answers[i]
			_ = enc.EncodeMapLen(answerFields(a))
			_ = enc.EncodeString("i")
			_ = enc.EncodeUint64(a.ID)
			if len(a.Result) > 0 {
				_ = enc.EncodeString("r")
				e.raw(a.Result)
			}
			if a.Code != "" {
				_ = enc.EncodeString("c")
				_ = enc.EncodeString(a.Code)
			}
			if a.Message != "" {
				_ = enc.EncodeString("e")
				_ = enc.EncodeString(a.Message)
			}
		}
	}
}

// raw writes an already encoded value. msgpack.Marshal writes a nil one as
// nil and an empty one as nothing at all, which breaks the frame; both
// are nil here.
func (e *frameEncoder) raw(m msgpack.RawMessage) {
	if len(m) == 0 {
		_ = e.enc.EncodeNil()
		return
	}
	_ = m.EncodeMsgpack(e.enc)
}

func answerFields(a *answer) int {
	n := 1
	if len(a.Result) > 0 {
		n++
	}
	if a.Code != "" {
		n++
	}
	if a.Message != "" {
		n++
	}
	return n
}

// frameSize is the length of f's encoding, so that encodeFrame allocates
// once.
func frameSize(f *frame) int {
	n := 1 + 2 + intSize(int64(f.Version)) + 2 + intSize(int64(f.From))
	if len(f.Calls) > 0 {
		n += 2 + headSize(len(f.Calls))
		for i := range f.Calls {
			c := &f.Calls[i]
			n += 1 + 2 + 9 + 2 + strSize(len(c.Method)) + 2 + rawSize(c.Args)
		}
	}
	if len(f.Answers) > 0 {
		n += 2 + headSize(len(f.Answers))
		for i := range f.Answers {
			a := &f.Answers[i]
			n += 1 + 2 + 9
			if len(a.Result) > 0 {
				n += 2 + len(a.Result)
			}
			if a.Code != "" {
				n += 2 + strSize(len(a.Code))
			}
			if a.Message != "" {
				n += 2 + strSize(len(a.Message))
			}
		}
	}
	return n
}

// intSize is the length of msgpack.Encoder.EncodeInt's encoding of v.
func intSize(v int64) int {
	switch {
	case v >= 0 && v <= math.MaxInt8, v < 0 && v >= -32:
		return 1
	case v >= 0 && v <= math.MaxUint8, v < 0 && v >= math.MinInt8:
		return 2
	case v >= 0 && v <= math.MaxUint16, v < 0 && v >= math.MinInt16:
		return 3
	case v >= 0 && v <= math.MaxUint32, v < 0 && v >= math.MinInt32:
		return 5
	}
	return 9
}

// strSize is the length of a string of n bytes with its header.
func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n < 256:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

// headSize is the length of an array's or map's header of n elements.
func headSize(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func rawSize(m msgpack.RawMessage) int { return max(len(m), 1) }

// decodeFrame reads a frame from a channel and checks its bounds. Its
// errors wrap errMalformed. The Args and Result of the frame's calls and
// answers are slices of b (not copies): b must not change while they are
// in use (the broker hands each message over in a slice of its own).
//
// It accepts what msgpack.Unmarshal into a *frame accepts, with the same
// result: keys in any order, unknown keys skipped (a later copy of a key
// wins, decoded into what the earlier one left, as the reflection decoder
// does), nil for any field, ints of any width, strings as str or bin, and
// a struct as an array of all its fields.
func decodeFrame(b []byte) (*frame, error) {
	if err := checkFrameBytes(b); err != nil {
		return nil, err
	}
	f := new(frame)
	d := frameDecoder{b: b}
	if err := d.frame(f); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return checkFrame(f)
}

// checkFrameBytes bounds a frame before it is decoded: its size, and (the
// walk) its nesting and announced lengths, so that every length the
// decoder reads fits in what remains of b and no array exceeds
// maxFrameArray.
func checkFrameBytes(b []byte) error {
	if len(b) > MaxFrameBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", errMalformed, len(b), MaxFrameBytes)
	}
	if err := msgpackcheck.CheckLimit(b, maxFrameArray); err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	return nil
}

// checkFrame refuses a decoded frame out of bounds.
func checkFrame(f *frame) (*frame, error) {
	switch {
	case f.Version != frameVersion:
		return nil, fmt.Errorf("%w: version %d, want %d", errMalformed, f.Version, frameVersion)
	case f.From < 0 || f.From > bridge.MaxNodeID:
		return nil, fmt.Errorf("%w: from node %d", errMalformed, f.From)
	case len(f.Calls)+len(f.Answers) == 0 || len(f.Calls)+len(f.Answers) > maxFrameItems:
		return nil, fmt.Errorf("%w: %d items, want 1..%d", errMalformed, len(f.Calls)+len(f.Answers), maxFrameItems)
	}
	for i := range f.Calls {
		if f.Calls[i].Method == "" {
			return nil, fmt.Errorf("%w: call %d has no method", errMalformed, i)
		}
	}
	return f, nil
}

// frameDecoder reads b from i on. Each method mirrors what msgpack v5.4.1
// does by reflection for the field's Go type (named in its comment), so
// that both accept and refuse the same input.
type frameDecoder struct {
	b []byte
	i int
}

var (
	errFrameTruncated = errors.New("msgpack: truncated")
	// errArrayStruct is msgpack's for a struct encoded as an array of
	// another number of fields than the struct has.
	errArrayStruct = errors.New("msgpack: number of fields in array-encoded struct has changed")
)

func (d *frameDecoder) code() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errFrameTruncated
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

// next returns the next n bytes.
func (d *frameDecoder) next(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.i {
		return nil, errFrameTruncated
	}
	p := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return p, nil
}

// uintN reads a big-endian unsigned integer of n bytes.
func (d *frameDecoder) uintN(n int) (uint64, error) {
	p, err := d.next(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// int is msgpack's Decoder.int (a field of type int): nil is 0, any
// integer encoding, no float.
func (d *frameDecoder) int() (int64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	switch {
	case c == msgpcode.Nil:
		return 0, nil
	case msgpcode.IsFixedNum(c):
		return int64(int8(c)), nil
	}
	switch c {
	case msgpcode.Uint8, msgpcode.Uint16, msgpcode.Uint32, msgpcode.Uint64:
		v, err := d.uintN(1 << (c - msgpcode.Uint8))
		return int64(v), err
	case msgpcode.Int8:
		v, err := d.uintN(1)
		return int64(int8(v)), err
	case msgpcode.Int16:
		v, err := d.uintN(2)
		return int64(int16(v)), err
	case msgpcode.Int32:
		v, err := d.uintN(4)
		return int64(int32(v)), err
	case msgpcode.Int64:
		v, err := d.uintN(8)
		return int64(v), err
	}
	return 0, fmt.Errorf("msgpack: invalid code=%x decoding int64", c)
}

// uint is msgpack's Decoder.uint (a field of type uint64): int() with
// the value's bits taken as unsigned.
func (d *frameDecoder) uint() (uint64, error) {
	v, err := d.int()
	return uint64(v), err
}

// bytesLen is msgpack's Decoder.bytesLen: a str or bin header, -1 for nil.
func (d *frameDecoder) bytesLen() (int, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c == msgpcode.Nil {
		return -1, nil
	}
	if msgpcode.IsFixedString(c) {
		return int(c & msgpcode.FixedStrMask), nil
	}
	var v uint64
	switch c {
	case msgpcode.Str8, msgpcode.Bin8:
		v, err = d.uintN(1)
	case msgpcode.Str16, msgpcode.Bin16:
		v, err = d.uintN(2)
	case msgpcode.Str32, msgpcode.Bin32:
		v, err = d.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding string/bytes length", c)
	}
	return int(v), err
}

// bytes reads a string's bytes (a slice of b; nil for nil).
func (d *frameDecoder) bytes() ([]byte, error) {
	n, err := d.bytesLen()
	if err != nil || n < 0 {
		return nil, err
	}
	return d.next(n)
}

// string is a field of type string: nil is "", str or bin. Method names
// and error codes come from small sets, copied once here instead of per
// frame.
func (d *frameDecoder) string() (string, error) {
	p, err := d.bytes()
	if err != nil {
		return "", err
	}
	switch string(p) {
	case "":
		return "", nil
	case "Push":
		return "Push", nil
	case "Check":
		return "Check", nil
	case "Info":
		return "Info", nil
	case "Disconnect":
		return "Disconnect", nil
	case sender.CodeInvalidFD:
		return sender.CodeInvalidFD, nil
	}
	return string(p), nil
}

// raw is a field of type msgpack.RawMessage: nil is nil, any other value
// its encoding, as a slice of b.
func (d *frameDecoder) raw() (msgpack.RawMessage, error) {
	if d.i < len(d.b) && d.b[d.i] == msgpcode.Nil {
		d.i++
		return nil, nil
	}
	n, err := msgpackcheck.Len(d.b[d.i:], maxFrameArray)
	if err != nil {
		return nil, err
	}
	return d.next(n)
}

// skip passes over a value of a key no field has.
func (d *frameDecoder) skip() error {
	n, err := msgpackcheck.Len(d.b[d.i:], maxFrameArray)
	if err != nil {
		return err
	}
	d.i += n
	return nil
}

// structHead is msgpack's decodeStructValue up to the fields: a map of
// n fields (n == -1: nil, the struct is zeroed), or an array of all
// fields in order (asArray; n == -1: an empty array or nil, zeroed).
func (d *frameDecoder) structHead(fields int) (n int, asArray bool, err error) {
	c, err := d.code()
	if err != nil {
		return 0, false, err
	}
	var v uint64
	switch {
	case c == msgpcode.Nil:
		return -1, false, nil
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
		return int(c & msgpcode.FixedMapMask), false, nil
	case c == msgpcode.Map16:
		v, err = d.uintN(2)
		return int(v), false, err
	case c == msgpcode.Map32:
		v, err = d.uintN(4)
		return int(v), false, err
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
		v = uint64(c & msgpcode.FixedArrayMask)
	case c == msgpcode.Array16:
		v, err = d.uintN(2)
	case c == msgpcode.Array32:
		v, err = d.uintN(4)
	default:
		return 0, false, fmt.Errorf("msgpack: unexpected code=%x decoding map length", c)
	}
	switch {
	case err != nil:
		return 0, false, err
	case v == 0:
		return -1, true, nil
	case v != uint64(fields):
		return 0, false, errArrayStruct
	}
	return fields, true, nil
}

// field returns the name of the i-th field of a struct in the form
// structHead found: the next map key (msgpack's decodeStringTemp; 0 for
// a key no field has), or, in an array, the i-th of names.
func (d *frameDecoder) field(asArray bool, i int, names string) (byte, error) {
	if asArray {
		return names[i], nil
	}
	p, err := d.bytes()
	if err != nil || len(p) != 1 {
		return 0, err
	}
	return p[0], nil
}

// arrayLen is msgpack's Decoder.arrayLen (-1 for nil).
func (d *frameDecoder) arrayLen() (int, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	var v uint64
	switch {
	case c == msgpcode.Nil:
		return -1, nil
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
		return int(c & msgpcode.FixedArrayMask), nil
	case c == msgpcode.Array16:
		v, err = d.uintN(2)
	case c == msgpcode.Array32:
		v, err = d.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding array length", c)
	}
	if err == nil && v > uint64(len(d.b)-d.i) {
		// CheckLimit refused this already; kept so that no length read
		// here can allocate more than b holds.
		return 0, errFrameTruncated
	}
	return int(v), err
}

// resize is msgpack's decodeSliceValue up to the elements, for a []T
// field and an array of n elements: nil (-1) is nil, an empty array an
// empty slice (not nil) unless the field already holds one, and the
// elements are then decoded into what the field already holds (a key seen
// twice), so the field keeps them when it grows.
func resize[T any](s *[]T, n int) {
	switch {
	case n == -1:
		*s = nil
	case n == 0 && *s == nil:
		*s = []T{}
	case cap(*s) >= n:
		*s = (*s)[:n]
	default:
		grown := make([]T, n)
		copy(grown, (*s)[:cap(*s)])
		*s = grown
	}
}

// fields decodes a struct whose fields are named by the bytes of names
// (their order in the array form), in either form structHead takes: set
// decodes the value of each field present, and skips (d.skip) one no
// field is named by. A nil struct, or an empty array, zeroes it (zero).
func (d *frameDecoder) fields(names string, zero func(), set func(k byte) error) error {
	n, asArray, err := d.structHead(len(names))
	if err != nil || n == -1 {
		zero()
		return err
	}
	for i := 0; i < n; i++ {
		k, err := d.field(asArray, i, names)
		if err == nil {
			err = set(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *frameDecoder) frame(f *frame) error {
	return d.fields("vfca", func() { *f = frame{} }, func(k byte) error {
		var v int64
		var err error
		switch k {
		case 'v':
			v, err = d.int()
			f.Version = int(v)
		case 'f':
			v, err = d.int()
			f.From = int(v)
		case 'c':
			var m int
			if m, err = d.arrayLen(); err == nil {
				resize(&f.Calls, m)
				for j := 0; j < m && err == nil; j++ {
					err = d.call(&f.Calls[j])
				}
			}
		case 'a':
			var m int
			if m, err = d.arrayLen(); err == nil {
				resize(&f.Answers, m)
				for j := 0; j < m && err == nil; j++ {
					err = d.answer(&f.Answers[j])
				}
			}
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *frameDecoder) call(c *call) error {
	return d.fields("ima", func() { *c = call{} }, func(k byte) (err error) {
		switch k {
		case 'i':
			c.ID, err = d.uint()
		case 'm':
			c.Method, err = d.string()
		case 'a':
			c.Args, err = d.raw()
		default:
			err = d.skip()
		}
		return err
	})
}

func (d *frameDecoder) answer(a *answer) error {
	return d.fields("irce", func() { *a = answer{} }, func(k byte) (err error) {
		switch k {
		case 'i':
			a.ID, err = d.uint()
		case 'r':
			a.Result, err = d.raw()
		case 'c':
			a.Code, err = d.string()
		case 'e':
			a.Message, err = d.string()
		default:
			err = d.skip()
		}
		return err
	})
}

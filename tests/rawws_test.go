package tests

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	be "encoding/binary" // big-endian lengths and codes; "binary" is the built executable
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A raw WebSocket client for conformance tests: it writes frames byte by
// byte as a test says (bad opcodes, reserved bits, unmasked frames, chopped
// writes), which no well-behaved client library can produce, and reads the
// server's frames without interpreting more than it must.

// Opcodes (RFC 6455 section 5.2).
const (
	opCont   byte = 0
	opText   byte = 1
	opBinary byte = 2
	opClose  byte = 8
	opPing   byte = 9
	opPong   byte = 10
)

// RSV bits as Autobahn numbers them: the 3-bit value shifted into bits
// 6..4 of the first header byte.
const (
	rsv1 byte = 4 // permessage-deflate's "compressed" bit
	rsv2 byte = 2
	rsv3 byte = 1
)

// wsFrame is one WebSocket frame.
type wsFrame struct {
	fin      bool
	rsv      byte // 3 bits: rsv1|rsv2|rsv3
	op       byte
	payload  []byte
	unmasked bool // a client frame sent without a mask (a protocol error)
}

// frame is a frame with FIN set.
func frame(op byte, payload []byte) wsFrame { return wsFrame{fin: true, op: op, payload: payload} }

// fragment is a frame with FIN as given.
func fragment(op byte, fin bool, payload []byte) wsFrame {
	return wsFrame{fin: fin, op: op, payload: payload}
}

// closeFrame is a close frame with code and reason (code < 0: no payload).
func closeFrame(code int, reason string) wsFrame {
	if code < 0 {
		return frame(opClose, nil)
	}
	return frame(opClose, append(be.BigEndian.AppendUint16(nil, uint16(code)), reason...))
}

// encode returns the frame on the wire as a client sends it: masked with a
// random key unless unmasked, with the shortest length encoding.
func (f wsFrame) encode() []byte {
	b0 := f.op&0x0f | (f.rsv&7)<<4
	if f.fin {
		b0 |= 0x80
	}
	var mask byte = 0x80
	if f.unmasked {
		mask = 0
	}
	n := len(f.payload)
	out := make([]byte, 0, 14+n)
	out = append(out, b0)
	switch {
	case n <= 125:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = be.BigEndian.AppendUint16(append(out, mask|126), uint16(n))
	default:
		out = be.BigEndian.AppendUint64(append(out, mask|127), uint64(n))
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	out = append(out, key[:]...)
	for i, c := range f.payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func (f wsFrame) String() string {
	p := f.payload
	more := ""
	if len(p) > 40 {
		p, more = p[:40], fmt.Sprintf("…(%d bytes)", len(f.payload))
	}
	return fmt.Sprintf("[op %d fin %t rsv %d %q%s]", f.op, f.fin, f.rsv, p, more)
}

// rawConn is a client connection after the opening handshake.
type rawConn struct {
	nc      net.Conn
	br      *bufio.Reader
	resp    *http.Response
	deflate *pmDeflate // permessage-deflate as the server accepted it; nil when not negotiated
	pending []wsFrame  // control frames that arrived inside a fragmented message
}

// rawDial connects to addr and performs the opening handshake for target
// (path and query), offering extensions ("" for none). A handshake the
// server refuses is an error.
func rawDial(addr, target, extensions string, timeout time.Duration) (*rawConn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", target, addr)
	fmt.Fprintf(&req, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key)
	if extensions != "" {
		fmt.Fprintf(&req, "Sec-WebSocket-Extensions: %s\r\n", extensions)
	}
	req.WriteString("\r\n")
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(nc, req.String()); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		nc.Close()
		return nil, fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawConn{nc: nc, br: br, resp: resp}, nil
}

func (c *rawConn) Close() error { return c.nc.Close() }

// write writes b in writes of at most chop bytes (chop ≤ 0: one write).
func (c *rawConn) write(b []byte, chop int, timeout time.Duration) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	for len(b) > 0 {
		n := len(b)
		if chop > 0 && n > chop {
			n = chop
		}
		if _, err := c.nc.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// errServerClosed is what reading returns once the server has closed the
// TCP connection.
var errServerClosed = errors.New("the server closed the TCP connection")

// readFrame reads the server's next frame. Server frames must be unmasked
// and use the shortest length encoding (RFC 6455 section 5.2).
func (c *rawConn) readFrame(timeout time.Duration) (wsFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return wsFrame{}, errServerClosed
		}
		return wsFrame{}, err
	}
	f := wsFrame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0f}
	if h[1]&0x80 != 0 {
		return f, errors.New("the server sent a masked frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return f, err
		}
		if n = uint64(be.BigEndian.Uint16(b[:])); n < 126 {
			return f, fmt.Errorf("the server encoded length %d in 16 bits", n)
		}
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return f, err
		}
		if n = be.BigEndian.Uint64(b[:]); n <= 0xffff || n > 1<<30 {
			return f, fmt.Errorf("the server encoded length %d in 64 bits", n)
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, fmt.Errorf("frame payload: %w", err)
	}
	return f, nil
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// wsMessage is a complete data message as the server sent it.
type wsMessage struct {
	op         byte
	data       []byte
	frames     []int // payload size of each frame on the wire
	compressed bool
}

// readItem returns the server's next control frame or complete data
// message (exactly one of them is set). Control frames inside a fragmented
// message are returned after it, in order. A compressed message is
// inflated.
func (c *rawConn) readItem(timeout time.Duration) (*wsFrame, *wsMessage, error) {
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return &f, nil, nil
	}
	var m *wsMessage
	var data []byte
	for {
		f, err := c.readFrame(timeout)
		if err != nil {
			return nil, nil, err
		}
		if f.op >= 8 {
			if f.rsv != 0 || !f.fin || len(f.payload) > 125 {
				return nil, nil, fmt.Errorf("the server sent a bad control frame %v", f)
			}
			if m == nil {
				return &f, nil, nil
			}
			c.pending = append(c.pending, f)
			continue
		}
		switch {
		case f.rsv&^rsv1 != 0:
			return nil, nil, fmt.Errorf("the server set RSV2/RSV3: %v", f)
		case m == nil && f.op == opCont:
			return nil, nil, fmt.Errorf("the server sent a continuation frame outside a message: %v", f)
		case m != nil && f.op != opCont:
			return nil, nil, fmt.Errorf("the server started a message inside another: %v", f)
		case m == nil && f.op != opText && f.op != opBinary:
			return nil, nil, fmt.Errorf("the server sent reserved opcode %d", f.op)
		case m != nil && f.rsv != 0:
			return nil, nil, fmt.Errorf("the server set RSV1 on a continuation frame: %v", f)
		case f.rsv == rsv1 && c.deflate == nil:
			return nil, nil, fmt.Errorf("the server set RSV1 without permessage-deflate: %v", f)
		}
		if m == nil {
			m = &wsMessage{op: f.op, compressed: f.rsv == rsv1}
		}
		m.frames = append(m.frames, len(f.payload))
		data = append(data, f.payload...)
		if f.fin {
			break
		}
	}
	m.data = data
	if m.compressed {
		out, err := c.deflate.inflate(data)
		if err != nil {
			return nil, nil, fmt.Errorf("inflate the server's message: %w", err)
		}
		m.data = out
	}
	return nil, m, nil
}

// permessage-deflate (RFC 7692), client side.

// pmExt is one element of a Sec-WebSocket-Extensions header.
type pmExt struct {
	name   string
	params []pmParam
}

type pmParam struct {
	name, value string
	hasValue    bool
}

// parseExtensions parses the values of a Sec-WebSocket-Extensions header
// (RFC 6455 section 9.1; quoted values are unquoted).
func parseExtensions(values []string) []pmExt {
	var out []pmExt
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			parts := strings.Split(e, ";")
			ext := pmExt{name: strings.TrimSpace(parts[0])}
			if ext.name == "" {
				continue
			}
			for _, p := range parts[1:] {
				name, value, ok := strings.Cut(p, "=")
				value = strings.Trim(strings.TrimSpace(value), `"`)
				ext.params = append(ext.params, pmParam{name: strings.TrimSpace(name), value: value, hasValue: ok})
			}
			out = append(out, ext)
		}
	}
	return out
}

// pmDeflate is permessage-deflate as negotiated.
type pmDeflate struct {
	serverNoContext bool
	clientNoContext bool
	serverMaxBits   int // 0: not in the response (up to 15)
	clientMaxBits   int // 0: not in the response
	dict            []byte
}

// acceptDeflate checks the server's extension response against the offers
// made (each an element like "permessage-deflate; server_max_window_bits=10")
// as a client must (RFC 7692 section 7): nil when the server declined, an
// error when the response accepts none of the offers.
func acceptDeflate(offers []pmExt, response []pmExt) (*pmDeflate, error) {
	if len(response) == 0 {
		return nil, nil
	}
	if len(response) > 1 || response[0].name != "permessage-deflate" {
		return nil, fmt.Errorf("response %v: only one permessage-deflate element may be accepted", response)
	}
	var errs []string
	for _, offer := range offers {
		if offer.name != "permessage-deflate" {
			continue
		}
		d, err := validResponse(offer, response[0])
		if err == nil {
			return d, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("response %v accepts none of the offers: %s", response[0], strings.Join(errs, "; "))
}

func validResponse(offer, resp pmExt) (*pmDeflate, error) {
	offered := map[string]pmParam{}
	for _, p := range offer.params {
		offered[p.name] = p
	}
	d := &pmDeflate{}
	seen := map[string]bool{}
	for _, p := range resp.params {
		if seen[p.name] {
			return nil, fmt.Errorf("parameter %s twice", p.name)
		}
		seen[p.name] = true
		switch p.name {
		case "server_no_context_takeover":
			if p.hasValue {
				return nil, fmt.Errorf("%s with a value", p.name)
			}
			d.serverNoContext = true
		case "client_no_context_takeover":
			if p.hasValue {
				return nil, fmt.Errorf("%s with a value", p.name)
			}
			d.clientNoContext = true
		case "server_max_window_bits":
			bits, ok := windowBits(p)
			if !ok {
				return nil, fmt.Errorf("%s=%q", p.name, p.value)
			}
			if o, in := offered[p.name]; in {
				if ob, _ := windowBits(o); bits > ob {
					return nil, fmt.Errorf("%s=%d above the offered %d", p.name, bits, ob)
				}
			}
			d.serverMaxBits = bits
		case "client_max_window_bits":
			o, in := offered[p.name]
			if !in {
				return nil, fmt.Errorf("%s not offered", p.name)
			}
			bits, ok := windowBits(p)
			if !ok {
				return nil, fmt.Errorf("%s=%q", p.name, p.value)
			}
			if o.hasValue {
				if ob, _ := windowBits(o); bits > ob {
					return nil, fmt.Errorf("%s=%d above the offered %d", p.name, bits, ob)
				}
			}
			d.clientMaxBits = bits
		default:
			return nil, fmt.Errorf("unknown parameter %q", p.name)
		}
	}
	// RFC 7692 section 7.1.2.1: a server accepts an offer with
	// server_max_window_bits by answering it, with the same or a smaller
	// value; one that cannot honour it declines.
	if _, in := offered["server_max_window_bits"]; in && d.serverMaxBits == 0 {
		return nil, errors.New("server_max_window_bits offered and not answered")
	}
	if o, in := offered["server_no_context_takeover"]; in && !o.hasValue && !d.serverNoContext {
		return nil, errors.New("server_no_context_takeover offered and not answered")
	}
	if o, in := offered["client_max_window_bits"]; in && d.clientMaxBits == 0 {
		d.clientMaxBits, _ = windowBits(o) // the client keeps to what it offered
	}
	return d, nil
}

// windowBits is the value of a *_max_window_bits parameter: 8..15, decimal,
// no leading zero (RFC 7692 section 7.1.2).
func windowBits(p pmParam) (int, bool) {
	if !p.hasValue || p.value == "" || p.value[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(p.value)
	return n, err == nil && n >= 8 && n <= 15
}

// deflateTail ends every compressed message (RFC 7692 section 7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// deflate compresses one message as this client sends it: never with
// context takeover; Huffman coding only (no back-references, so any window
// fits) when the server limited the client's window below 32 KiB.
func (d *pmDeflate) deflate(data []byte) []byte {
	level := flate.DefaultCompression
	if d.clientMaxBits > 0 && d.clientMaxBits < 15 {
		level = flate.HuffmanOnly
	}
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, level)
	_, _ = w.Write(data)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), deflateTail)
}

// inflate decompresses one message from the server (RFC 7692 section
// 7.2.2), keeping the window when the server uses context takeover.
func (d *pmDeflate) inflate(data []byte) ([]byte, error) {
	// The tail, then an empty final stored block: the stream ends cleanly.
	src := io.MultiReader(bytes.NewReader(data), bytes.NewReader(deflateTail), bytes.NewReader([]byte{0x01, 0x00, 0x00, 0xff, 0xff}))
	r := flate.NewReaderDict(src, d.dict)
	out, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, err
	}
	if !d.serverNoContext {
		d.dict = append(d.dict, out...)
		if len(d.dict) > 32<<10 {
			d.dict = append([]byte(nil), d.dict[len(d.dict)-32<<10:]...)
		}
	}
	return out, nil
}

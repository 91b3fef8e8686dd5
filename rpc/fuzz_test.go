package rpc_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// The fuzz targets of the RPC server, each against a live server over TCP
// (seeds in testdata/fuzz/<target>):
//
//   - FuzzServer: any bytes as the stream of a connection;
//   - FuzzFrame: goridge frames built from fuzzed header fields with a
//     correct CRC (random bytes almost never pass the CRC), and any payload;
//   - FuzzArgs: well-formed frames with any method name and any body, JSON
//     or msgpack: the arguments of every Sender method.

// fuzzEnv starts a server with one WebSocket client (fd 1, whose messages
// are drained) for the pushes to reach.
func fuzzEnv(f *testing.F) (*env, string, string) {
	e := startEnv(f, "tcp", bridge.Config{QueueSize: 1 << 12}, rpc.Config{MaxFrameSize: 64 << 10})
	ws, _ := e.dial(f, "fuzz")
	go func() {
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return // closed by a fuzzed Disconnect, or at the end
			}
		}
	}()
	network, address, _ := rpc.ParseAddr(e.srv.Addr())
	return e, network, address
}

// served checks that the server still answers another connection.
func served(t *testing.T, c *rpc.Client) {
	t.Helper()
	var ok bool
	if err := c.Call("Sender.Check", map[string]any{"fd": 1}, &ok); err != nil {
		t.Fatalf("the server stopped serving others: %v", err)
	}
}

// sendAndDrain writes in, half-closes, and reads until the server closes.
func sendAndDrain(t *testing.T, network, address string, in []byte) {
	t.Helper()
	conn, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(in)
	// Half-close: the server sees the end of the stream after the input.
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the server neither answered nor closed: %v", err)
	}
}

// FuzzServer writes arbitrary bytes to a live RPC server: whatever they are,
// the server answers or closes that connection, and keeps serving others.
func FuzzServer(f *testing.F) {
	f.Add(request(frame.CodecJSON, 1, "Sender.Push", `{"fd":1,"data":"x"}`))
	f.Add(request(frame.CodecMsgpack, 2, "Sender.Check", "\x81\xa2fd\x01"))
	f.Add(request(frame.CodecGob, 3, "Sender.Check", "garbage"))
	f.Add(request(frame.CodecProto, 4, "Sender.Check", "x"))
	f.Add(append(request(frame.CodecJSON, 5, "Sender.Broadcast", `{"data":"y"}`), request(frame.CodecJSON, 6, "Sender.Nope", `{}`)...))
	f.Add([]byte("\x15\x08\xff\xff\xff\xff"))
	e, network, address := fuzzEnv(f)
	check := e.client(f, rpc.JSON)
	f.Fuzz(func(t *testing.T, in []byte) {
		sendAndDrain(t, network, address, in)
		served(t, check)
	})
}

// FuzzFrame sends one frame whose header fields are fuzzed but whose CRC
// is right, so that the server's checks past the CRC are reached: version
// and header length, flags, stream flags, sequence, method length, and a
// payload length that may disagree with the bytes that follow. The server
// answers or closes, and keeps serving others.
func FuzzFrame(f *testing.F) {
	const v1 = frame.Version1<<4 | 5
	f.Add(byte(v1), byte(frame.CodecJSON), byte(0), uint32(1), uint32(12), uint32(32), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecMsgpack), byte(0), uint32(2), uint32(11), uint32(33), []byte("Sender.Push\x82\xa2fd\x01\xa4data\xa5hello"))
	f.Add(byte(v1), byte(frame.CodecJSON), byte(frame.STREAM), uint32(3), uint32(12), uint32(20), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecJSON|frame.ERROR), byte(0), uint32(4), uint32(12), uint32(20), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecJSON), byte(0), uint32(5), uint32(0), uint32(8), []byte(`{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecJSON), byte(0), uint32(6), uint32(1<<31), uint32(20), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecJSON), byte(0), uint32(7), uint32(12), uint32(1<<30), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(v1), byte(frame.CodecJSON), byte(0), uint32(8), uint32(12), uint32(40), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(frame.Version1<<4|3), byte(frame.CodecJSON), byte(0), uint32(9), uint32(12), uint32(20), []byte(`Sender.Check{"fd":1}`))
	f.Add(byte(2<<4|5), byte(frame.CodecJSON), byte(0), uint32(10), uint32(12), uint32(20), []byte(`Sender.Check{"fd":1}`))
	e, network, address := fuzzEnv(f)
	check := e.client(f, rpc.JSON)
	f.Fuzz(func(t *testing.T, vhl, flags, stream byte, seq, methodLen, payloadLen uint32, payload []byte) {
		b := make([]byte, 20, 20+len(payload))
		b[0], b[1] = vhl, flags
		binary.LittleEndian.PutUint32(b[2:6], payloadLen)
		binary.LittleEndian.PutUint32(b[6:10], crc32.ChecksumIEEE(b[:6]))
		b[10] = stream
		binary.LittleEndian.PutUint32(b[12:16], seq)
		binary.LittleEndian.PutUint32(b[16:20], methodLen)
		sendAndDrain(t, network, address, append(b, payload...))
		served(t, check)
	})
}

// argSeeds are valid arguments of every Sender method (and some that are
// not), the seeds of FuzzArgs in both codecs.
var argSeeds = []struct {
	method string
	args   any
}{
	{"Sender.Push", map[string]any{"fd": 1, "data": "hello"}},
	{"Sender.Push", map[string]any{"fd": 1, "data": "AAEC/w==", "opcode": 2, "encoding": "base64"}},
	{"Sender.Push", map[string]any{"fd": 1, "data": "frag", "finish": false}},
	{"Sender.Push", map[string]any{"fd": 1, "data": "ment", "opcode": 0, "finish": true}},
	{"Sender.Push", map[string]any{"fd": 1, "data": "ping", "opcode": 9}},
	{"Sender.PushBatch", map[string]any{"messages": []any{map[string]any{"fd": 1, "data": "a"}, map[string]any{"fd": 2, "data": "b", "opcode": 2}}}},
	{"Sender.PushMany", map[string]any{"fds": []int64{1, 2, 3}, "data": "x"}},
	{"Sender.Broadcast", map[string]any{"data": "x", "except": []int64{2}}},
	{"Sender.Disconnect", map[string]any{"fd": 2, "code": 4000, "reason": "bye"}},
	{"Sender.Check", map[string]any{"fd": 1}},
	{"Sender.Join", map[string]any{"fd": 1, "group": "room"}},
	{"Sender.Leave", map[string]any{"fd": 1, "group": "room"}},
	{"Sender.PushGroup", map[string]any{"group": "room", "data": "x", "except": []int64{3}}},
	{"Sender.GroupMembers", map[string]any{"group": "room"}},
	{"Sender.GroupsOf", map[string]any{"fd": 1}},
	{"Sender.Groups", map[string]any{}},
	{"Sender.Bind", map[string]any{"fd": 1, "user": "42"}},
	{"Sender.Unbind", map[string]any{"fd": 1}},
	{"Sender.PushUser", map[string]any{"user": "42", "data": "x"}},
	{"Sender.UserFds", map[string]any{"user": "42"}},
	{"Sender.Info", map[string]any{"fd": 1}},
	{"Sender.Stats", nil},
	{"Sender.Connections", map[string]any{"after": 0, "limit": 10, "group": "room"}},
	{"Sender.Nope", map[string]any{}},
}

// codecOf picks a codec from a fuzzed byte: odd is msgpack.
func codecOf(b byte) byte {
	if b&1 == 1 {
		return frame.CodecMsgpack
	}
	return frame.CodecJSON
}

// FuzzArgs sends well-formed frames with any method name and body in JSON
// or msgpack, one at a time on one connection. Each gets exactly one reply
// with its sequence number: a result the codec decodes, or an error with a
// code (never internal) or from net/rpc (unknown method); the stream stays
// in step; others are served.
func FuzzArgs(f *testing.F) {
	for _, s := range argSeeds {
		j, err := json.Marshal(s.args)
		if err != nil {
			f.Fatal(err)
		}
		m, err := msgpack.Marshal(s.args)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(0), s.method, j)
		f.Add(byte(1), s.method, m)
	}
	e, network, address := fuzzEnv(f)
	check := e.client(f, rpc.JSON)
	conn, err := net.Dial(network, address)
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	var seq uint32
	f.Fuzz(func(t *testing.T, codecByte byte, method string, body []byte) {
		if len(method) == 0 || len(method)+len(body) > 60<<10 {
			return // refused from the header: FuzzFrame's part
		}
		codec := codecOf(codecByte)
		seq++
		conn.SetDeadline(time.Now().Add(wait))
		if _, err := conn.Write(request(codec, seq, method, string(body))); err != nil {
			t.Fatalf("write: %v", err)
		}
		fr, err := readReply(br)
		if err != nil {
			t.Fatalf("%s %q: no reply: %v", method, body, err)
		}
		if fr.seq != seq || fr.method != method {
			t.Fatalf("%s: reply seq %d method %q, want %d %q", method, fr.seq, fr.method, seq, method)
		}
		var v any
		switch {
		case fr.isErr:
			text := string(fr.body)
			code, _, _ := strings.Cut(text, ": ")
			if !strings.HasPrefix(text, "rpc: ") && !knownCode(code) {
				t.Fatalf("%s %q: error %q", method, body, text)
			}
		case fr.codec != codec:
			t.Fatalf("%s: reply codec 0x%02x, want 0x%02x", method, fr.codec, codec)
		case codec == frame.CodecJSON && !json.Valid(fr.body):
			t.Fatalf("%s: reply %q is not JSON", method, fr.body)
		case codec == frame.CodecMsgpack && msgpack.Unmarshal(fr.body, &v) != nil:
			t.Fatalf("%s: reply %q is not msgpack", method, fr.body)
		}
		served(t, check)
	})
}

// knownCode reports whether code is one a caller may get (internal is a
// bug: a reply that did not encode, a hub error not mapped).
func knownCode(code string) bool {
	switch code {
	case sender.CodeBadRequest, sender.CodeInvalidFD, sender.CodeInvalidOpcode, sender.CodeTooLarge, sender.CodeInvalidUTF8,
		sender.CodeInvalidCloseCode, sender.CodeInvalidName, sender.CodeTooManyGroups, sender.CodeShuttingDown:
		return true
	}
	return false
}

// replyFrame is a reply read by readReply.
type replyFrame struct {
	codec  byte
	isErr  bool
	seq    uint32
	method string
	body   []byte
}

// readReply reads one RPC reply frame from r.
func readReply(r *bufio.Reader) (replyFrame, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return replyFrame{}, err
	}
	n := binary.LittleEndian.Uint32(h[2:6])
	ml := binary.LittleEndian.Uint32(h[16:20])
	if h[0] != frame.Version1<<4|5 || crc32.ChecksumIEEE(h[:6]) != binary.LittleEndian.Uint32(h[6:10]) || ml > n || n > 16<<20 {
		return replyFrame{}, io.ErrUnexpectedEOF
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return replyFrame{}, err
	}
	return replyFrame{codec: h[1] &^ frame.ERROR, isErr: h[1]&frame.ERROR != 0, seq: binary.LittleEndian.Uint32(h[12:16]),
		method: string(p[:ml]), body: p[ml:]}, nil
}

package rpc_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/socket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// rawDial opens a plain connection to the RPC server.
func rawDial(t testing.TB, e *env) net.Conn {
	t.Helper()
	network, address, _ := rpc.ParseAddr(e.srv.Addr())
	conn, err := net.DialTimeout(network, address, wait)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(timeout())
	t.Cleanup(func() { conn.Close() })
	return conn
}

// reply reads one frame and returns its sequence, whether it is an error,
// and the payload after the method name.
func reply(t testing.TB, conn net.Conn) (uint32, bool, string) {
	t.Helper()
	fr := frame.NewFrame()
	if err := socket.NewSocketRelay(conn).Receive(fr); err != nil {
		t.Fatalf("no reply frame: %v", err)
	}
	opts := fr.ReadOptions(fr.Header())
	return opts[0], fr.ReadFlags()&frame.ERROR != 0, string(fr.Payload()[opts[1]:])
}

func expectClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	if n, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("want the server to close the connection, read %d bytes, then %v", n, err)
	}
}

func request(codec byte, seq uint32, method, body string) []byte {
	return rpc.RequestFrame(codec, seq, method, []byte(body)).Bytes()
}

// withCRC recomputes a frame header's CRC after a test changed it.
func withCRC(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[6:10], crc32.ChecksumIEEE(b[:6]))
	return b
}

var frameTests = []struct {
	name  string
	bytes func() []byte
	fatal bool   // the server closes the connection after its error reply
	seq   uint32 // of the error reply
	want  string // in the error text
}{
	{"bad CRC", func() []byte {
		b := request(frame.CodecJSON, 7, "Sender.Check", `{"fd":1}`)
		b[7] ^= 0xff
		return b
	}, true, 0, "CRC mismatch"},
	{"garbage", func() []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, true, 0, "CRC mismatch"},
	{"oversized frame", func() []byte {
		b := request(frame.CodecJSON, 9, "Sender.Check", `{"fd":1}`)
		binary.LittleEndian.PutUint32(b[2:6], 1<<30) // announces 1 GiB, sends nothing more
		return withCRC(b[:20])
	}, true, 9, "over the limit"},
	{"no options", func() []byte {
		b := make([]byte, 12)
		b[0] = frame.Version1<<4 | 3
		return withCRC(b)
	}, true, 0, "exactly 2 options"},
	{"wrong version", func() []byte {
		b := request(frame.CodecJSON, 3, "Sender.Check", `{"fd":1}`)
		b[0] = 2<<4 | b[0]&0x0f
		return withCRC(b)
	}, true, 0, "version"},
	{"proto codec", func() []byte { return request(frame.CodecProto, 4, "Sender.Check", `{"fd":1}`) }, false, 4, "codec must be one of"},
	{"raw codec", func() []byte { return request(frame.CodecRaw, 5, "Sender.Check", `{"fd":1}`) }, false, 5, "codec must be one of"},
	{"two codecs", func() []byte { return request(frame.CodecJSON|frame.CodecMsgpack, 6, "Sender.Check", `{"fd":1}`) }, false, 6, "codec must be one of"},
	{"no codec", func() []byte { return request(0, 10, "Sender.Check", `{"fd":1}`) }, false, 10, "codec must be one of"},
	{"error flag in a request", func() []byte { return request(frame.CodecJSON|frame.ERROR, 11, "Sender.Check", `{"fd":1}`) }, false, 11, "ERROR or CONTROL"},
	{"method length past the payload", func() []byte {
		b := request(frame.CodecJSON, 12, "Sender.Check", `{"fd":1}`)
		binary.LittleEndian.PutUint32(b[16:20], 5000)
		return b
	}, false, 12, "method length"},
	{"empty method", func() []byte { return request(frame.CodecJSON, 13, "", `{"fd":1}`) }, false, 13, "method length 0"},
	{"stream flag", func() []byte {
		b := request(frame.CodecJSON, 14, "Sender.Check", `{"fd":1}`)
		b[10] = frame.STREAM
		return b
	}, false, 14, "streams"},
	{"bad JSON", func() []byte { return request(frame.CodecJSON, 15, "Sender.Check", `{"fd":`) }, false, 15, "cannot decode"},
	{"bad msgpack", func() []byte { return request(frame.CodecMsgpack, 16, "Sender.Check", "\xc1\xc1") }, false, 16, "cannot decode"},
}

func TestMalformedFrames(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{MaxFrameSize: 1 << 20})
	ws, fd := e.dial(t, "a")
	other := e.client(t, rpc.JSON)
	for _, tt := range frameTests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawDial(t, e)
			if _, err := conn.Write(tt.bytes()); err != nil {
				t.Fatal(err)
			}
			seq, isErr, text := reply(t, conn)
			if !isErr || seq != tt.seq || !strings.Contains(text, tt.want) {
				t.Fatalf("reply seq %d error %v %q; want an error with seq %d mentioning %q", seq, isErr, text, tt.seq, tt.want)
			}
			if !strings.HasPrefix(text, sender.CodeBadRequest+": ") {
				t.Fatalf("error %q lacks the bad_request code", text)
			}
			if tt.fatal {
				expectClosed(t, conn)
			} else {
				// The stream stayed in step: the next request is answered.
				conn.Write(request(frame.CodecJSON, 99, "Sender.Check", `{"fd":1}`))
				if seq, isErr, text := reply(t, conn); seq != 99 || isErr {
					t.Fatalf("next request: seq %d, error %v %q", seq, isErr, text)
				}
			}
			// Everyone else is served throughout.
			if !call[bool](t, other, "Sender.Push", map[string]any{"fd": fd, "data": tt.name}) {
				t.Fatal("push from another connection = false")
			}
			readText(t, ws, tt.name)
		})
	}
}

func TestHalfFrameThenHangUp(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	for _, n := range []int{1, 11, 12, 19, 25} {
		conn := rawDial(t, e)
		conn.Write(request(frame.CodecJSON, 1, "Sender.Check", `{"fd":1}`)[:n])
		conn.Close()
	}
	c := e.client(t, rpc.JSON)
	if call[bool](t, c, "Sender.Check", map[string]any{"fd": 1}) {
		t.Fatal("Check(1) = true with no clients")
	}
}

func TestConnectionLimit(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{MaxConnections: 2})
	c1, c2 := e.client(t, rpc.JSON), e.client(t, rpc.JSON)
	call[bool](t, c1, "Sender.Check", map[string]any{"fd": 1})
	call[bool](t, c2, "Sender.Check", map[string]any{"fd": 1})
	conn := rawDial(t, e)
	_, isErr, text := reply(t, conn)
	if !isErr || !strings.Contains(text, "too many RPC connections") {
		t.Fatalf("third connection: error %v %q", isErr, text)
	}
	expectClosed(t, conn)
	c1.Close()
	deadline := time.Now().Add(wait)
	for { // the slot frees once the server sees c1 gone
		c3, err := rpc.Dial(e.srv.Addr(), rpc.JSON, wait)
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		err = c3.Call("Sender.Check", map[string]any{"fd": 1}, &ok)
		c3.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a client left: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/wsb.sock"
	// A stale socket file from a crashed run is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	e := startEnv(t, "unix", bridge.Config{}, rpc.Config{Addr: "unix://" + path, SocketMode: 0o600})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v", fi, err)
	}
	c := e.client(t, rpc.Msgpack)
	if call[bool](t, c, "Sender.Check", map[string]any{"fd": 1}) {
		t.Fatal("Check = true")
	}
	// A second server on the same live socket is refused, not hijacked.
	other, _ := rpc.New(sender.NewService(e.hub), rpc.Config{Addr: "unix://" + path, Logger: quiet})
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	// A regular file is never removed.
	file := dir + "/not-a-socket"
	os.WriteFile(file, []byte("keep"), 0o600)
	third, _ := rpc.New(sender.NewService(e.hub), rpc.Config{Addr: "unix://" + file, Logger: quiet})
	if err := third.Listen(); err == nil {
		t.Fatal("Listen over a regular file succeeded")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file was touched")
	}
}

func TestParseAddr(t *testing.T) {
	for _, tt := range []struct{ in, network, address string }{
		{"tcp://127.0.0.1:6001", "tcp", "127.0.0.1:6001"},
		{"tcp://[::1]:6001", "tcp", "[::1]:6001"},
		{"unix:///run/wsbridge.sock", "unix", "/run/wsbridge.sock"},
		{"unix://relative.sock", "unix", "relative.sock"},
	} {
		n, a, err := rpc.ParseAddr(tt.in)
		if err != nil || n != tt.network || a != tt.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v", tt.in, n, a, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:6001", "tcp://", "tcp://host", "http://x:1", "unix://", "tcp://h:1/path", "::"} {
		if _, _, err := rpc.ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) succeeded", bad)
		}
	}
}

func TestShutdownFinishesInFlightAndRefusesNew(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	_, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	answered := make(chan struct{})
	wg.Add(1)
	go func() { // pushes while the server shuts down: each answered or a clear error
		defer wg.Done()
		for n := 0; ; n++ {
			var ok bool
			err := c.Call("Sender.Push", map[string]any{"fd": fd, "data": "x"}, &ok)
			if n == 0 {
				close(answered)
			}
			if err != nil {
				var re *sender.Error
				if !errors.As(err, &re) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
					errs <- err
				}
				return
			}
		}
	}()
	<-answered // the pushes are under way
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a call during shutdown failed unclearly: %v", err)
	default:
	}
	if _, err := rpc.Dial(e.srv.Addr(), rpc.JSON, time.Second); err == nil {
		t.Fatal("dial after Shutdown succeeded")
	}
}

// gate holds each observed call until released: a call that is still
// running when a later frame arrives.
type gate struct{ release chan struct{} }

func (g gate) ObserveCall(string, string, time.Duration) { <-g.release }

// TestFatalFrameLetsRunningCallsAnswer: a client sends a call, then a frame
// that ends the connection. The call already running still gets its
// reply, after the error reply, before the connection closes.
func TestFatalFrameLetsRunningCallsAnswer(t *testing.T) {
	g := gate{release: make(chan struct{})}
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{Observer: g})
	conn := rawDial(t, e)
	conn.Write(request(frame.CodecJSON, 7, "Sender.Check", `{"fd":1}`))
	bad := request(frame.CodecJSON, 8, "Sender.Check", `{"fd":1}`)
	bad[6] ^= 0xff // CRC mismatch
	conn.Write(bad)
	if seq, isErr, msg := reply(t, conn); seq != 0 || !isErr || !strings.Contains(msg, "CRC") {
		t.Fatalf("first reply: seq %d, error %v, %q; want the CRC error", seq, isErr, msg)
	}
	close(g.release)
	if seq, isErr, msg := reply(t, conn); seq != 7 || isErr || msg != "false" {
		t.Fatalf("second reply: seq %d, error %v, %q; want Check's false for seq 7", seq, isErr, msg)
	}
	expectClosed(t, conn)
}

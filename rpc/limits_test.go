package rpc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
)

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// bigReplies gives a WebSocket connection 256 groups with 250-byte names,
// so that Sender.GroupsOf of its fd answers 64 KiB: a few dozen unread
// replies fill the socket buffers and the next reply's write blocks.
func bigReplies(t testing.TB, e *env) int64 {
	t.Helper()
	_, fd := e.dial(t, "big")
	c := e.client(t, rpc.JSON)
	for i := range 256 {
		call[bool](t, c, "Sender.Join", map[string]any{"fd": fd, "group": fmt.Sprintf("%03d%s", i, strings.Repeat("g", 247))})
	}
	return fd
}

// pipeline writes n Sender.GroupsOf requests for fd on conn at once, and
// reads no reply.
func pipeline(t testing.TB, conn net.Conn, fd int64, n int) {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		b.Write(request(frame.CodecJSON, uint32(i+1), "Sender.GroupsOf", fmt.Sprintf(`{"fd":%d}`, fd)))
	}
	go conn.Write(b.Bytes()) // returns once the connection is closed, at the latest
}

// TestPipeliningClientIsBounded: a client that sends calls without reading
// the replies gets at most MaxInFlight of them running or waiting to be
// written; the server stops reading its requests until replies go out.
// Before the limit, net/rpc started a goroutine per request read, each
// holding its reply.
func TestPipeliningClientIsBounded(t *testing.T) {
	const limit = 8
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{MaxInFlight: limit, WriteTimeout: time.Hour})
	fd := bigReplies(t, e)
	base := runtime.NumGoroutine()
	conn := rawDial(t, e)
	conn.SetDeadline(time.Time{})
	pipeline(t, conn, fd, 400) // 25 MiB of replies: several times what socket buffers hold
	waitFor(t, "the connection to reach its in-flight limit", func() bool {
		st := e.srv.Stats()
		if n := runtime.NumGoroutine() - base; n > limit+10 {
			t.Fatalf("%d goroutines more than before the client came, for %d calls in flight; want at most %d+10", n, st.InFlight, limit)
		}
		return st.InFlight == limit && st.InFlightWaits > 0
	})
	if n := runtime.NumGoroutine() - base; n > limit+10 {
		t.Fatalf("%d goroutines more than before the client came; want at most %d+10", n, limit)
	}
	if st := e.srv.Stats(); st.InFlight != limit {
		t.Fatalf("Stats().InFlight = %d, want %d", st.InFlight, limit)
	}
	// Others are served meanwhile.
	other := e.client(t, rpc.Msgpack)
	if !call[bool](t, other, "Sender.Check", map[string]any{"fd": fd}) {
		t.Fatal("Check of an open fd = false")
	}
	// Once the client reads, every call is answered once (in any order:
	// calls in flight run concurrently).
	seen := make([]bool, 401)
	for i := range 400 {
		conn.SetReadDeadline(timeout())
		seq, isErr, text := reply(t, conn)
		if seq < 1 || seq > 400 || seen[seq] || isErr {
			t.Fatalf("reply %d: seq %d (again: %v), error %v %.80q", i, seq, seq <= 400 && seen[seq], isErr, text)
		}
		seen[seq] = true
	}
}

// TestNonReadingClientIsCut: a client that sends calls and never reads the
// replies is disconnected once a reply could not be written for
// WriteTimeout; the server counts it and serves the others.
func TestNonReadingClientIsCut(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{WriteTimeout: 200 * time.Millisecond})
	fd := bigReplies(t, e)
	other := e.client(t, rpc.JSON) // a connection of its own, before the bad one
	call[bool](t, other, "Sender.Check", map[string]any{"fd": 1})
	before := e.srv.Connections()
	conn := rawDial(t, e)
	conn.SetDeadline(time.Time{})
	pipeline(t, conn, fd, 1000)
	waitFor(t, "the connection to be counted", func() bool { return e.srv.Connections() == before+1 })
	waitFor(t, "the server to close the connection that reads nothing", func() bool { return e.srv.Connections() == before })
	if st := e.srv.Stats(); st.WriteTimeouts != 1 {
		t.Fatalf("Stats().WriteTimeouts = %d, want 1", st.WriteTimeouts)
	}
	if !call[bool](t, other, "Sender.Check", map[string]any{"fd": fd}) {
		t.Fatal("Check of an open fd = false")
	}
}

// TestIdleConnectionIsClosed: with IdleTimeout set, a connection that sends
// no request for that long is closed and counted; one that keeps calling
// is not.
func TestIdleConnectionIsClosed(t *testing.T) {
	e := startEnv(t, "unix", bridge.Config{}, rpc.Config{IdleTimeout: time.Second})
	conn := rawDial(t, e)
	conn.Write(request(frame.CodecJSON, 1, "Sender.Check", `{"fd":1}`))
	if seq, isErr, _ := reply(t, conn); seq != 1 || isErr {
		t.Fatalf("reply seq %d, error %v", seq, isErr)
	}
	expectClosed(t, conn) // the client waits, reading: the server closes
	if st := e.srv.Stats(); st.IdleTimeouts != 1 {
		t.Fatalf("Stats().IdleTimeouts = %d, want 1", st.IdleTimeouts)
	}
	// A half-sent frame is not activity: its connection is closed as well.
	conn = rawDial(t, e)
	conn.Write(request(frame.CodecJSON, 1, "Sender.Check", `{"fd":1}`)[:25])
	expectClosed(t, conn)
	if st := e.srv.Stats(); st.IdleTimeouts != 2 {
		t.Fatalf("Stats().IdleTimeouts = %d, want 2", st.IdleTimeouts)
	}
}

// TestStalledFrameIsClosed: with no idle timeout (the default), a
// connection may wait for its next request forever, but a request that has
// begun must arrive whole within ReadTimeout (a slowloris on the RPC port
// held its connection for good); the wait between requests stays free.
func TestStalledFrameIsClosed(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{ReadTimeout: 2 * time.Second})
	idle := rawDial(t, e)
	req := request(frame.CodecJSON, 1, "Sender.Check", `{"fd":1}`)
	var stalled []net.Conn
	for _, cut := range []int{5, 25} { // inside the header, inside the payload
		conn := rawDial(t, e)
		conn.Write(req[:cut])
		stalled = append(stalled, conn)
	}
	for _, conn := range stalled {
		expectClosed(t, conn)
	}
	if st := e.srv.Stats(); st.ReadTimeouts != 2 || st.IdleTimeouts != 0 {
		t.Fatalf("Stats() = %+v, want 2 read timeouts, no idle one", st)
	}
	// The connection idle all along, and one that trickles a request in
	// under the timeout, are served.
	idle.Write(req)
	if seq, isErr, _ := reply(t, idle); seq != 1 || isErr {
		t.Fatalf("idle connection: reply seq %d, error %v", seq, isErr)
	}
	slow := rawDial(t, e)
	slow.Write(req[:10])
	time.Sleep(500 * time.Millisecond)
	slow.Write(req[10:])
	if seq, isErr, _ := reply(t, slow); seq != 1 || isErr {
		t.Fatalf("trickled request: reply seq %d, error %v", seq, isErr)
	}
}

// TestAnnouncedSizeIsNotAllocated: a frame that announces a 32 MiB payload
// and sends 10 bytes of it makes the server allocate about what arrived,
// not what was announced, whether the frame is accepted or refused.
func TestAnnouncedSizeIsNotAllocated(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{MaxFrameSize: 32 << 20})
	for _, codec := range []byte{frame.CodecJSON, frame.CodecProto} { // accepted, refused
		b := request(codec, 1, "Sender.Check", `{"fd":1}`)[:rpcHeaderLen+10]
		binary.LittleEndian.PutUint32(b[2:6], 32<<20)
		withCRC(b)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conn := rawDial(t, e)
		conn.Write(b)
		conn.(*net.TCPConn).CloseWrite() // the server reads 10 bytes, then the end of the stream
		expectClosed(t, conn)
		waitFor(t, "the server to drop the connection", func() bool { return e.srv.Connections() == 0 })
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("codec 0x%02x: %d bytes allocated for a frame that announced 32 MiB and sent 10 bytes; want under 4 MiB", codec, n)
		}
	}
}

const rpcHeaderLen = 20

// TestLargeFramesArriveWhole: payloads larger than the first chunk the
// server reads into (and arriving in pieces) reach the service intact, in
// both codecs, and the same connection goes on serving small calls.
func TestLargeFramesArriveWhole(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{MaxPushSize: 4 << 20}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	conn := rawDial(t, e)
	for i, size := range []int{100 << 10, 1<<20 + 17} {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte('a' + (j*7+i)%26)
		}
		for _, codec := range []byte{frame.CodecJSON, frame.CodecMsgpack} {
			var body []byte
			if codec == frame.CodecJSON {
				body = fmt.Appendf(nil, `{"fd":%d,"data":%q}`, fd, data)
			} else {
				var err error
				if body, err = msgpack.Marshal(map[string]any{"fd": fd, "data": string(data)}); err != nil {
					t.Fatal(err)
				}
			}
			go func(b []byte) { // in pieces, as a slow network delivers them
				for len(b) > 0 {
					n := min(len(b), 70000)
					if _, err := conn.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
			}(request(codec, uint32(size), "Sender.Push", string(body)))
			if seq, isErr, text := reply(t, conn); seq != uint32(size) || isErr || text != "true" && text != "\xc3" {
				t.Fatalf("push of %d bytes: seq %d, error %v, %.80q", size, seq, isErr, text)
			}
			if _, got := read(t, ws); !bytes.Equal(got, data) {
				t.Fatalf("push of %d bytes: the client got %d bytes, not the same", size, len(got))
			}
		}
	}
	conn.Write(request(frame.CodecJSON, 5, "Sender.Check", fmt.Sprintf(`{"fd":%d}`, fd)))
	if seq, isErr, text := reply(t, conn); seq != 5 || isErr || text != "true" {
		t.Fatalf("small call after large ones: seq %d, error %v, %q", seq, isErr, text)
	}
}

// TestShutdownWithBlockedConnection: a connection paused at its in-flight
// limit, its replies unread, does not hold Shutdown past its context: the
// connection is closed, its reader and calls end (goleak checks).
func TestShutdownWithBlockedConnection(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{MaxInFlight: 4, WriteTimeout: time.Hour})
	fd := bigReplies(t, e)
	conn := rawDial(t, e)
	conn.SetDeadline(time.Time{})
	pipeline(t, conn, fd, 400)
	waitFor(t, "the connection to pause at its limit", func() bool { return e.srv.Stats().InFlightWaits > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		// nil when the calls in flight got their replies into the socket
		// buffers in time, the deadline's error when they did not.
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return after its context ended")
	}
	if n := e.srv.Connections(); n != 0 {
		t.Fatalf("%d connections left after Shutdown", n)
	}
}

// TestFatalFrameLingersOneSecond: after a fatal frame the server reads
// and discards what the client still sends for a second, then drops the
// connection, even with a long ReadTimeout (which took over the linger's
// deadline and held each such connection ten times longer).
func TestFatalFrameLingersOneSecond(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{ReadTimeout: time.Hour})
	conn := rawDial(t, e)
	b := request(frame.CodecJSON, 1, "Sender.Check", `{"fd":1}`)
	b[7] ^= 0xff // a bad CRC: fatal
	conn.Write(b[:rpcHeaderLen])
	if seq, isErr, _ := reply(t, conn); seq != 0 || !isErr {
		t.Fatalf("reply seq %d, error %v; want the bad_request error", seq, isErr)
	}
	// The client neither sends nor closes: the server lets go on its own.
	waitFor(t, "the server to drop the connection", func() bool { return e.srv.Connections() == 0 })
}

// TestJSONArgumentsCannotCrashTheServer: goccy/go-json v0.10.3 read past
// the end of an unterminated string that ends in a backslash (`{"\`): an
// index out of range panic in the connection's goroutine, which killed
// the whole bridge, or a hang, depending on the memory after the input
// (FuzzArgs found it). The arguments are decoded with encoding/json now.
func TestJSONArgumentsCannotCrashTheServer(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	conn := rawDial(t, e)
	for i := range 2000 {
		body := []string{`{"\`, `{"data":"\`, `{"fd":1,"data":"ab\`, `"\`}[i%4]
		conn.Write(request(frame.CodecJSON, uint32(i+1), "Sender.Push", body))
		if seq, isErr, _ := reply(t, conn); seq != uint32(i+1) || !isErr {
			t.Fatalf("%q: reply seq %d, error %v; want a bad_request", body, seq, isErr)
		}
	}
}

// TestManyEmptyStructsAreRefused: a 1 MiB msgpack PushBatch of a million
// empty maps (a byte each, a whole struct each once decoded) is refused
// with bad_request before it is decoded, not turned into a hundred
// megabytes.
func TestManyEmptyStructsAreRefused(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	n := 1 << 20
	body := append([]byte{0x81, 0xa8}, "messages"...)
	body = append(body, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	body = append(body, bytes.Repeat([]byte{0x80}, n)...)
	conn := rawDial(t, e)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	conn.Write(request(frame.CodecMsgpack, 7, "Sender.PushBatch", string(body)))
	seq, isErr, text := reply(t, conn)
	runtime.ReadMemStats(&after)
	if seq != 7 || !isErr || !strings.HasPrefix(text, "bad_request") {
		t.Fatalf("reply seq %d, error %v %q; want bad_request", seq, isErr, text)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("%d bytes allocated for a 1 MiB request; want under 32 MiB", grew)
	}
}

package bridge_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// testReadMode is the read mode of the hubs the tests start when they do
// not choose one: WSBRIDGE_TEST_READ_MODE=poll runs the package's tests in
// poll mode (make test runs them in both modes).
var testReadMode = bridge.ReadMode(os.Getenv("WSBRIDGE_TEST_READ_MODE"))

// wait is how long a test waits for something that should happen at once:
// long enough never to fail on a loaded machine, short enough to turn a
// hang into a failure.
const wait = 10 * time.Second

// recorder is a bridge.Listener that keeps every event, so tests can find a
// client's fd (by the "id" query parameter it dialed with) and its close.
type recorder struct {
	mu       sync.Mutex
	cond     *sync.Cond
	opens    map[string]bridge.ConnInfo // by id
	closes   map[int64]bridge.CloseEvent
	messages map[int64][]string
	onMsg    func(fd int64, op bridge.Opcode, data []byte)
}

func newRecorder() *recorder {
	r := &recorder{opens: map[string]bridge.ConnInfo{}, closes: map[int64]bridge.CloseEvent{}, messages: map[int64][]string{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) OnOpen(info bridge.ConnInfo) {
	r.mu.Lock()
	r.opens[info.Query.Get("id")] = info
	r.cond.Broadcast()
	r.mu.Unlock()
}

func (r *recorder) OnMessage(fd int64, op bridge.Opcode, data []byte) {
	if r.onMsg != nil {
		r.onMsg(fd, op, data)
	}
	r.mu.Lock()
	r.messages[fd] = append(r.messages[fd], string(data))
	r.cond.Broadcast()
	r.mu.Unlock()
}

func (r *recorder) OnClose(fd int64, ev bridge.CloseEvent) {
	r.mu.Lock()
	r.closes[fd] = ev
	r.cond.Broadcast()
	r.mu.Unlock()
}

// waitFor blocks until cond (called with r.mu held) is true.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	stop := time.AfterFunc(wait, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer stop.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		r.cond.Wait()
	}
}

func (r *recorder) fdOf(t testing.TB, id string) int64 {
	t.Helper()
	var fd int64
	r.waitFor(t, "open of "+id, func() bool {
		info, ok := r.opens[id]
		fd = info.FD
		return ok
	})
	return fd
}

func (r *recorder) closeOf(t testing.TB, fd int64) bridge.CloseEvent {
	t.Helper()
	var ev bridge.CloseEvent
	r.waitFor(t, fmt.Sprintf("close of fd %d", fd), func() bool {
		e, ok := r.closes[fd]
		ev = e
		return ok
	})
	return ev
}

// testHub is a Hub served on a real loopback socket.
type testHub struct {
	*bridge.Hub
	rec *recorder
	srv *httptest.Server
	url string // ws://127.0.0.1:port/
}

// startHub serves a Hub with cfg (Listener set to a recorder) and shuts it
// down at the end of the test.
func startHub(t testing.TB, cfg bridge.Config) *testHub {
	t.Helper()
	return startHubOn(t, cfg, nil)
}

// startHubOn is startHub with the server's listener wrapped by wrap.
func startHubOn(t testing.TB, cfg bridge.Config, wrap func(net.Listener) net.Listener) *testHub {
	t.Helper()
	rec := newRecorder()
	cfg.Listener = rec
	h, srv := serve(t, cfg, wrap)
	return &testHub{Hub: h, rec: rec, srv: srv, url: "ws://" + srv.Listener.Addr().String()}
}

// serve serves a Hub with cfg as it is through Server() on a loopback
// socket (its listener wrapped by wrap, when set), and shuts both down at
// the end of the test.
func serve(t testing.TB, cfg bridge.Config, wrap func(net.Listener) net.Listener) (*bridge.Hub, *httptest.Server) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ReadMode == "" {
		cfg.ReadMode = testReadMode
	}
	h, err := bridge.New(cfg)
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.Server()
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return h, srv
}

// dial connects a gorilla client with ?id=id and returns it with its fd.
func (th *testHub) dial(t testing.TB, id string) (*websocket.Conn, int64) {
	t.Helper()
	return th.dialWith(t, &websocket.Dialer{HandshakeTimeout: wait}, id)
}

func (th *testHub) dialWith(t testing.TB, d *websocket.Dialer, id string) (*websocket.Conn, int64) {
	t.Helper()
	path := th.Config().Paths[0]
	c, resp, err := d.Dial(th.url+path+"?id="+id, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", id, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c, th.rec.fdOf(t, id)
}

// readText reads one message and fails unless it is want.
func readText(t testing.TB, c *websocket.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v (want %q)", err, want)
	}
	if string(data) != want {
		t.Fatalf("read %q, want %q", trunc(data), trunc([]byte(want)))
	}
}

func trunc(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%s... (%d bytes)", b[:64], len(b))
	}
	return string(b)
}

// rawConn is a WebSocket client written by hand, for what a well-behaved
// client library will not do: unmasked frames, garbage, half handshakes,
// and reading the frames themselves.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(wait))
	return &rawConn{Conn: nc, br: bufio.NewReader(nc)}
}

// handshake sends an upgrade request for path and checks for 101.
func (rc *rawConn) handshake(t testing.TB, path string) {
	t.Helper()
	fmt.Fprintf(rc, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
}

// writeFrame writes one client frame; masked frames use a fixed key.
func (rc *rawConn) writeFrame(t testing.TB, fin bool, op byte, payload []byte, masked bool) {
	t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, maskBit|byte(n))
	case n < 1<<16:
		hdr = append(hdr, maskBit|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, maskBit|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := append([]byte(nil), payload...)
	if masked {
		key := []byte{1, 2, 3, 4}
		hdr = append(hdr, key...)
		for i := range body {
			body[i] ^= key[i%4]
		}
	}
	if _, err := rc.Write(append(hdr, body...)); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

type rawFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads one server frame (server frames are never masked).
func (rc *rawConn) readFrame() (rawFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return rawFrame{}, err
	}
	if h[1]&0x80 != 0 {
		return rawFrame{}, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return rawFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return rawFrame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		return rawFrame{}, err
	}
	return rawFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, payload: p}, nil
}

// readCloseFrame reads frames until a close frame and returns its code.
func (rc *rawConn) readCloseFrame(t testing.TB) int {
	t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if f.op == 8 {
			if len(f.payload) < 2 {
				return websocket.CloseNoStatusReceived
			}
			return int(binary.BigEndian.Uint16(f.payload))
		}
	}
}

// expectEOF fails unless the server closes the TCP connection.
func (rc *rawConn) expectEOF(t testing.TB) {
	t.Helper()
	_, err := io.Copy(io.Discard, rc.br)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("want the server to close the connection, got %v", err)
	}
}

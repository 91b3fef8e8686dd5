package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

// stalledDialer makes a client whose socket buffers are tiny, so a client
// that never reads fills them after a few kilobytes.
var stalledDialer = &websocket.Dialer{
	HandshakeTimeout: wait,
	NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}).DialContext,
}

// fillUntilFull pushes to a client that never reads until the queue bound
// refuses a push, and returns how many pushes were accepted.
func fillUntilFull(t *testing.T, th *testHub, fd int64) int {
	t.Helper()
	msg := []byte(strings.Repeat("s", 16<<10))
	for i := 0; i < 100000; i++ {
		err := th.Push(fd, msg, bridge.OpText, true)
		if errors.Is(err, bridge.ErrQueueFull) {
			return i
		}
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	t.Fatal("a client that never reads never filled its queue")
	return 0
}

// The slow-client test: one client never reads; pushes to it hit
// the bound and the policy; 100 other clients keep receiving every push.
func TestSlowClientHitsTheBoundOthersKeepReceiving(t *testing.T) {
	for _, policy := range []bridge.OverflowPolicy{bridge.OverflowClose, bridge.OverflowDrop} {
		t.Run(string(policy), func(t *testing.T) {
			// The byte bound (16 messages of 16 KiB) stops the slow client;
			// the message bound is loose enough for healthy readers.
			th := startHub(t, bridge.Config{QueueSize: 1000, QueueBytes: 256 << 10, MaxPushSize: 16 << 10,
				Overflow: policy, WriteTimeout: time.Hour, Workers: 2})
			slow, slowFD := th.dialWith(t, stalledDialer, "slow")
			const others, rounds = 100, 20
			clients := make([]*websocket.Conn, others)
			fds := make([]int64, others)
			for i := range clients {
				clients[i], fds[i] = th.dial(t, fmt.Sprint(i))
			}
			var wg sync.WaitGroup
			errs := make(chan error, others)
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetReadDeadline(time.Now().Add(wait))
					for r := range rounds {
						_, data, err := c.ReadMessage()
						if want := fmt.Sprintf("%d/%d", i, r); err != nil || string(data) != want {
							errs <- fmt.Errorf("client %d: got %q, %v; want %q", i, data, err, want)
							return
						}
					}
				}()
			}
			accepted := 0
			for r := range rounds {
				for i, fd := range fds {
					if err := th.Push(fd, []byte(fmt.Sprintf("%d/%d", i, r)), bridge.OpText, true); err != nil {
						t.Fatalf("push to a healthy client: %v", err)
					}
				}
				if r == rounds/2 {
					accepted = fillUntilFull(t, th, slowFD)
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if accepted < 16 {
				t.Fatalf("only %d pushes accepted before the bound of 16", accepted)
			}
			switch policy {
			case bridge.OverflowClose:
				if th.Check(slowFD) {
					t.Fatal("close policy: the slow client is still open")
				}
				err := th.Push(slowFD, []byte("x"), bridge.OpText, true)
				if !errors.Is(err, bridge.ErrUnknownFD) {
					t.Fatalf("push after the overflow close = %v", err)
				}
				slow.Close() // the socket goes; the bridge finishes the connection
				if ev := th.rec.closeOf(t, slowFD); ev.Code != bridge.CloseSlowConsumer || !ev.ByServer {
					t.Fatalf("close event %+v, want %d by the server", ev, bridge.CloseSlowConsumer)
				}
			case bridge.OverflowDrop:
				if !th.Check(slowFD) {
					t.Fatal("drop policy: the slow client was closed")
				}
				var stats uint64
				for _, w := range th.Stats().Workers {
					stats += w.Overflows
				}
				if stats != 1 {
					t.Fatalf("overflows counted: %d, want 1", stats)
				}
				// Once it reads, it gets what was accepted, then newer pushes.
				for range accepted {
					readText(t, slow, strings.Repeat("s", 16<<10))
				}
				if err := th.Push(slowFD, []byte("later"), bridge.OpText, true); err != nil {
					t.Fatal(err)
				}
				readText(t, slow, "later")
			}
		})
	}
}

// TestShortWriteTimeoutKeepsHealthyClients: with a write timeout under the
// deadline slack, a push that comes after the previous write's deadline
// has passed still gets a deadline of its own (the socket's old one would
// fail it at once and close a healthy client).
func TestShortWriteTimeoutKeepsHealthyClients(t *testing.T) {
	th := startHub(t, bridge.Config{WriteTimeout: 200 * time.Millisecond})
	c, fd := th.dial(t, "a")
	for i := range 3 {
		if i > 0 {
			time.Sleep(400 * time.Millisecond) // past the last write's deadline
		}
		msg := fmt.Sprint("m", i)
		if err := th.Push(fd, []byte(msg), bridge.OpText, true); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		readText(t, c, msg)
	}
	if !th.Check(fd) {
		t.Error("the healthy client was closed")
	}
}

// A stalled client whose write times out is closed; others are unaffected.
func TestWriteTimeoutClosesStalledClient(t *testing.T) {
	th := startHub(t, bridge.Config{WriteTimeout: 100 * time.Millisecond, QueueSize: 1 << 16})
	_, slowFD := th.dialWith(t, stalledDialer, "slow")
	ok, okFD := th.dial(t, "ok")
	msg := []byte(strings.Repeat("s", 64<<10))
	for th.Check(slowFD) {
		if err := th.Push(slowFD, msg, bridge.OpBinary, true); err != nil && !bridge.IsNotDelivered(err) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	// The bridge ended it (no close frame could get through): 1006 by the
	// server, not by the client.
	if ev := th.rec.closeOf(t, slowFD); ev.Code != websocket.CloseAbnormalClosure || !ev.ByServer {
		t.Fatalf("stalled client's close event %+v, want 1006 by the server", ev)
	}
	if err := th.Push(okFD, []byte("fine"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, ok, "fine")
}

// hostileTests each misbehave on one connection; each must close only that
// connection, with the right close code where a close frame is due.
var hostileTests = []struct {
	name string
	// act misbehaves on a raw, upgraded connection and checks the reply.
	act func(t *testing.T, rc *rawConn)
}{
	{"oversized message", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 2, make([]byte, 2048), true)
		if code := rc.readCloseFrame(t); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	}},
	{"oversized fragmented message", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, false, 2, make([]byte, 500), true)
		for range 3 {
			rc.writeFrame(t, false, 0, make([]byte, 500), true)
		}
		if code := rc.readCloseFrame(t); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	}},
	{"invalid UTF-8 text", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 1, []byte{'o', 'k', 0xff, 0xfe}, true)
		if code := rc.readCloseFrame(t); code != websocket.CloseInvalidFramePayloadData {
			t.Fatalf("close code %d, want 1007", code)
		}
	}},
	{"unmasked frame", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 1, []byte("hello"), false)
		if code := rc.readCloseFrame(t); code != websocket.CloseProtocolError {
			t.Fatalf("close code %d, want 1002", code)
		}
	}},
	{"reserved opcode", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 3, []byte("x"), true)
		if code := rc.readCloseFrame(t); code != websocket.CloseProtocolError {
			t.Fatalf("close code %d, want 1002", code)
		}
	}},
	{"oversized ping", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 9, make([]byte, 200), true)
		if code := rc.readCloseFrame(t); code != websocket.CloseProtocolError {
			t.Fatalf("close code %d, want 1002", code)
		}
	}},
	{"continuation out of nowhere", func(t *testing.T, rc *rawConn) {
		rc.writeFrame(t, true, 0, []byte("x"), true)
		if code := rc.readCloseFrame(t); code != websocket.CloseProtocolError {
			t.Fatalf("close code %d, want 1002", code)
		}
	}},
	{"garbage after the handshake", func(t *testing.T, rc *rawConn) {
		rc.Write([]byte("\x00\x01\x02 this is not a frame at all \xff\xff\xff\xff\xff\xff\xff\xff"))
		rc.expectEOF(t)
	}},
	{"ping flood", func(t *testing.T, rc *rawConn) {
		for i := range 2000 {
			rc.writeFrame(t, true, 9, []byte(fmt.Sprint(i)), true)
		}
		rc.writeFrame(t, true, 8, []byte{0x03, 0xe8}, true)
		if code := rc.readCloseFrame(t); code != websocket.CloseNormalClosure {
			t.Fatalf("close code %d, want 1000", code)
		}
	}},
}

func TestHostileClientsCloseOnlyThemselves(t *testing.T) {
	// The raw clients never close: the bridge lingers CloseTimeout for them.
	th := startHub(t, bridge.Config{MaxMessageSize: 1024, CloseTimeout: 100 * time.Millisecond})
	good, goodFD := th.dial(t, "good")
	for i, tt := range hostileTests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, th.srv.Listener.Addr().String())
			id := fmt.Sprint("hostile", i)
			rc.handshake(t, "/?id="+id)
			fd := th.rec.fdOf(t, id)
			tt.act(t, rc)
			th.rec.closeOf(t, fd)
			if th.Check(fd) {
				t.Fatal("hostile connection still open")
			}
			msg := "still served after " + tt.name
			if err := th.Push(goodFD, []byte(msg), bridge.OpText, true); err != nil {
				t.Fatal(err)
			}
			readText(t, good, msg)
		})
	}
}

func TestHostileHandshakes(t *testing.T) {
	th := startHub(t, bridge.Config{HandshakeTimeout: time.Second})
	good, goodFD := th.dial(t, "good")
	addr := th.srv.Listener.Addr().String()
	t.Run("garbage instead of a handshake", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.Write([]byte("\x16\x03\x01\x02\x00 garbage garbage\r\n\r\n"))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("response %v, %v; want 400", resp, err)
		}
		rc.expectEOF(t)
	})
	t.Run("plain HTTP request", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("handshake that never completes", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")) // and nothing more
		rc.expectEOF(t)                                                         // the server's header timeout closes it
	})
	t.Run("oversized headers", func(t *testing.T) {
		rc := dialRaw(t, addr)
		fmt.Fprintf(rc, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 128<<10))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("response %v, %v; want 431", resp, err)
		}
	})
	t.Run("wrong websocket version", func(t *testing.T) {
		rc := dialRaw(t, addr)
		fmt.Fprintf(rc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("response %v, %v; want 400", resp, err)
		}
	})
	if th.Count() != 1 {
		t.Fatalf("%d connections, want only the good one", th.Count())
	}
	if err := th.Push(goodFD, []byte("fine"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, good, "fine")
}

func TestPingsKeepLiveClientsAndCloseDeadOnes(t *testing.T) {
	// The pong timeout is long enough for a live client on a loaded machine;
	// the dead client hits it anyway.
	th := startHub(t, bridge.Config{PingInterval: 50 * time.Millisecond, PongTimeout: 2 * time.Second})
	live, liveFD := th.dial(t, "live")
	// The live client answers pings from the start.
	pings := make(chan struct{}, 1000)
	live.SetPingHandler(func(p string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return live.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(wait))
	})
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				return
			}
		}
	}()
	dead := dialRaw(t, th.srv.Listener.Addr().String())
	dead.handshake(t, "/?id=dead") // never answers a ping
	deadFD := th.rec.fdOf(t, "dead")

	if ev := th.rec.closeOf(t, deadFD); ev.Code != websocket.CloseAbnormalClosure || !ev.ByServer {
		t.Fatalf("dead client's close event %+v, want 1006 by the server", ev)
	}
	// The live client answered every ping meanwhile and is still open.
	if len(pings) < 2 {
		t.Fatalf("live client saw %d pings while the dead one timed out", len(pings))
	}
	if !th.Check(liveFD) {
		t.Fatal("live client closed")
	}
	if f, err := dead.readFrame(); err != nil || f.op != 9 {
		t.Fatalf("the dead client was not pinged first: %+v, %v", f, err)
	}
}

func TestPanicInConnectionCodeClosesOnlyThatConnection(t *testing.T) {
	th := startHub(t, bridge.Config{})
	th.rec.onMsg = func(fd int64, op bridge.Opcode, data []byte) {
		if string(data) == "boom" {
			panic("listener exploded")
		}
	}
	bad, badFD := th.dial(t, "bad")
	good, goodFD := th.dial(t, "good")
	if err := bad.WriteMessage(websocket.TextMessage, []byte("boom")); err != nil {
		t.Fatal(err)
	}
	if ce := testutil.ReadClose(t, bad, wait); ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("close code %d, want 1011", ce.Code)
	}
	th.rec.closeOf(t, badFD)
	if err := good.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	th.rec.waitFor(t, "good's message", func() bool { return len(th.rec.messages[goodFD]) == 1 })
	if err := th.Push(goodFD, []byte("fine"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, good, "fine")
}

func TestFDsUniqueIncreasingNeverReused(t *testing.T) {
	for _, node := range []int{0, 5, bridge.MaxNodeID} {
		t.Run(fmt.Sprint("node ", node), func(t *testing.T) {
			// The default sequence starts at the clock: every fd of this
			// run is above the clock's reading before the hub started.
			floor := bridge.ClockUnits(time.Now())
			th := startHub(t, bridge.Config{NodeID: node})
			const cycles, dialers = 1200, 4
			var mu sync.Mutex
			seen := map[int64]bool{}
			var wg sync.WaitGroup
			for d := range dialers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					last := int64(0)
					for i := range cycles / dialers {
						id := fmt.Sprintf("%d-%d", d, i)
						c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id="+id, nil)
						if err != nil {
							t.Error(err)
							return
						}
						fd := th.rec.fdOf(t, id)
						c.Close()
						if fd <= last {
							t.Errorf("fd %d after %d: not increasing", fd, last)
						}
						last = fd
						mu.Lock()
						if seen[fd] {
							t.Errorf("fd %d handed out twice", fd)
						}
						seen[fd] = true
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			base := int64(node) << bridge.SeqBits
			high := int64(0)
			for fd := range seen {
				if bridge.NodeOf(fd) != node || fd < base+floor || fd > bridge.MaxFD {
					t.Fatalf("fd %d outside node %d's range (from %d)", fd, node, base+floor)
				}
				high = max(high, fd)
			}
			// A restart of the node (a new hub, the old one shut down, so
			// settled) hands out fds above every fd of the first run.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := th.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			again := startHub(t, bridge.Config{NodeID: node})
			c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(again.url+"/?id=after", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if fd := again.rec.fdOf(t, "after"); fd <= high {
				t.Fatalf("after a restart: fd %d, not above the first run's %d", fd, high)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		cfg  bridge.Config
		want string
	}{
		{bridge.Config{NodeID: 1024}, "node id"},
		{bridge.Config{NodeID: -1}, "node id"},
		{bridge.Config{Paths: []string{"/", "ws"}}, "path"},
		{bridge.Config{Workers: -1}, "workers"},
		{bridge.Config{QueueBytes: 10, MaxPushSize: 100}, "queue bytes"},
		{bridge.Config{FragmentSize: 10}, "fragment size"},
		{bridge.Config{Overflow: "sometimes"}, "overflow policy"},
		{bridge.Config{WriteTimeout: -time.Second}, "write timeout"},
		{bridge.Config{MaxQueuedBytes: 1 << 20}, "max queued bytes"},
		{bridge.Config{FragmentTimeout: -time.Second}, "fragment timeout"},
		{bridge.Config{ReadMode: "epoll"}, "read mode"},
		{bridge.Config{ReadMode: bridge.ReadModePoll, PollWorkers: -1}, "poll workers"},
		{bridge.Config{ReadMode: bridge.ReadModePoll, PollReadTimeout: -time.Second}, "poll read timeout"},
		{bridge.Config{ReadMode: bridge.ReadModePoll, PingInterval: time.Second, PongTimeout: time.Second, PollReadTimeout: 3 * time.Second}, "poll read timeout"},
	} {
		_, err := bridge.New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tt.cfg, err, tt.want)
		}
	}
}

// FuzzPush drives arbitrary pushes and disconnects at a live connection:
// every call returns nil or one of the documented errors, never panics, and
// the connection keeps serving a final push unless a call closed it.
func FuzzPush(f *testing.F) {
	f.Add(int64(1), []byte("hello"), 1, true, 0, "")
	f.Add(int64(1), []byte{0xff}, 1, true, 0, "")
	f.Add(int64(1), []byte("frag"), 2, false, 0, "")
	f.Add(int64(1), []byte("x"), 0, true, 1000, "bye")
	f.Add(int64(-1), []byte("x"), 9, true, 1005, "")
	f.Add(int64(1<<53), make([]byte, 200), 10, false, 3000, "\xff")
	th := startHub(f, bridge.Config{MaxPushSize: 1 << 16, QueueBytes: 1 << 20, QueueSize: 1 << 20})
	known := []error{bridge.ErrUnknownFD, bridge.ErrInvalidFD, bridge.ErrTooLarge, bridge.ErrInvalidOpcode,
		bridge.ErrInvalidCloseCode, bridge.ErrQueueFull, bridge.ErrInvalidUTF8}
	f.Fuzz(func(t *testing.T, fd int64, data []byte, op int, finish bool, code int, reason string) {
		c, real := th.dial(t, fmt.Sprint(time.Now().UnixNano()))
		if fd == 1 {
			fd = real
		}
		check := func(what string, err error) {
			if err == nil {
				return
			}
			for _, k := range known {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("%s: undocumented error %v", what, err)
		}
		check("Push", th.Push(fd, data, bridge.Opcode(op), finish))
		check("Disconnect", th.Disconnect(fd, code, reason))
		c.Close()
	})
}

// openStacks is a recorder that also keeps the stack of the goroutine each
// open event was delivered on.
type openStacks struct {
	*recorder
	mu     sync.Mutex
	stacks []string
}

func (o *openStacks) OnOpen(info bridge.ConnInfo) {
	o.mu.Lock()
	o.stacks = append(o.stacks, string(debug.Stack()))
	o.mu.Unlock()
	o.recorder.OnOpen(info)
}

// TestOpenEventNotOnTheReader: the open event is delivered before the
// connection's reader goroutine starts, not on it. A Listener's OnOpen
// (the events dispatcher, the cluster's fd tracker) is deep: on the
// reader it grew every idle reader's stack to 4 KiB for good (8.9 KiB of
// RSS per idle connection with events on, docs/BENCHMARKS.md), where a
// fresh reader that only waits keeps 2 KiB. The order of the events
// stays: the open event before any message of the connection.
func TestOpenEventNotOnTheReader(t *testing.T) {
	l := &openStacks{recorder: newRecorder()}
	h, srv := serve(t, bridge.Config{Listener: l}, nil)
	th := &testHub{Hub: h, rec: l.recorder, srv: srv, url: "ws://" + srv.Listener.Addr().String()}
	c, fd := th.dial(t, "a")
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	th.rec.waitFor(t, "the message", func() bool { return len(th.rec.messages[fd]) == 1 })
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.stacks) != 1 {
		t.Fatalf("%d open events, want 1", len(l.stacks))
	}
	if strings.Contains(l.stacks[0], "bridge.(*conn).run(") {
		t.Errorf("the open event was delivered on the reader goroutine:\n%s", l.stacks[0])
	}
}

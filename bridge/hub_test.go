package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

func TestPushReachesExactlyTheAddressedClient(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 4})
	const n = 64
	clients := make([]*websocket.Conn, n)
	fds := make([]int64, n)
	for i := range clients {
		clients[i], fds[i] = th.dial(t, fmt.Sprint(i))
	}
	workers := map[int]bool{}
	for _, fd := range fds {
		info, ok := th.Info(fd)
		if !ok {
			t.Fatalf("Info(%d): not found", fd)
		}
		workers[info.Worker] = true
	}
	if len(workers) != 4 {
		t.Fatalf("clients spread over %d workers, want 4", len(workers))
	}
	// Each client gets its own messages, in order, and nobody else's: a
	// stray message would show up before the client's own "end".
	for round := range 3 {
		for i, fd := range fds {
			if err := th.Push(fd, []byte(fmt.Sprintf("to %d round %d", i, round)), bridge.OpText, true); err != nil {
				t.Fatalf("Push(%d): %v", fd, err)
			}
		}
	}
	for _, fd := range fds {
		if err := th.Push(fd, []byte("end"), bridge.OpText, true); err != nil {
			t.Fatalf("Push(%d): %v", fd, err)
		}
	}
	for i, c := range clients {
		for round := range 3 {
			readText(t, c, fmt.Sprintf("to %d round %d", i, round))
		}
		readText(t, c, "end")
	}
}

func TestPushBinaryEveryByteValue(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	data := make([]byte, 256*4)
	for i := range data {
		data[i] = byte(i)
	}
	if err := th.Push(fd, data, bridge.OpBinary, true); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	mt, got, err := c.ReadMessage()
	if err != nil || mt != websocket.BinaryMessage || !bytes.Equal(got, data) {
		t.Fatalf("got type %d, %d bytes, err %v; want the %d bytes pushed as binary", mt, len(got), err, len(data))
	}
}

var pushErrorTests = []struct {
	name   string
	fd     int64 // 0: the live client's fd
	data   []byte
	op     bridge.Opcode
	finish bool
	want   error
}{
	{"unknown fd", 999999, []byte("x"), bridge.OpText, true, bridge.ErrUnknownFD},
	{"fd of another node", 3<<bridge.SeqBits | 1, []byte("x"), bridge.OpText, true, bridge.ErrUnknownFD},
	{"zero fd", -1, []byte("x"), bridge.OpText, true, bridge.ErrInvalidFD},
	{"negative fd", -5, []byte("x"), bridge.OpText, true, bridge.ErrInvalidFD},
	{"fd past 2^53", 1 << 53, []byte("x"), bridge.OpText, true, bridge.ErrInvalidFD},
	{"oversized push", 0, make([]byte, 1025), bridge.OpBinary, true, bridge.ErrTooLarge},
	{"close opcode", 0, []byte("x"), 8, true, bridge.ErrInvalidOpcode},
	{"reserved opcode", 0, []byte("x"), 3, true, bridge.ErrInvalidOpcode},
	{"negative opcode", 0, []byte("x"), -1, true, bridge.ErrInvalidOpcode},
	{"continuation without a message", 0, []byte("x"), bridge.OpContinuation, true, bridge.ErrInvalidOpcode},
	{"ping over 125 bytes", 0, make([]byte, 126), bridge.OpPing, true, bridge.ErrTooLarge},
	{"fragmented ping", 0, nil, bridge.OpPing, false, bridge.ErrInvalidOpcode},
	{"invalid UTF-8 text", 0, []byte{0xff, 0xfe}, bridge.OpText, true, bridge.ErrInvalidUTF8},
}

func TestPushErrors(t *testing.T) {
	th := startHub(t, bridge.Config{MaxPushSize: 1024, QueueBytes: 1024})
	c, fd := th.dial(t, "a")
	for _, tt := range pushErrorTests {
		target := tt.fd
		switch target {
		case 0:
			target = fd
		case -1:
			target = 0
		}
		err := th.Push(target, tt.data, tt.op, tt.finish)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Push(%d, %d bytes, %d, %v) = %v, want %v", tt.name, target, len(tt.data), tt.op, tt.finish, err, tt.want)
		}
	}
	// None of the refused pushes reached the client or closed it.
	if err := th.Push(fd, []byte("still here"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "still here")
}

func TestPushToClosedFD(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	c.Close()
	th.rec.closeOf(t, fd)
	if th.Check(fd) {
		t.Fatal("Check = true for a closed fd")
	}
	err := th.Push(fd, []byte("x"), bridge.OpText, true)
	if !errors.Is(err, bridge.ErrUnknownFD) || !bridge.IsNotDelivered(err) {
		t.Fatalf("Push to closed fd = %v, want ErrUnknownFD", err)
	}
	if err := th.Disconnect(fd, 1000, ""); !errors.Is(err, bridge.ErrUnknownFD) {
		t.Fatalf("Disconnect closed fd = %v, want ErrUnknownFD", err)
	}
}

func TestFragmentedPushArrivesAsOneMessage(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	steps := []struct {
		data   string
		op     bridge.Opcode
		finish bool
	}{{"hel", bridge.OpText, false}, {"lo ", bridge.OpContinuation, false}, {"wor", bridge.OpText, false}, {"ld", bridge.OpContinuation, true}}
	for i, s := range steps {
		if err := th.Push(fd, []byte(s.data), s.op, s.finish); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i == 1 {
			// A broadcast in the middle waits for the message to finish.
			if n, err := th.Broadcast([]byte("after"), bridge.OpText, nil); err != nil || n != 1 {
				t.Fatalf("Broadcast = %d, %v", n, err)
			}
		}
	}
	readText(t, c, "hello world")
	readText(t, c, "after")
}

func TestLargeMessagesAreFragmentedOnTheWire(t *testing.T) {
	const frag = 1000
	th := startHub(t, bridge.Config{FragmentSize: frag})
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=raw")
	fd := th.rec.fdOf(t, "raw")

	msg := bytes.Repeat([]byte("0123456789"), 350) // 3500 bytes: 4 frames
	if err := th.Push(fd, msg, bridge.OpBinary, true); err != nil {
		t.Fatal(err)
	}
	small := []byte("small")
	if err := th.Push(fd, small, bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var frames []rawFrame
	for {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
		got = append(got, f.payload...)
		if len(f.payload) > frag {
			t.Fatalf("frame of %d bytes, fragment size is %d", len(f.payload), frag)
		}
		if f.fin {
			break
		}
	}
	if len(frames) != 4 || frames[0].op != 2 || frames[1].op != 0 || !bytes.Equal(got, msg) {
		t.Fatalf("got %d frames (first opcode %d), %d bytes; want 4 frames starting with binary, carrying the message", len(frames), frames[0].op, len(got))
	}
	f, err := rc.readFrame()
	if err != nil || !f.fin || f.op != 1 || string(f.payload) != "small" {
		t.Fatalf("small message: %+v, %v; want one final text frame", f, err)
	}
}

func TestPushPingReachesClient(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	pinged := make(chan string, 1)
	c.SetPingHandler(func(p string) error { pinged <- p; return nil })
	if err := th.Push(fd, []byte("are you there"), bridge.OpPing, true); err != nil {
		t.Fatal(err)
	}
	if err := th.Push(fd, []byte("then this"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "then this") // the ping was handled while reading
	if p := <-pinged; p != "are you there" {
		t.Fatalf("ping payload %q", p)
	}
}

func TestBroadcastExcept(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 3})
	const n = 10
	clients := make([]*websocket.Conn, n)
	fds := make([]int64, n)
	for i := range clients {
		clients[i], fds[i] = th.dial(t, fmt.Sprint(i))
	}
	got, err := th.Broadcast([]byte("all but two"), bridge.OpText, []int64{fds[2], fds[7]})
	if err != nil || got != n-2 {
		t.Fatalf("Broadcast = %d, %v; want %d", got, err, n-2)
	}
	for i, fd := range fds {
		if err := th.Push(fd, []byte("direct"), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
		if i != 2 && i != 7 {
			readText(t, clients[i], "all but two")
		}
		readText(t, clients[i], "direct")
	}
	if _, err := th.Broadcast([]byte("x"), bridge.OpPing, nil); !errors.Is(err, bridge.ErrInvalidOpcode) {
		t.Fatalf("broadcast ping: %v", err)
	}
	if _, err := th.Broadcast([]byte{0xc3}, bridge.OpText, nil); !errors.Is(err, bridge.ErrInvalidUTF8) {
		t.Fatalf("broadcast invalid UTF-8: %v", err)
	}
}

func TestDisconnectAfterQueuedPushes(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	for i := range 5 {
		if err := th.Push(fd, []byte(fmt.Sprint(i)), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.Disconnect(fd, 4000, "bye"); err != nil {
		t.Fatal(err)
	}
	if th.Check(fd) {
		t.Fatal("Check = true after Disconnect")
	}
	if err := th.Push(fd, []byte("late"), bridge.OpText, true); !errors.Is(err, bridge.ErrUnknownFD) {
		t.Fatalf("push after Disconnect = %v", err)
	}
	for i := range 5 {
		readText(t, c, fmt.Sprint(i))
	}
	ce := testutil.ReadClose(t, c, wait)
	if ce.Code != 4000 || ce.Text != "bye" {
		t.Fatalf("close %d %q, want 4000 bye", ce.Code, ce.Text)
	}
	ev := th.rec.closeOf(t, fd)
	if ev != (bridge.CloseEvent{Code: 4000, Reason: "bye", ByServer: true}) {
		t.Fatalf("close event %+v", ev)
	}
}

func TestDisconnectErrors(t *testing.T) {
	th := startHub(t, bridge.Config{})
	_, fd := th.dial(t, "a")
	for _, tt := range []struct {
		code   int
		reason string
		want   error
	}{
		{1005, "", bridge.ErrInvalidCloseCode},
		{1006, "", bridge.ErrInvalidCloseCode},
		{999, "", bridge.ErrInvalidCloseCode},
		{5000, "", bridge.ErrInvalidCloseCode},
		{1000, strings.Repeat("x", 124), bridge.ErrTooLarge},
		{1000, "\xff", bridge.ErrInvalidUTF8},
	} {
		if err := th.Disconnect(fd, tt.code, tt.reason); !errors.Is(err, tt.want) {
			t.Errorf("Disconnect(%d, %q) = %v, want %v", tt.code, tt.reason, err, tt.want)
		}
	}
	if !th.Check(fd) {
		t.Fatal("a refused Disconnect closed the connection")
	}
	if err := th.Disconnect(0, 1000, ""); !errors.Is(err, bridge.ErrInvalidFD) {
		t.Fatalf("Disconnect(0) = %v", err)
	}
}

func TestClientCloseIsReported(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "leaving"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if ce := testutil.ReadClose(t, c, wait); ce.Code != 4001 {
		t.Fatalf("echoed close %d, want 4001", ce.Code)
	}
	if ev := th.rec.closeOf(t, fd); ev != (bridge.CloseEvent{Code: 4001, Reason: "leaving"}) {
		t.Fatalf("close event %+v", ev)
	}
}

func TestMessagesAreDeliveredInOrder(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	for i := range 50 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	th.rec.waitFor(t, "50 messages", func() bool { return len(th.rec.messages[fd]) == 50 })
	th.rec.mu.Lock()
	defer th.rec.mu.Unlock()
	for i, m := range th.rec.messages[fd] {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m)
		}
	}
}

func TestInfoKeepsTheHandshake(t *testing.T) {
	th := startHub(t, bridge.Config{Paths: []string{"/ws"}, Subprotocols: []string{"chat.v2", "chat.v1"}})
	d := &websocket.Dialer{HandshakeTimeout: wait, Subprotocols: []string{"chat.v1"}}
	h := http.Header{"X-Token": {"secret-1"}}
	c, _, err := d.Dial(th.url+"/ws?id=a&room=lobby", h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := th.rec.fdOf(t, "a")
	info, ok := th.Info(fd)
	if !ok {
		t.Fatal("Info: not found")
	}
	if info.FD != fd || info.Path != "/ws" || info.Query.Get("room") != "lobby" || info.Header.Get("X-Token") != "secret-1" ||
		info.Subprotocol != "chat.v1" || !strings.HasPrefix(info.RemoteAddr, "127.0.0.1:") || info.ConnectedAt.IsZero() {
		t.Fatalf("info %+v", info)
	}
	if _, resp, err := d.Dial(th.url+"/other", nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dial on another path: %v", err)
	}
}

func TestOriginCheck(t *testing.T) {
	for _, tt := range []struct {
		allowed []string
		origin  string
		ok      bool
	}{
		{nil, "", true},
		{nil, "http://HOST", true}, // same host as the request
		{nil, "http://evil.example", false},
		{[]string{"https://*.example.com"}, "https://app.example.com", true},
		{[]string{"https://*.example.com"}, "http://app.example.com", false},
		{[]string{"https://*.example.com"}, "https://example.org", false},
		{[]string{"*"}, "http://anything.test", true},
		{[]string{"https://a.test"}, "::not a url", false},
	} {
		th := startHub(t, bridge.Config{AllowedOrigins: tt.allowed})
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", strings.Replace(tt.origin, "HOST", th.srv.Listener.Addr().String(), 1))
		}
		c, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=x", h)
		if tt.ok && err != nil {
			t.Errorf("allowed %v, origin %q: refused: %v", tt.allowed, tt.origin, err)
		}
		if !tt.ok && (err == nil || resp.StatusCode != http.StatusForbidden) {
			t.Errorf("allowed %v, origin %q: want 403, got %v", tt.allowed, tt.origin, err)
		}
		if c != nil {
			c.Close()
		}
	}
}

func TestConnectionCap(t *testing.T) {
	th := startHub(t, bridge.Config{MaxConnections: 3})
	var clients []*websocket.Conn
	for i := range 3 {
		c, _ := th.dial(t, fmt.Sprint(i))
		clients = append(clients, c)
	}
	_, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=over", nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fourth connection: %v, want HTTP 503", err)
	}
	// A slot frees when a connection ends.
	clients[0].Close()
	th.rec.closeOf(t, th.rec.fdOf(t, "0"))
	// The slot is released just after the close event.
	deadline := time.Now().Add(wait)
	for th.Count() >= 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections after one of 3 closed", th.Count())
		}
		time.Sleep(time.Millisecond)
	}
	th.dial(t, "again")
}

func TestShutdownFlushesAndSendsGoingAway(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c1, fd1 := th.dial(t, "1")
	c2, _ := th.dial(t, "2")
	for i := range 100 {
		if err := th.Push(fd1, []byte(fmt.Sprint(i)), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- th.Shutdown(ctx)
	}()
	for i := range 100 {
		readText(t, c1, fmt.Sprint(i))
	}
	for _, c := range []*websocket.Conn{c1, c2} {
		if ce := testutil.ReadClose(t, c, wait); ce.Code != websocket.CloseGoingAway {
			t.Fatalf("close code %d, want 1001", ce.Code)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := th.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=late", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Shutdown: %v, want 503", err)
	}
	if _, err := th.Broadcast([]byte("x"), bridge.OpText, nil); !errors.Is(err, bridge.ErrHubClosed) {
		t.Fatalf("Broadcast after Shutdown = %v", err)
	}
}

func TestShutdownDeadlineClosesStalledClients(t *testing.T) {
	th := startHub(t, bridge.Config{CloseTimeout: time.Hour})
	c, _ := th.dial(t, "a") // never reads, so never answers the close
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := th.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if th.Count() != 0 {
		t.Fatalf("%d connections left after a forced shutdown", th.Count())
	}
	_ = c
}

func TestCompression(t *testing.T) {
	th := startHub(t, bridge.Config{Compression: true})
	c, fd := th.dialWith(t, &websocket.Dialer{HandshakeTimeout: wait, EnableCompression: true}, "a")
	msg := strings.Repeat("compressible ", 10000)
	if err := th.Push(fd, []byte(msg), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	if _, err := th.Broadcast([]byte(msg+"!"), bridge.OpText, nil); err != nil {
		t.Fatal(err)
	}
	readText(t, c, msg)
	readText(t, c, msg+"!")
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	th.rec.waitFor(t, "compressed message", func() bool { return len(th.rec.messages[fd]) == 1 && th.rec.messages[fd][0] == msg })
}

func TestConcurrentPushersKeepEachMessageWhole(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 10000})
	c, fd := th.dial(t, "a")
	const pushers, each = 8, 100
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := th.Push(fd, []byte(fmt.Sprintf("%d:%d:%s", p, i, strings.Repeat("x", 3000))), bridge.OpText, true); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, pushers)
	c.SetReadDeadline(time.Now().Add(wait))
	for range pushers * each {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var p, i int
		var rest string
		if _, err := fmt.Sscanf(string(data), "%d:%d:%s", &p, &i, &rest); err != nil || len(rest) != 3000 {
			t.Fatalf("mangled message %q", trunc(data))
		}
		if i != next[p] {
			t.Fatalf("pusher %d: message %d arrived, want %d (order per pusher is kept)", p, i, next[p])
		}
		next[p]++
	}
	wg.Wait()
}

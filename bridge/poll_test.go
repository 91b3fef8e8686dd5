//go:build linux

package bridge_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// The poll mode's own cases. Everything else (close, pings, rates,
// compression, oversized messages, hostile input) is the package's whole
// suite run in poll mode (WSBRIDGE_TEST_READ_MODE=poll, make test).

func pollConfig(cfg bridge.Config) bridge.Config {
	cfg.ReadMode = bridge.ReadModePoll
	return cfg
}

// maskedFrame encodes one client frame (masked with a fixed key).
func maskedFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	key := []byte{1, 2, 3, 4}
	f = append(f, key...)
	for i, c := range payload {
		f = append(f, c^key[i%4])
	}
	return f
}

// waitPoll waits until the poll counters satisfy cond.
func (th *testHub) waitPoll(t testing.TB, what string, cond func(bridge.PollStats) bool) bridge.PollStats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := th.Stats().Poll
		if s == nil {
			t.Fatal("no poll stats: the hub is not in poll mode")
		}
		if cond(*s) {
			return *s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, *s)
		}
		time.Sleep(time.Millisecond)
	}
}

func (th *testHub) waitParked(t testing.TB, n int64) {
	t.Helper()
	th.waitPoll(t, fmt.Sprintf("%d parked", n), func(s bridge.PollStats) bool { return s.Parked == n && s.Busy == 0 })
}

func (r *recorder) waitMessages(t testing.TB, fd int64, n int) []string {
	t.Helper()
	var got []string
	r.waitFor(t, fmt.Sprintf("%d messages from fd %d", n, fd), func() bool {
		got = append([]string(nil), r.messages[fd]...)
		return len(got) >= n
	})
	return got
}

// Several messages in one segment: gorilla's buffer holds the next ones
// when the first ends, and the socket is empty. They are read before the
// connection is parked again, or they would wait for bytes that never come.
func TestPollReadsWhatGorillaBufferedBeforeParking(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{}))
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=a")
	fd := th.rec.fdOf(t, "a")
	th.waitParked(t, 1)

	var seg []byte
	for i := range 5 {
		seg = append(seg, maskedFrame(true, websocket.TextMessage, fmt.Appendf(nil, "m%d", i))...)
	}
	if _, err := rc.Write(seg); err != nil {
		t.Fatal(err)
	}
	got := th.rec.waitMessages(t, fd, 5)
	for i, m := range got {
		if want := fmt.Sprintf("m%d", i); m != want {
			t.Fatalf("message %d is %q, want %q", i, m, want)
		}
	}
	th.waitParked(t, 1)
	if s := th.Stats().Poll; s.Wakeups == 0 {
		t.Fatalf("no wakeup counted: %+v", *s)
	}
}

// Half of a frame too large to wait for (over 8 KiB) holds a pool
// goroutine for PollReadTimeout, no longer: the connection is closed with
// 1008, counted, and the others are read again.
func TestPollHalfALargeFrameIsClosedAfterTheReadTimeout(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1, PollReadTimeout: 200 * time.Millisecond}))
	addr := th.srv.Listener.Addr().String()
	half := dialRaw(t, addr)
	half.handshake(t, "/?id=half")
	halfFD := th.rec.fdOf(t, "half")
	other, otherFD := th.dial(t, "other")
	th.waitParked(t, 2)

	f := maskedFrame(true, websocket.TextMessage, bytes.Repeat([]byte("x"), 10000))
	if _, err := half.Write(f[:5000]); err != nil {
		t.Fatal(err)
	}
	th.waitPoll(t, "the pool reading the large frame", func(s bridge.PollStats) bool { return s.Busy == 1 })
	if err := other.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := th.rec.waitMessages(t, otherFD, 1); got[0] != "hello" {
		t.Fatalf("other got %q", got)
	}
	ev := th.rec.closeOf(t, halfFD)
	if ev.Code != websocket.ClosePolicyViolation || ev.Reason != "message not received in time" || !ev.ByServer {
		t.Fatalf("close event %+v, want 1008 \"message not received in time\" by the server", ev)
	}
	if code := half.readCloseFrame(t); code != websocket.ClosePolicyViolation {
		t.Fatalf("close frame %d, want 1008", code)
	}
	if s := th.Stats().Poll; s.ReadTimeouts != 1 {
		t.Fatalf("read timeouts %d, want 1", s.ReadTimeouts)
	}
	th.rec.mu.Lock()
	defer th.rec.mu.Unlock()
	if len(th.rec.messages[halfFD]) != 0 {
		t.Fatal("half a frame was delivered")
	}
}

// Half of a small message holds no pool goroutine: the connection waits in
// the epoll set until the rest arrives (SO_RCVLOWAT), while the only pool
// goroutine serves the others; the rest, much later than
// PollReadTimeout, completes it.
func TestPollHalfASmallMessageWaitsInTheEpollSet(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1, PollReadTimeout: 50 * time.Millisecond}))
	half := dialRaw(t, th.srv.Listener.Addr().String())
	half.handshake(t, "/?id=half")
	halfFD := th.rec.fdOf(t, "half")
	other, otherFD := th.dial(t, "other")
	th.waitParked(t, 2)

	f := maskedFrame(true, websocket.TextMessage, bytes.Repeat([]byte("y"), 3000))
	if _, err := half.Write(f[:1500]); err != nil {
		t.Fatal(err)
	}
	th.waitPoll(t, "the half message waiting, parked", func(s bridge.PollStats) bool {
		return s.PartialWaits >= 1 && s.Parked == 2 && s.Busy == 0
	})
	for i := range 3 { // the pool serves the other meanwhile, over PollReadTimeout
		msg := fmt.Sprint("m", i)
		if err := other.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		th.rec.waitMessages(t, otherFD, i+1)
		time.Sleep(30 * time.Millisecond) // the half message stays half meanwhile
	}
	if _, err := half.Write(f[1500:]); err != nil {
		t.Fatal(err)
	}
	if got := th.rec.waitMessages(t, halfFD, 1); got[0] != string(bytes.Repeat([]byte("y"), 3000)) {
		t.Fatalf("got %q", trunc([]byte(got[0])))
	}
	if s := th.Stats().Poll; s.ReadTimeouts != 0 || !th.Check(halfFD) {
		t.Fatalf("poll stats %+v, open %v: want no read timeout, the connection open", *s, th.Check(halfFD))
	}
}

// A client's ping alone is answered and leaves no pool goroutine waiting
// for a next frame (gorilla would, inside NextReader).
func TestPollClientPingHoldsNoPoolGoroutine(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1}))
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=p")
	th.rec.fdOf(t, "p")
	th.waitParked(t, 1)
	if _, err := rc.Write(maskedFrame(true, websocket.PingMessage, []byte("are you there"))); err != nil {
		t.Fatal(err)
	}
	if fr, err := rc.readFrame(); err != nil || fr.op != websocket.PongMessage || string(fr.payload) != "are you there" {
		t.Fatalf("pong: %+v, %v", fr, err)
	}
	th.waitPoll(t, "parked again, the pool idle", func(s bridge.PollStats) bool { return s.Parked == 1 && s.Busy == 0 && s.Wakeups >= 1 })
	// Two pings in one segment: the second is in gorilla's buffer... or the
	// socket; both are answered.
	seg := append(maskedFrame(true, websocket.PingMessage, []byte("a")), maskedFrame(true, websocket.PingMessage, []byte("b"))...)
	if _, err := rc.Write(seg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b"} {
		if fr, err := rc.readFrame(); err != nil || fr.op != websocket.PongMessage || string(fr.payload) != want {
			t.Fatalf("pong %q: %+v, %v", want, fr, err)
		}
	}
	th.waitPoll(t, "parked again, the pool idle", func(s bridge.PollStats) bool { return s.Parked == 1 && s.Busy == 0 })
}

// A message that arrives in pieces waits in the epoll set until its frame
// is whole (small ones); a fragmented one's later frames and a large frame
// are read as they come, within the bound.
func TestPollSlowMessagesWithinTheBound(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1, PollReadTimeout: wait}))
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=slow")
	fd := th.rec.fdOf(t, "slow")
	th.waitParked(t, 1)

	waits := func(n uint64) {
		th.waitPoll(t, fmt.Sprintf("%d partial waits", n), func(s bridge.PollStats) bool { return s.PartialWaits == n && s.Parked == 1 })
	}
	f := maskedFrame(true, websocket.TextMessage, bytes.Repeat([]byte("x"), 300))
	pieces := [][]byte{f[:1], f[1:2], f[2:100], f[100:]} // each tells how many bytes are missing
	for i, piece := range pieces {
		if _, err := rc.Write(piece); err != nil {
			t.Fatal(err)
		}
		if i < len(pieces)-1 {
			waits(uint64(i + 1)) // parked in the middle of the frame
		}
	}
	if got := th.rec.waitMessages(t, fd, 1); got[0] != string(bytes.Repeat([]byte("x"), 300)) {
		t.Fatalf("got %q", got[0])
	}
	th.waitParked(t, 1)

	// A fragmented message's later frames are read as they come.
	if _, err := rc.Write(maskedFrame(false, websocket.TextMessage, []byte("frag"))); err != nil {
		t.Fatal(err)
	}
	busy := func() {
		th.waitPoll(t, "the pool reading", func(s bridge.PollStats) bool { return s.Busy == 1 })
	}
	busy()
	if _, err := rc.Write(maskedFrame(true, websocket.PingMessage, []byte("p"))); err != nil { // a control frame between fragments
		t.Fatal(err)
	}
	busy()
	if _, err := rc.Write(maskedFrame(true, 0, []byte("ments"))); err != nil {
		t.Fatal(err)
	}
	if got := th.rec.waitMessages(t, fd, 2); got[1] != "fragments" {
		t.Fatalf("got %q", got[1])
	}
	if fr, err := rc.readFrame(); err != nil || fr.op != websocket.PongMessage || string(fr.payload) != "p" {
		t.Fatalf("pong: %+v, %v", fr, err)
	}
	th.waitParked(t, 1)

	// A message larger than the window is read as it comes, by the pool.
	big := maskedFrame(true, websocket.BinaryMessage, bytes.Repeat([]byte("z"), 20000))
	for i, piece := range [][]byte{big[:10], big[10:9000], big[9000:]} {
		if _, err := rc.Write(piece); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			busy()
		}
	}
	if got := th.rec.waitMessages(t, fd, 3); got[2] != string(bytes.Repeat([]byte("z"), 20000)) {
		t.Fatalf("got %q", trunc([]byte(got[2])))
	}
	th.waitParked(t, 1)
}

// A connection that keeps sending does not keep the only pool goroutine:
// after a turn's budget it goes to the back of the queue.
func TestPollBusyConnectionDoesNotStarveOthers(t *testing.T) {
	const flood = 2000
	cfg := pollConfig(bridge.Config{PollWorkers: 1, ClientMessageRate: bridge.RateUnlimited, ClientByteRate: bridge.RateUnlimited})
	rec := newRecorder()
	started := make(chan struct{})
	proceed := make(chan struct{})
	var floodFD int64
	rec.onMsg = func(fd int64, op bridge.Opcode, data []byte) {
		if string(data) == "f0" {
			floodFD = fd
			close(started)
			<-proceed
		}
	}
	cfg.Listener = rec
	h, srv := serve(t, cfg, nil)
	th := &testHub{Hub: h, rec: rec, srv: srv, url: "ws://" + srv.Listener.Addr().String()}

	flooder := dialRaw(t, srv.Listener.Addr().String())
	flooder.handshake(t, "/?id=flooder")
	quiet, quietFD := th.dial(t, "quiet")
	th.waitParked(t, 2)

	var seg []byte
	for i := range flood {
		seg = append(seg, maskedFrame(true, websocket.TextMessage, fmt.Appendf(nil, "f%d", i))...)
	}
	go flooder.Write(seg) // the test reads the result, not the error
	<-started             // the pool is reading the flooder, its messages wait in the socket
	if err := quiet.WriteMessage(websocket.TextMessage, []byte("q")); err != nil {
		t.Fatal(err)
	}
	th.waitPoll(t, "the quiet one queued", func(s bridge.PollStats) bool { return s.Queued == 1 })
	close(proceed)

	var before int
	th.rec.waitFor(t, "the quiet client's message", func() bool {
		before = len(th.rec.messages[floodFD])
		return len(th.rec.messages[quietFD]) == 1
	})
	if before >= flood {
		t.Fatalf("the quiet client's message came after all %d of the flooder's", flood)
	}
	th.rec.waitMessages(t, floodFD, flood)
	if s := th.Stats().Poll; s.Requeued == 0 {
		t.Fatalf("no requeue counted: %+v", *s)
	}
}

// The bridge closes a parked connection: the client's close frame is
// waited for as in goroutine mode, and a client that never answers is
// closed after CloseTimeout.
func TestPollServerCloseWhileParked(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{CloseTimeout: 200 * time.Millisecond}))
	c, fd := th.dial(t, "answers")
	silent := dialRaw(t, th.srv.Listener.Addr().String())
	silent.handshake(t, "/?id=silent")
	silentFD := th.rec.fdOf(t, "silent")
	th.waitParked(t, 2)

	if err := th.Disconnect(fd, 4000, "bye"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	_, _, err := c.ReadMessage() // gorilla answers the close frame
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4000 {
		t.Fatalf("client read %v, want close 4000", err)
	}
	if ev := th.rec.closeOf(t, fd); ev.Code != 4000 || ev.Reason != "bye" || !ev.ByServer {
		t.Fatalf("close event %+v", ev)
	}

	if err := th.Disconnect(silentFD, 4001, ""); err != nil {
		t.Fatal(err)
	}
	if code := silent.readCloseFrame(t); code != 4001 {
		t.Fatalf("close frame %d", code)
	}
	if ev := th.rec.closeOf(t, silentFD); ev.Code != 4001 || !ev.ByServer {
		t.Fatalf("close event %+v", ev)
	}
	silent.expectEOF(t)
	th.waitPoll(t, "nothing parked", func(s bridge.PollStats) bool { return s.Parked == 0 })
}

// A parked connection whose client goes away (FIN, or RST) ends with 1006.
func TestPollAbruptCloseWhileParked(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{}))
	fin := dialRaw(t, th.srv.Listener.Addr().String())
	fin.handshake(t, "/?id=fin")
	finFD := th.rec.fdOf(t, "fin")
	rst := dialRaw(t, th.srv.Listener.Addr().String())
	rst.handshake(t, "/?id=rst")
	rstFD := th.rec.fdOf(t, "rst")
	th.waitParked(t, 2)

	fin.Close()
	rst.Conn.(*net.TCPConn).SetLinger(0)
	rst.Close()
	for _, fd := range []int64{finFD, rstFD} {
		if ev := th.rec.closeOf(t, fd); ev.Code != websocket.CloseAbnormalClosure || ev.ByServer {
			t.Fatalf("fd %d: close event %+v, want 1006 by the client", fd, ev)
		}
	}
	th.waitPoll(t, "nothing parked", func(s bridge.PollStats) bool { return s.Parked == 0 })
}

// A client's ping and the keepalive's pong are answered and taken while
// the connection sits parked: no pool goroutine waits in gorilla for a
// message after them (which PollReadTimeout would end with 1008).
func TestPollPingAndPongWhileParked(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	th := startHub(t, pollConfig(bridge.Config{PingInterval: 20 * time.Millisecond, PongTimeout: wait, PollReadTimeout: readTimeout}))
	c, fd := th.dial(t, "a")
	pings := make(chan string, 100)
	c.SetPingHandler(func(p string) error {
		select {
		case pings <- p:
		default:
		}
		return c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(wait))
	})
	pongs := make(chan string, 1)
	c.SetPongHandler(func(p string) error { pongs <- p; return nil })
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for range 3 { // keepalive rounds, answered
		<-pings
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p != "hi" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(wait):
		t.Fatal("no pong")
	}
	// Ten more keepalive rounds, each at least PingInterval after the
	// last: well past PollReadTimeout since the client's ping.
	for len(pings) > 0 {
		<-pings
	}
	for range 10 {
		select {
		case <-pings:
		case <-time.After(wait):
			t.Fatal("no more keepalive pings")
		}
	}
	th.waitParked(t, 1)
	th.rec.mu.Lock()
	ev, closed := th.rec.closes[fd]
	th.rec.mu.Unlock()
	if closed || !th.Check(fd) {
		t.Fatalf("the connection was closed: %+v", ev)
	}
	if s := th.Stats().Poll; s.ReadTimeouts != 0 {
		t.Fatalf("read timeouts: %+v", *s)
	}
}

// Shutdown may be called again (the tests' cleanup does): the second call
// must not close the descriptor numbers of the poller's epoll set and
// eventfd again, which by then belong to whatever was opened since.
func TestPollSecondShutdownLeavesOtherDescriptors(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{}))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Likely the lowest free numbers: those the poller just closed.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatalf("a pipe opened after the first Shutdown is broken by the second: %v", err)
	}
	var b [16]byte
	if n, err := r.Read(b[:]); err != nil || string(b[:n]) != "x" {
		t.Fatalf("read %q, %v from the pipe, want \"x\"", b[:n], err)
	}
}

// A client that answers every ping is not closed as dead while the pool is
// busy: its pongs wait in the queue behind clients that each hold the one
// pool goroutine with part of a large frame (until PollReadTimeout), for
// longer than PingInterval+PongTimeout in all. Its epoll wake is a sign of
// life, and a connection the keepalive found stale takes its waiting pongs
// before it is ended.
func TestPollBusyPoolKeepsHealthyClients(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1, PollReadTimeout: 500 * time.Millisecond,
		PingInterval: 300 * time.Millisecond, PongTimeout: 300 * time.Millisecond, CloseTimeout: 100 * time.Millisecond}))
	addr := th.srv.Listener.Addr().String()
	victim, victimFD := th.dial(t, "victim")
	go func() { // answers the pings (gorilla's default ping handler)
		for {
			if _, _, err := victim.ReadMessage(); err != nil {
				return
			}
		}
	}()
	const holders = 4
	var fds []int64
	for i := range holders {
		rc := dialRaw(t, addr)
		id := fmt.Sprint("holder", i)
		rc.handshake(t, "/?id="+id)
		fds = append(fds, th.rec.fdOf(t, id))
		defer rc.Close()
		// A frame too large to wait for in the epoll set: a pool goroutine
		// reads it, and waits for the rest until PollReadTimeout.
		if _, err := rc.Write(maskedFrame(true, websocket.BinaryMessage, make([]byte, 16<<10))[:20]); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range fds {
		th.rec.closeOf(t, fd) // 1008 (the read timeout) or 1006 (they answer no ping)
	}
	var closed bool
	th.waitPoll(t, "the victim parked again, or closed", func(s bridge.PollStats) bool {
		th.rec.mu.Lock()
		_, closed = th.rec.closes[victimFD]
		th.rec.mu.Unlock()
		return closed || s.Parked == 1 && s.Busy == 0 && s.Queued == 0
	})
	if closed {
		t.Fatalf("the client that answered every ping was closed: %+v", th.rec.closeOf(t, victimFD))
	}
}

// PollReadTimeout bounds each message, not a pool goroutine's turn: two
// large messages read in one turn (the second's start came with the
// first's end), each arriving well within the bound, together longer.
func TestPollReadTimeoutIsPerMessage(t *testing.T) {
	const bound = time.Second
	th := startHub(t, pollConfig(bridge.Config{PollReadTimeout: bound}))
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=two")
	fd := th.rec.fdOf(t, "two")
	th.waitParked(t, 1)
	// Larger than the 8 KiB the epoll set waits for: read as they come.
	m1 := maskedFrame(true, websocket.BinaryMessage, bytes.Repeat([]byte("a"), 16<<10))
	m2 := maskedFrame(true, websocket.BinaryMessage, bytes.Repeat([]byte("b"), 16<<10))
	write := func(b []byte) {
		t.Helper()
		if _, err := rc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(m1[:100])
	th.waitPoll(t, "the pool in the first message", func(s bridge.PollStats) bool { return s.Busy == 1 })
	time.Sleep(bound * 6 / 10) // the client's pace: each message takes 0.6 of the bound
	write(append(m1[100:len(m1):len(m1)], m2[:100]...))
	th.rec.waitMessages(t, fd, 1)
	time.Sleep(bound * 6 / 10)
	write(m2[100:])
	var closed bool
	var ev bridge.CloseEvent
	th.rec.waitFor(t, "the second message or a close", func() bool {
		ev, closed = th.rec.closes[fd]
		return closed || len(th.rec.messages[fd]) == 2
	})
	if closed {
		t.Fatalf("closed %+v: each message arrived within PollReadTimeout", ev)
	}
}

// Control frames count against a turn's budget like messages: a client
// that sends pongs faster than one pool goroutine takes them is put back
// in the queue after a turn's worth, not read as long as it keeps sending.
func TestPollPongFloodIsRequeued(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PollWorkers: 1}))
	rc := dialRaw(t, th.srv.Listener.Addr().String())
	rc.handshake(t, "/?id=flood")
	fd := th.rec.fdOf(t, "flood")
	th.waitParked(t, 1)
	pong := maskedFrame(true, websocket.PongMessage, nil)
	burst := bytes.Repeat(pong, 8<<10) // 8192 pongs in one write
	if _, err := rc.Write(burst); err != nil {
		t.Fatal(err)
	}
	// A message after them: once it is read, every pong before it was taken.
	if _, err := rc.Write(maskedFrame(true, websocket.TextMessage, []byte("after"))); err != nil {
		t.Fatal(err)
	}
	th.rec.waitMessages(t, fd, 1)
	if s := th.Stats().Poll; s.Requeued == 0 {
		t.Fatalf("8192 pongs were taken without the connection going back to the queue: %+v", *s)
	}
}

// In poll mode no goroutine waits with a read deadline: the keepalive tick
// ends a client that answers no ping (1006 "no pong in time"), parked with
// nothing sent, or with half a small frame waiting in the epoll set.
func TestPollDeadClientsAreEndedByTheKeepalive(t *testing.T) {
	th := startHub(t, pollConfig(bridge.Config{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond,
		CloseTimeout: 50 * time.Millisecond}))
	addr := th.srv.Listener.Addr().String()
	silent := dialRaw(t, addr)
	silent.handshake(t, "/?id=silent")
	half := dialRaw(t, addr)
	half.handshake(t, "/?id=half")
	f := maskedFrame(true, websocket.TextMessage, []byte("never finished"))
	if _, err := half.Write(f[:8]); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"silent", "half"} {
		ev := th.rec.closeOf(t, th.rec.fdOf(t, id))
		if ev.Code != websocket.CloseAbnormalClosure || ev.Reason != "no pong in time" {
			t.Fatalf("%s: close %+v, want 1006 no pong in time", id, ev)
		}
	}
	th.waitPoll(t, "nothing parked", func(s bridge.PollStats) bool { return s.Parked == 0 && s.Busy == 0 })
	if s := th.Stats().Poll; s.ReadTimeouts != 0 || s.PartialWaits == 0 {
		t.Fatalf("want the half frame waited for in the epoll set, no read timeout: %+v", *s)
	}
}

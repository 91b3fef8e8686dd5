package events_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

// checkRun fails unless evs are the events of one whole connection, in
// order: seq 1.., an open, the messages want (text as is, binary as
// "bin:" and its bytes) and a close.
func checkRun(t testing.TB, fd int64, evs []wireEvent, want []string) {
	t.Helper()
	if len(evs) != len(want)+2 {
		t.Fatalf("fd %d: %d events acknowledged, want %d (open, %d messages, close): %+v", fd, len(evs), len(want)+2, len(want), evs)
	}
	for i, e := range evs {
		if e.FD != fd || e.Seq != uint64(i+1) {
			t.Fatalf("fd %d: event %d is fd %d seq %d, want fd %d seq %d", fd, i, e.FD, e.Seq, fd, i+1)
		}
		if e.Time <= 0 {
			t.Errorf("fd %d: event %d has time %d", fd, i, e.Time)
		}
	}
	if evs[0].Type != "open" || evs[len(evs)-1].Type != "close" {
		t.Fatalf("fd %d: first %q, last %q, want open and close", fd, evs[0].Type, evs[len(evs)-1].Type)
	}
	for i, w := range want {
		e := evs[i+1]
		got := e.Data
		switch {
		case e.Type != "message":
			t.Fatalf("fd %d: event %d is %q, want a message", fd, i+1, e.Type)
		case e.Opcode == 2:
			if e.Encoding != "base64" {
				t.Fatalf("fd %d: binary message with encoding %q", fd, e.Encoding)
			}
			b, err := base64.StdEncoding.DecodeString(e.Data)
			if err != nil {
				t.Fatalf("fd %d: binary data %q: %v", fd, e.Data, err)
			}
			got = "bin:" + string(b)
		case e.Opcode != 1 || e.Encoding != "":
			t.Fatalf("fd %d: text message with opcode %d, encoding %q", fd, e.Opcode, e.Encoding)
		}
		if got != w {
			t.Fatalf("fd %d: message %d is %q, want %q", fd, i, got, w)
		}
	}
}

// checkRequests fails when a request holds more than max events or more
// than one run of events of a connection, or when two requests were in
// flight at once for one connection.
func checkRequests(t testing.TB, s *sink, max int) {
	t.Helper()
	for i, r := range s.requests() {
		if len(r.Events) > max {
			t.Errorf("request %d holds %d events, want at most %d", i, len(r.Events), max)
		}
		done := map[int64]bool{}
		for j, e := range r.Events {
			if j > 0 && r.Events[j-1].FD != e.FD {
				done[r.Events[j-1].FD] = true
			}
			if done[e.FD] {
				t.Errorf("request %d holds two runs of fd %d", i, e.FD)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.overlap) > 0 {
		t.Errorf("two requests were in flight at once for fds %v", s.overlap)
	}
}

// TestOrderAcrossConnections: many connections, many small batches, several
// requests in flight, with a healthy application and with one that fails
// every third request: every connection's events arrive exactly once, in
// order, each connection with one request in flight at most.
func TestOrderAcrossConnections(t *testing.T) {
	for _, flaky := range []bool{false, true} {
		t.Run(fmt.Sprintf("flaky=%v", flaky), func(t *testing.T) { testOrder(t, flaky) })
	}
}

func testOrder(t *testing.T, flaky bool) {
	s := newSink(t)
	const concurrency = 4
	var inFlight, most, n atomic.Int32
	s.setAnswer(func(*http.Request, *sinkRequest) (int, string) {
		in := inFlight.Add(1)
		for m := most.Load(); in > m && !most.CompareAndSwap(m, in); m = most.Load() {
		}
		time.Sleep(time.Millisecond) // let other requests overlap this one
		inFlight.Add(-1)
		if flaky && n.Add(1)%3 == 0 {
			return http.StatusBadGateway, ""
		}
		return http.StatusOK, ""
	})
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: concurrency, BatchSize: 7, RetryMax: 20 * time.Millisecond})
	th := startHub(t, d, false, bridge.Config{})

	const clients, messages = 12, 40
	conns := make([]*websocket.Conn, clients)
	want := make([][]string, clients)
	for i := range conns {
		conns[i] = th.dial(t, fmt.Sprintf("/?id=%d", i), nil)
		for j := range messages {
			if j%3 == 2 {
				want[i] = append(want[i], fmt.Sprintf("bin:\x00%d-%d\xff", i, j))
			} else {
				want[i] = append(want[i], fmt.Sprintf("<text> %d-%d & é", i, j))
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Go(func() {
			for _, m := range want[i] {
				op, data := websocket.TextMessage, []byte(m)
				if rest, ok := strings.CutPrefix(m, "bin:"); ok {
					op, data = websocket.BinaryMessage, []byte(rest)
				}
				if err := c.WriteMessage(op, data); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("client write: %v", err)
	}
	fds := make([]int64, clients)
	for i, c := range conns {
		// Closed once its open event was sent (fdOf needs it).
		fds[i] = s.fdOf(t, strconv.Itoa(i))
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(wait))
	}
	s.waitClosed(t, fds...)
	for i, fd := range fds {
		evs := s.ackedOf(fd)
		checkRun(t, fd, evs, want[i])
		if c := evs[len(evs)-1]; c.Code != 1000 || c.Reason != "bye" || c.By != "client" {
			t.Errorf("fd %d: close event %+v, want code 1000, reason bye, by client", fd, c)
		}
	}
	checkRequests(t, s, 7)
	settle(t, d)
	if m := most.Load(); m > concurrency {
		t.Errorf("%d requests were in flight at once, want at most %d", m, concurrency)
	}
	st := d.Stats()
	if total := uint64(clients * (messages + 2)); st.Delivered != total || st.Pending != 0 || st.Dropped != (events.DropStats{}) {
		t.Errorf("stats %+v, want %d delivered, none pending or dropped", st, total)
	}
	if flaky && st.Retries == 0 {
		t.Errorf("stats %+v: no retries against a flaky application", st)
	}
}

// TestBatching: events that queue up while a request is under way travel
// together, within the batch bounds.
func TestBatching(t *testing.T) {
	for _, tt := range []struct {
		name       string
		batch      int
		batchBytes int
		messages   []string
		wantSecond int // messages in the second request
	}{
		{name: "all at once", batch: 100, messages: repeat("m", 50), wantSecond: 50},
		{name: "at most -batch events", batch: 10, messages: repeat("m", 50), wantSecond: 10},
		{name: "at most -batch-bytes", batch: 100, batchBytes: 2048, messages: repeat(strings.Repeat("x", 400), 12), wantSecond: 3},
		{name: "a larger event travels alone", batch: 100, batchBytes: 2048, messages: []string{strings.Repeat("y", 5000), "small"}, wantSecond: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSink(t)
			gate := make(chan struct{})
			var answered atomic.Bool
			s.setAnswer(func(r *http.Request, _ *sinkRequest) (int, string) {
				if !answered.Swap(true) { // only the open event's request waits
					s.block(r, gate)
				}
				return http.StatusOK, ""
			})
			d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, BatchSize: tt.batch, BatchBytes: tt.batchBytes, Timeout: wait})
			th := startHub(t, d, false, bridge.Config{})
			c := th.dial(t, "/?id=a", nil)
			fd := s.fdOf(t, "a")
			send(t, c, tt.messages...)
			waitStats(t, d, "every message queued", func(s events.Stats) bool { return s.Pending == 1+len(tt.messages) })
			close(gate)
			closeClient(t, c, 1000, "")
			s.waitClosed(t, fd)
			checkRun(t, fd, s.ackedOf(fd), tt.messages)

			settle(t, d)
			reqs := s.requests()
			// The close event may join them: it can queue before the
			// second request is taken.
			got := 0
			for _, e := range reqs[1].Events {
				if e.Type == "message" {
					got++
				}
			}
			if got != tt.wantSecond {
				t.Errorf("second request holds %d messages, want %d", got, tt.wantSecond)
			}
			checkRequests(t, s, tt.batch)
			if tt.batchBytes > 0 {
				for i, r := range reqs {
					if len(r.Events) > 1 && len(r.Body) > tt.batchBytes+32 {
						t.Errorf("request %d: %d events in %d bytes, want at most %d", i, len(r.Events), len(r.Body), tt.batchBytes+32)
					}
				}
			}
			if st := d.Stats(); st.Requests != uint64(len(reqs)) || (tt.wantSecond > 1 && st.Requests >= st.Delivered) {
				t.Errorf("stats %+v: want %d requests, fewer than events", st, len(reqs))
			}
		})
	}
}

// settle waits until nothing is pending or in flight: the sink records an
// acknowledgement before the Dispatcher reads it.
func settle(t testing.TB, d *events.Dispatcher) events.Stats {
	t.Helper()
	return waitStats(t, d, "nothing pending", func(s events.Stats) bool { return s.Pending == 0 && s.InFlight == 0 })
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", s, i)
	}
	return out
}

// TestSignedRequests: every request carries the contract's headers and a
// signature that verifies with the secret; the secret is never logged.
func TestSignedRequests(t *testing.T) {
	const secret = "top-secret-key"
	for _, tt := range []struct {
		name   string
		secret string
	}{{"with a secret", secret}, {"without a secret", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSink(t)
			d, logs := newDispatcher(t, events.Config{URL: s.url, Secret: tt.secret, NodeID: 5})
			th := startHub(t, d, false, bridge.Config{NodeID: 5})
			c := th.dial(t, "/?id=a", nil)
			fd := s.fdOf(t, "a")
			send(t, c, "hello")
			closeClient(t, c, 1000, "")
			s.waitClosed(t, fd)
			if bridge.NodeOf(fd) != 5 {
				t.Fatalf("fd %d is not of node 5", fd)
			}
			for i, r := range s.requests() {
				if r.Kind != "events" || r.Node != "5" || r.Node0 != 5 || r.Attempt != "1" || r.ContentType != "application/json" {
					t.Errorf("request %d: kind %q, node %q/%d, attempt %q, content type %q", i, r.Kind, r.Node, r.Node0, r.Attempt, r.ContentType)
				}
				ts, err := strconv.ParseInt(r.Timestamp, 10, 64)
				if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 300*time.Second {
					t.Errorf("request %d: timestamp %q is not the current unix time", i, r.Timestamp)
				}
				if tt.secret == "" {
					if r.Signature != "" {
						t.Errorf("request %d: signature %q without a secret", i, r.Signature)
					}
					continue
				}
				if want := signature(tt.secret, r.Timestamp, r.Body); r.Signature != want {
					t.Errorf("request %d: signature %q, want %q", i, r.Signature, want)
				}
				if r.Signature == signature("another key", r.Timestamp, r.Body) || r.Signature == signature(tt.secret, r.Timestamp, append(r.Body, ' ')) {
					t.Errorf("request %d: signature verifies with another key or body", i)
				}
			}
			if err := d.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the secret is in the log:\n%s", logs)
			}
		})
	}
}

// TestEventContents: the open event carries the handshake, the close event
// who closed and how.
func TestEventContents(t *testing.T) {
	s := newSink(t)
	d, _ := newDispatcher(t, events.Config{URL: s.url})
	th := startHub(t, d, false, bridge.Config{Subprotocols: []string{"chat.v2"}})
	dl := *dialer
	dl.Subprotocols = []string{"chat.v2"}
	c, _, err := dl.Dial(th.url+"/?id=a&room=1&tag=x&tag=y", http.Header{"X-Custom": {"one", "two"}, "Cookie": {"sid=abc"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := s.fdOf(t, "a")
	if err := th.Join(fd, "late"); err != nil { // after the open event: not in it
		t.Fatal(err)
	}
	if err := th.Disconnect(fd, 4000, "kicked"); err != nil {
		t.Fatal(err)
	}
	if ce := testutil.ReadClose(t, c, wait); ce.Code != 4000 {
		t.Errorf("client got close %d, want 4000", ce.Code)
	}
	s.waitClosed(t, fd)
	evs := s.ackedOf(fd)
	checkRun(t, fd, evs, nil)
	open, cl := evs[0], evs[1]
	if open.Path != "/" || open.Subprotocol != "chat.v2" || open.User != "" || open.Groups == nil || len(open.Groups) != 0 {
		t.Errorf("open event %+v: want path /, subprotocol chat.v2, no user, groups []", open)
	}
	if body := s.requests()[0].Body; !strings.Contains(string(body), `"user":null,"groups":[]`) {
		t.Errorf("open event %s: want \"user\": null and \"groups\": [] without an authorization", body)
	}
	if q, err := url.ParseQuery(open.Query); err != nil || !reflect.DeepEqual(q, url.Values{"id": {"a"}, "room": {"1"}, "tag": {"x", "y"}}) {
		t.Errorf("open event query %q (%v)", open.Query, err)
	}
	if open.RemoteAddr != c.LocalAddr().String() {
		t.Errorf("open event remote_addr %q, want the client's %s", open.RemoteAddr, c.LocalAddr())
	}
	if !reflect.DeepEqual(open.Headers["X-Custom"], []string{"one", "two"}) || open.Headers.Get("Cookie") != "sid=abc" || open.Headers.Get("Sec-Websocket-Protocol") != "chat.v2" {
		t.Errorf("open event headers %v", open.Headers)
	}
	if cl.Code != 4000 || cl.Reason != "kicked" || cl.By != "server" {
		t.Errorf("close event %+v, want 4000 kicked by server", cl)
	}
}

// TestEndpointDownThenUp: while the application is down, events wait and
// are retried; once it is up they all arrive, in order, none lost.
func TestEndpointDownThenUp(t *testing.T) {
	// The port stays held for the whole test: while "down", the listener
	// closes every connection at once (a failed request, as when nobody
	// listens). Closing it and listening again on the same address would
	// race with the loopback connections of tests running in parallel,
	// any of which may take the freed port as its source port.
	down := newDownListener(t)
	s := newSinkOn(t, down) // sees only the connections accepted once up
	d, logs := newDispatcher(t, events.Config{URL: s.url})
	th := startHub(t, d, false, bridge.Config{})
	c := th.dial(t, "/?id=a", nil)
	// The open event tried first, so that it is certainly in a retried
	// request.
	waitStats(t, d, "the open event tried", func(s events.Stats) bool { return s.Retries >= 1 })
	msgs := repeat("while down ", 20)
	send(t, c, msgs...)
	closeClient(t, c, 1000, "")
	waitStats(t, d, "three retries", func(s events.Stats) bool { return s.Retries >= 3 && s.Pending == 22 })
	if len(logs.Records("events delivery failed, will retry")) == 0 {
		t.Errorf("no delivery failure logged:\n%s", logs)
	}
	if n := len(s.requests()); n != 0 {
		t.Fatalf("the sink received %d requests while down", n)
	}

	down.down.Store(false) // the application is up
	fd := s.fdOf(t, "a")
	s.waitClosed(t, fd)
	checkRun(t, fd, s.ackedOf(fd), msgs)
	settle(t, d)
	if a, _ := strconv.Atoi(s.requests()[0].Attempt); a < 2 {
		t.Errorf("first request received has attempt %d, want a retry (2 or more)", a)
	}
	if st := d.Stats(); st.Dropped != (events.DropStats{}) || st.Delivered != 22 || st.Pending != 0 {
		t.Errorf("stats %+v, want 22 delivered, none dropped", st)
	}
}

// downListener is a listener whose application is down while down is set:
// it accepts connections and closes them at once, without a byte.
type downListener struct {
	net.Listener
	down atomic.Bool
}

// newDownListener listens on a loopback port that stays held for the
// whole test, down.
func newDownListener(t testing.TB) *downListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := &downListener{Listener: ln}
	down.down.Store(true)
	return down
}

func (l *downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		c.Close()
	}
}

// TestRetries: failed answers (5xx, a redirect, a 4xx) are retried with
// the same body and an increasing attempt number. (One too slow:
// TestRetryAfterTimeout.)
func TestRetries(t *testing.T) {
	s := newSink(t)
	var n atomic.Int32
	s.setAnswer(func(r *http.Request, _ *sinkRequest) (int, string) {
		switch n.Add(1) {
		case 1:
			return http.StatusInternalServerError, ""
		case 2:
			return http.StatusServiceUnavailable, ""
		case 3:
			return http.StatusTemporaryRedirect, "" // not followed
		case 4:
			return http.StatusNotFound, ""
		}
		return http.StatusNoContent, ""
	})
	// A long Timeout: no request here is meant to time out, and one that
	// did on a slow machine would shift the answers and the counts.
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Timeout: wait})
	openSendClose(t, s, d)

	reqs := s.requests()
	if len(reqs) < 5 {
		t.Fatalf("%d requests, want at least 5", len(reqs))
	}
	for i, r := range reqs[:5] {
		if r.Attempt != strconv.Itoa(i+1) || string(r.Body) != string(reqs[0].Body) {
			t.Errorf("request %d: attempt %q, body %s; want attempt %d of body %s", i, r.Attempt, r.Body, i+1, reqs[0].Body)
		}
		if r.Signature != "" {
			t.Errorf("request %d signed without a secret", i)
		}
	}
	for i, r := range reqs[5:] {
		if r.Attempt != "1" {
			t.Errorf("request %d: attempt %q, want 1", i+5, r.Attempt)
		}
	}
	if st := d.Stats(); st.Retries != 4 || st.Delivered != 3 {
		t.Errorf("stats %+v, want 4 retries, 3 delivered", st)
	}
}

// openSendClose runs one client through d: open, a message "after", close;
// it returns once the sink has acknowledged the three events in order and d
// is idle.
func openSendClose(t *testing.T, s *sink, d *events.Dispatcher) {
	t.Helper()
	th := startHub(t, d, false, bridge.Config{})
	c := th.dial(t, "/?id=a", nil)
	fd := s.fdOf(t, "a")
	s.waitFor(t, "the open event acknowledged", func() bool { return len(s.acked[fd]) == 1 })
	send(t, c, "after")
	closeClient(t, c, 1000, "")
	s.waitClosed(t, fd)
	checkRun(t, fd, s.ackedOf(fd), []string{"after"})
	settle(t, d)
}

// TestRetryAfterTimeout: a request slower than Config.Timeout is retried
// with the same body and the next attempt number.
func TestRetryAfterTimeout(t *testing.T) {
	s := newSink(t)
	var answered atomic.Bool
	s.setAnswer(func(r *http.Request, _ *sinkRequest) (int, string) {
		if !answered.Swap(true) {
			<-r.Context().Done() // the first request: slower than the timeout
		}
		return http.StatusNoContent, ""
	})
	// A short Timeout, which the first request is meant to hit. On a slow
	// machine a later one may hit it too: that only adds retries, so the
	// checks below allow them.
	d, logs := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Timeout: 300 * time.Millisecond})
	openSendClose(t, s, d)

	reqs := s.requests()
	if len(reqs) < 2 || reqs[0].Attempt != "1" || reqs[1].Attempt != "2" || string(reqs[1].Body) != string(reqs[0].Body) {
		t.Fatalf("requests %+v: want the first one (attempt 1) retried as attempt 2 with the same body", reqs)
	}
	if recs := logs.Records("events delivery failed, will retry"); len(recs) == 0 || recs[0]["err"] == nil {
		t.Errorf("no delivery failure logged with an error:\n%s", logs)
	}
	if st := d.Stats(); st.Retries < 1 || st.Delivered != 3 {
		t.Errorf("stats %+v, want a retry (or more), 3 delivered", st)
	}
}

// TestOverflowPerFD: with the application stuck, a connection's queue
// fills at -events-queue-per-fd; the next message is dropped, and under
// the close policy the connection is closed with 1013.
func TestOverflowPerFD(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		s := newSink(t)
		gate := make(chan struct{})
		s.setAnswer(s.blockUntil(gate))
		d, logs := newDispatcher(t, events.Config{URL: s.url, QueuePerFD: 5, Timeout: wait})
		th := startHub(t, d, false, bridge.Config{})
		c := th.dial(t, "/?id=a", nil)
		fd := s.fdOf(t, "a")
		for i := range 20 { // the writes after the close may fail
			if c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprint("m", i))) != nil {
				break
			}
		}
		if ce := testutil.ReadClose(t, c, wait); ce.Code != events.CloseTryAgainLater || ce.Text != "events queue full" {
			t.Errorf("client got close %d %q, want 1013 events queue full", ce.Code, ce.Text)
		}
		close(gate)
		s.waitClosed(t, fd)
		evs := s.ackedOf(fd)
		if len(evs) != 6 {
			t.Fatalf("%d events acknowledged, want 6 (open, 4 messages, close): %+v", len(evs), evs)
		}
		for i, e := range evs[1:5] {
			if e.Data != fmt.Sprint("m", i) || e.Seq != uint64(i+2) {
				t.Errorf("event %d: %+v, want m%d with seq %d", i+1, e, i, i+2)
			}
		}
		// The dropped message took seq 6: the gap shows the application
		// where the conversation lost it.
		if cl := evs[5]; cl.Type != "close" || cl.Seq != 7 || cl.Code != 1013 || cl.By != "server" || cl.Reason != "events queue full" {
			t.Errorf("last event %+v, want close 1013 by server with seq 7", cl)
		}
		if st := settle(t, d); st.Dropped.QueueFD != 1 || st.Closed != 1 {
			t.Errorf("stats %+v, want 1 dropped (queue_fd), 1 closed", st)
		}
		if recs := logs.Records("event dropped"); len(recs) == 0 || recs[0]["fd"] != float64(fd) || recs[0]["reason"] != events.DropQueueFD {
			t.Errorf("event dropped log records %v, want one with fd %d and reason %s", recs, fd, events.DropQueueFD)
		}
	})
	t.Run("drop", func(t *testing.T) {
		s := newSink(t)
		gate := make(chan struct{})
		s.setAnswer(s.blockUntil(gate))
		d, _ := newDispatcher(t, events.Config{URL: s.url, QueuePerFD: 5, Overflow: events.OverflowDrop, Timeout: wait})
		th := startHub(t, d, false, bridge.Config{})
		c := th.dial(t, "/?id=a", nil)
		fd := s.fdOf(t, "a")
		send(t, c, repeat("m", 20)...)
		waitStats(t, d, "16 messages dropped", func(s events.Stats) bool { return s.Dropped.QueueFD == 16 })
		close(gate)
		s.waitFor(t, "5 events acknowledged", func() bool { return len(s.acked[fd]) == 5 })
		send(t, c, "after")
		closeClient(t, c, 1000, "")
		s.waitClosed(t, fd)
		evs := s.ackedOf(fd)
		if len(evs) != 7 || evs[5].Data != "after" || evs[5].Seq != 22 || evs[6].Seq != 23 || evs[6].By != "client" {
			t.Errorf("events %+v, want open, m0..m3, after (seq 22), close by client (seq 23)", evs)
		}
		if st := settle(t, d); st.Dropped.QueueFD != 16 || st.Closed != 0 || st.Delivered != 7 {
			t.Errorf("stats %+v, want 16 dropped (queue_fd), none closed, 7 delivered", st)
		}
	})
}

// TestOverflowTotal: the pending events of all connections are bounded by
// -events-queue-total, which also holds a close event reserved for each
// open connection: the close events always fit.
func TestOverflowTotal(t *testing.T) {
	for _, policy := range []events.Overflow{events.OverflowClose, events.OverflowDrop} {
		t.Run(string(policy), func(t *testing.T) {
			s := newSink(t)
			gate := make(chan struct{})
			s.setAnswer(s.blockUntil(gate))
			d, _ := newDispatcher(t, events.Config{URL: s.url, QueueTotal: 8, Overflow: policy, Timeout: wait})
			th := startHub(t, d, false, bridge.Config{})
			a := th.dial(t, "/?id=a", nil)
			fdA := s.fdOf(t, "a")
			b := th.dial(t, "/?id=b", nil)
			fdB := s.fdOf(t, "b")
			send(t, a, "a0", "a1", "a2", "a3")
			// 2 opens, 4 messages and 2 close events reserved: full.
			waitStats(t, d, "6 events pending", func(s events.Stats) bool { return s.Pending == 6 && s.Reserved == 2 })
			send(t, b, "b0")
			waitStats(t, d, "b0 dropped", func(s events.Stats) bool { return s.Dropped.QueueTotal == 1 })
			if policy == events.OverflowClose {
				if ce := testutil.ReadClose(t, b, wait); ce.Code != 1013 {
					t.Errorf("b got close %d, want 1013", ce.Code)
				}
				waitStats(t, d, "b's close event queued", func(s events.Stats) bool { return s.Pending == 7 })
			}
			close(gate)
			if policy == events.OverflowDrop {
				settle(t, d) // room again
				send(t, b, "b1")
				closeClient(t, b, 1000, "")
			}
			closeClient(t, a, 1000, "")
			s.waitClosed(t, fdA, fdB)
			checkRun(t, fdA, s.ackedOf(fdA), []string{"a0", "a1", "a2", "a3"})
			evsB := s.ackedOf(fdB)
			want := []string{"open 1", "close 3"} // b0 took seq 2
			if policy == events.OverflowDrop {
				want = []string{"open 1", "message 3", "close 4"}
			}
			var got []string
			for _, e := range evsB {
				got = append(got, fmt.Sprint(e.Type, " ", e.Seq))
			}
			if !slices.Equal(got, want) {
				t.Errorf("b's events %v, want %v", got, want)
			}
			if st := settle(t, d); st.Dropped.QueueTotal != 1 || st.Dropped.QueueFD != 0 {
				t.Errorf("stats %+v, want 1 dropped (queue_total)", st)
			}
		})
	}
}

// TestDropLogsAreLimited: a flood of drops writes a few log lines, and the
// lines account for every drop.
func TestDropLogsAreLimited(t *testing.T) {
	s := newSink(t)
	gate := make(chan struct{})
	s.setAnswer(s.blockUntil(gate))
	d, logs := newDispatcher(t, events.Config{URL: s.url, QueuePerFD: 2, Overflow: events.OverflowDrop, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	c := th.dial(t, "/?id=a", nil)
	s.fdOf(t, "a")
	const flood = 500
	send(t, c, repeat("m", flood)...)
	waitStats(t, d, "the flood dropped", func(s events.Stats) bool { return s.Dropped.QueueFD == flood-1 })
	close(gate)
	closeClient(t, c, 1000, "")
	waitStats(t, d, "the rest delivered", func(s events.Stats) bool { return s.Pending == 0 && s.Delivered == 3 })
	if err := d.Shutdown(context.Background()); err != nil { // writes what the log held back
		t.Fatal(err)
	}
	recs := logs.Records("event dropped")
	total := 0
	for _, r := range recs {
		n, _ := r["omitted"].(float64)
		total += 1 + int(n)
	}
	if total != flood-1 || len(recs) >= flood-1 {
		t.Errorf("%d log lines for %d drops, accounting for %d; want fewer lines than drops, accounting for all", len(recs), flood-1, total)
	}
}

// TestShutdownDrains: Shutdown delivers what is pending, the close events
// of the hub's shutdown included; an event after it is counted as dropped.
func TestShutdownDrains(t *testing.T) {
	s := newSink(t)
	gate := make(chan struct{})
	s.setAnswer(s.blockUntil(gate))
	d, _ := newDispatcher(t, events.Config{URL: s.url, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	var fds []int64
	for i := range 5 {
		c := th.dial(t, fmt.Sprintf("/?id=%d", i), nil)
		send(t, c, "one", "two")
		fds = append(fds, s.fdOf(t, strconv.Itoa(i)))
		go func() { _, _, _ = c.ReadMessage() }() // answers the close frame
	}
	waitStats(t, d, "every message queued", func(s events.Stats) bool { return s.Pending == 15 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("hub Shutdown: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Shutdown(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with 20 events pending and the application stuck", err)
	default:
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, fd := range fds {
		evs := s.ackedOf(fd)
		checkRun(t, fd, evs, []string{"one", "two"})
		if cl := evs[3]; cl.Code != bridge.CloseGoingAway || cl.By != "server" {
			t.Errorf("fd %d: close event %+v, want 1001 by server", fd, cl)
		}
	}
	d.OnMessage(fds[0], bridge.OpText, []byte("late"))
	if st := d.Stats(); st.Delivered != 20 || st.Pending != 0 || st.Dropped != (events.DropStats{Shutdown: 1}) {
		t.Errorf("stats %+v, want 20 delivered, the late one dropped", st)
	}
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestShutdownDeadline: what Shutdown cannot deliver by its deadline is
// counted and logged as dropped.
func TestShutdownDeadline(t *testing.T) {
	s := newSink(t)
	s.setAnswer(s.blockUntil(nil)) // stuck until the request ends
	d, logs := newDispatcher(t, events.Config{URL: s.url, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	c := th.dial(t, "/?id=a", nil)
	send(t, c, "one", "two", "three")
	s.fdOf(t, "a")
	waitStats(t, d, "every message queued", func(s events.Stats) bool { return s.Pending == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := d.Shutdown(ctx)
	if !errors.Is(err, events.ErrUndelivered) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want ErrUndelivered and DeadlineExceeded", err)
	}
	if st := d.Stats(); st.Dropped.Shutdown != 4 || st.Pending != 0 || st.InFlight != 0 || st.Delivered != 0 {
		t.Errorf("stats %+v, want 4 dropped at shutdown, none pending", st)
	}
	if recs := logs.Records("events undelivered at shutdown"); len(recs) != 1 || recs[0]["events"] != float64(4) {
		t.Errorf("undelivered log records %v, want one with events=4", recs)
	}
	// The connection's close event comes after: dropped too.
	closeClient(t, c, 1000, "")
	waitStats(t, d, "the close event dropped", func(s events.Stats) bool { return s.Dropped.Shutdown == 5 })
}

// TestAuthorization: the application's answers to auth requests, as the
// contract's table has them.
func TestAuthorization(t *testing.T) {
	const secret = "auth-key"
	authSink, evSink := newSink(t), newSink(t)
	var mu sync.Mutex
	answers := map[string]func(r *http.Request) (int, string){}
	authSink.setAnswer(func(r *http.Request, req *sinkRequest) (int, string) {
		var hs struct{ Headers http.Header }
		_ = json.Unmarshal(req.Body, &hs)
		mu.Lock()
		f := answers[hs.Headers.Get("X-Test")] // the handshake's header
		mu.Unlock()
		if f == nil {
			return http.StatusTeapot, ""
		}
		return f(r)
	})
	// A long AuthTimeout for the answers meant to arrive: one slow round
	// trip on a loaded machine must not turn a 101 or a 401 into a 503.
	mainD, _ := newDispatcher(t, events.Config{URL: evSink.url, AuthURL: authSink.url, Secret: secret, AuthTimeout: wait})
	mainTH := startHub(t, mainD, true, bridge.Config{})
	// A short one, through a hub of its own, for the answer meant to come
	// too late.
	shortD, _ := newDispatcher(t, events.Config{AuthURL: authSink.url, Secret: secret, AuthTimeout: 300 * time.Millisecond})
	shortTH := startHub(t, shortD, true, bridge.Config{})

	fixed := func(status int, body string) func(*http.Request) (int, string) {
		return func(*http.Request) (int, string) { return status, body }
	}
	for i, tt := range []struct {
		name       string
		answer     func(*http.Request) (int, string)
		status     int // of the handshake; 101 when upgraded
		body       string
		user       string
		groups     []string
		wantFailed bool // counted as failed, not denied
		timesOut   bool // asked with the short AuthTimeout
	}{
		{name: "allow with user and groups", answer: fixed(200, `{"allow": true, "user": "42", "groups": ["vip", "room:1"]}`), status: 101, user: "42", groups: []string{"room:1", "vip"}},
		{name: "allow with an integer user", answer: fixed(200, `{"allow": true, "user": 42}`), status: 101, user: "42"},
		{name: "allow alone, with 201", answer: fixed(201, `{"allow": true}`), status: 101},
		{name: "deny with status and message", answer: fixed(200, `{"allow": false, "status": 401, "message": "bad token"}`), status: 401, body: "bad token"},
		{name: "deny without status", answer: fixed(200, `{"allow": false}`), status: 403, body: "Forbidden"},
		{name: "deny with a 2xx status", answer: fixed(200, `{"allow": false, "status": 200}`), status: 403},
		{name: "deny with a 5xx status", answer: fixed(200, `{"allow": false, "status": 503, "message": "later"}`), status: 503, body: "later"},
		{name: "4xx", answer: fixed(401, `{"allow": true}`), status: 401},
		{name: "429", answer: fixed(429, ""), status: 429},
		{name: "500", answer: fixed(500, `{"allow": true}`), status: 503, wantFailed: true},
		{name: "502", answer: fixed(502, ""), status: 503, wantFailed: true},
		{name: "redirect", answer: fixed(302, ""), status: 503, wantFailed: true},
		{name: "bad JSON", answer: fixed(200, `{"allow": tru`), status: 503, wantFailed: true},
		{name: "no allow", answer: fixed(200, `{"user": "1"}`), status: 503, wantFailed: true},
		{name: "user neither string nor integer", answer: fixed(200, `{"allow": true, "user": 1.5}`), status: 503, wantFailed: true},
		{name: "timeout", answer: func(r *http.Request) (int, string) {
			authSink.block(r, nil)
			return 200, `{"allow": true}`
		}, status: 503, wantFailed: true, timesOut: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, th := mainD, mainTH
			if tt.timesOut {
				d, th = shortD, shortTH
			}
			mu.Lock()
			answers[tt.name] = tt.answer
			mu.Unlock()
			before := d.Stats().Auth
			id := strconv.Itoa(i)
			path := "/?token=abc%2Fdef&id=" + id + "&x=a+b;c"
			c, resp, err := dialer.Dial(th.url+path, http.Header{"X-Test": {tt.name}})
			if tt.status == 101 {
				if err != nil {
					t.Fatalf("dial: %v (%s), want an upgrade", err, statusOf(resp))
				}
				defer c.Close()
				fd := evSink.fdOf(t, id)
				evSink.waitFor(t, "the open event acknowledged", func() bool { return len(evSink.acked[fd]) > 0 })
				open := evSink.ackedOf(fd)[0]
				if open.User != tt.user || !slices.Equal(open.Groups, nonNil(tt.groups)) {
					t.Errorf("open event user %q groups %q, want %q %q", open.User, open.Groups, tt.user, tt.groups)
				}
				if info, _ := th.Info(fd); info.User != tt.user || !slices.Equal(info.Groups, tt.groups) {
					t.Errorf("hub info user %q groups %q, want %q %q", info.User, info.Groups, tt.user, tt.groups)
				}
			} else {
				if err == nil {
					c.Close()
					t.Fatalf("dial upgraded, want HTTP %d", tt.status)
				}
				if resp == nil || resp.StatusCode != tt.status {
					t.Fatalf("dial: %v (%s), want HTTP %d", err, statusOf(resp), tt.status)
				}
				if tt.body != "" {
					if msg := readBody(resp); strings.TrimSpace(msg) != tt.body {
						t.Errorf("refusal body %q, want %q", msg, tt.body)
					}
				}
			}
			after := d.Stats().Auth
			switch {
			case tt.status == 101 && after.Allowed != before.Allowed+1,
				tt.status != 101 && !tt.wantFailed && after.Denied != before.Denied+1,
				tt.wantFailed && after.Failed != before.Failed+1:
				t.Errorf("auth stats %+v after %+v", after, before)
			}
		})
	}

	// Every auth request: signed, with the handshake as the contract has it.
	n := 0
	for _, r := range authSink.requests() {
		n++
		if r.Kind != "auth" || r.Attempt != "1" || r.Node != "0" || r.Signature != signature(secret, r.Timestamp, r.Body) {
			t.Errorf("auth request: kind %q attempt %q node %q signature %q", r.Kind, r.Attempt, r.Node, r.Signature)
		}
		var body struct {
			Node       int         `json:"node"`
			Path       string      `json:"path"`
			Query      string      `json:"query"`
			Headers    http.Header `json:"headers"`
			RemoteAddr string      `json:"remote_addr"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("auth body %s: %v", r.Body, err)
		}
		if body.Path != "/" || !strings.HasPrefix(body.Query, "token=abc%2Fdef&id=") || !strings.HasSuffix(body.Query, "&x=a+b;c") ||
			body.Headers.Get("X-Test") == "" || body.Headers.Get("Upgrade") != "websocket" || !strings.HasPrefix(body.RemoteAddr, "127.0.0.1:") {
			t.Errorf("auth body %s: want path /, the raw query, the headers and the remote address", r.Body)
		}
	}
	if n != 16 {
		t.Errorf("%d auth requests, want 16", n)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestAuthorizationUnreachable: an auth URL nobody listens on refuses
// every handshake with 503.
func TestAuthorizationUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d, logs := newDispatcher(t, events.Config{AuthURL: "http://" + addr + "/auth"})
	th := startHub(t, d, true, bridge.Config{})
	_, resp, err := dialer.Dial(th.url+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial: %v (%s), want HTTP 503", err, statusOf(resp))
	}
	resp.Body.Close()
	if st := d.Stats().Auth; st.Failed != 1 {
		t.Errorf("auth stats %+v, want 1 failed", st)
	}
	if len(logs.Records("authorization failed, handshake refused with 503")) != 1 {
		t.Errorf("no authorization failure logged:\n%s", logs)
	}
}

// TestEventsOff: without a URL a Dispatcher only authorizes (here: allows,
// having no auth URL either) and starts no goroutine.
func TestEventsOff(t *testing.T) {
	d, err := events.New(events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d.OnOpen(bridge.ConnInfo{FD: 1})
	d.OnMessage(1, bridge.OpText, []byte("x"))
	d.OnClose(1, bridge.CloseEvent{Code: 1000})
	if a := d.Authorize(&http.Request{URL: &url.URL{Path: "/"}}); !a.Allow {
		t.Errorf("Authorize without an auth URL = %+v, want allowed", a)
	}
	if st := d.Stats(); st != (events.Stats{}) {
		t.Errorf("stats %+v, want zero", st)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		cfg  events.Config
		want string
	}{
		{events.Config{URL: "ftp://example.com/"}, "url"},
		{events.Config{URL: "http:///path"}, "no host"},
		{events.Config{URL: "example.com/events"}, "scheme"},
		{events.Config{URL: "http://h/", AuthURL: "unix:///x"}, "auth url"},
		{events.Config{Concurrency: -1}, "concurrency"},
		{events.Config{BatchSize: -1}, "batch size"},
		{events.Config{BatchBytes: -1}, "batch bytes"},
		{events.Config{QueuePerFD: -1}, "queue per fd"},
		{events.Config{QueueTotal: -1}, "queue total"},
		{events.Config{Timeout: -time.Second}, "timeout"},
		{events.Config{RetryMax: -time.Second}, "retry max"},
		{events.Config{Retries: -1}, "retries"},
		{events.Config{AuthTimeout: -time.Second}, "auth timeout"},
		{events.Config{Overflow: "maybe"}, "overflow"},
		{events.Config{NodeID: 1024}, "node id"},
	} {
		d, err := events.New(tt.cfg)
		if err == nil {
			_ = d.Shutdown(context.Background())
			t.Errorf("New(%+v) succeeded, want an error about %s", tt.cfg, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want it to name %s", tt.cfg, err, tt.want)
		}
	}
	d, err := events.New(events.Config{URL: "https://user:pw@php.internal:8080/ws/events?x=1"})
	if err != nil {
		t.Fatalf("New with an https URL: %v", err)
	}
	c := d.Config()
	if c.Concurrency != 8 || c.BatchSize != 100 || c.BatchBytes != 1<<20 || c.Timeout != 5*time.Second || c.RetryMax != 5*time.Second ||
		c.AuthTimeout != 3*time.Second || c.QueuePerFD != 1000 || c.QueueTotal != 100000 || c.Retries != 5 || c.Overflow != events.OverflowClose || c.Logger == nil {
		t.Errorf("defaults %+v", c)
	}
	_ = d.Shutdown(context.Background())
}

// TestRefusedBatchesAreDropped: a 400 or 413 answer means the application
// can never accept that body: its events are dropped and counted, and the
// connection's later events are delivered.
func TestRefusedBatchesAreDropped(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			s := newSink(t)
			var refusedOnce atomic.Bool
			s.setAnswer(func(_ *http.Request, req *sinkRequest) (int, string) {
				for _, e := range req.Events {
					if e.Type == "message" && e.Data == "poison" && refusedOnce.CompareAndSwap(false, true) {
						return status, "no"
					}
				}
				return http.StatusNoContent, ""
			})
			d, logs := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1})
			th := startHub(t, d, false, bridge.Config{})
			c := th.dial(t, "/?id=a", nil)
			fd := s.fdOf(t, "a")
			send(t, c, "poison")
			waitStats(t, d, "the poison refused", func(st events.Stats) bool { return st.Dropped.Refused == 1 })
			send(t, c, "after")
			closeClient(t, c, 1000, "")
			s.waitClosed(t, fd)
			var got []string
			for _, e := range s.ackedOf(fd) {
				got = append(got, fmt.Sprint(e.Type, " ", e.Seq, " ", e.Data))
			}
			// The refused message took seq 2: the gap shows the loss.
			if want := []string{"open 1 ", "message 3 after", "close 4 "}; !slices.Equal(got, want) {
				t.Errorf("delivered %q, want %q", got, want)
			}
			if st := settle(t, d); st.Retries != 0 || st.Dropped.Refused != 1 {
				t.Errorf("stats %+v, want no retry and 1 refused", st)
			}
			if len(logs.Records("the application refused an event; it is dropped")) != 1 {
				t.Errorf("no log line for the refusal:\n%s", logs)
			}
		})
	}
}

// TestRefusedBatchIsSplit: a 400 for a batch of several connections drops
// only the event the application refuses alone; the others' events, in
// the same request before, are delivered. A refused open event closes its
// connection (1011) and the application hears nothing more of it.
func TestRefusedBatchIsSplit(t *testing.T) {
	s := newSink(t)
	gate := make(chan struct{})
	var first atomic.Bool
	s.setAnswer(func(r *http.Request, req *sinkRequest) (int, string) {
		if first.CompareAndSwap(false, true) {
			s.block(r, gate) // the first request (a's open) holds the rest back: they batch together
		}
		for _, e := range req.Events {
			if e.Data == "poison" || (e.Type == "open" && strings.Contains(e.Query, "id=bad")) {
				return http.StatusBadRequest, "no"
			}
		}
		return http.StatusNoContent, ""
	})
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	a := th.dial(t, "/?id=a", nil)
	waitStats(t, d, "a's open in flight", func(st events.Stats) bool { return st.Pending == 1 })
	send(t, a, "poison")
	b := th.dial(t, "/?id=b", nil)
	send(t, b, "fine")
	bad := th.dial(t, "/?id=bad", nil)
	send(t, bad, "never seen")
	waitStats(t, d, "the rest queued", func(st events.Stats) bool { return st.Pending == 6 })
	close(gate)
	if ce := testutil.ReadClose(t, bad, wait); ce.Code != events.CloseInternalError {
		t.Errorf("bad got close %d, want 1011", ce.Code)
	}
	fdA, fdB := s.fdOf(t, "a"), s.fdOf(t, "b")
	closeClient(t, a, 1000, "")
	closeClient(t, b, 1000, "")
	s.waitClosed(t, fdA, fdB)
	st := settle(t, d)
	if st.Dropped.Refused != 2 || st.Splits == 0 {
		t.Errorf("stats %+v, want the poison and bad's open refused, after a split", st)
	}
	if got := s.fdsAcked(); len(got) != 2 {
		t.Errorf("the application heard of fds %v, want only a's and b's", got)
	}
	var gotB []string
	for _, e := range s.ackedOf(fdB) {
		gotB = append(gotB, e.Type+" "+e.Data)
	}
	if want := []string{"open ", "message fine", "close "}; !slices.Equal(gotB, want) {
		t.Errorf("b's events %q, want %q", gotB, want)
	}
}

// TestOverflowBytes: large messages hit the byte bound before the count.
func TestOverflowBytes(t *testing.T) {
	s := newSink(t)
	gate := make(chan struct{})
	s.setAnswer(s.blockUntil(gate))
	d, _ := newDispatcher(t, events.Config{URL: s.url, QueueBytes: 64 << 10, Overflow: events.OverflowDrop, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	a := th.dial(t, "/?id=a", nil)
	fd := s.fdOf(t, "a")
	big := strings.Repeat("x", 20<<10)
	send(t, a, big, big, big, big) // the fourth does not fit in 64 KiB
	waitStats(t, d, "one dropped", func(st events.Stats) bool { return st.Dropped.QueueBytes == 1 })
	close(gate)
	closeClient(t, a, 1000, "")
	s.waitClosed(t, fd)
	if got := len(s.ackedOf(fd)); got != 5 { // open, 3 messages, close
		t.Errorf("%d events delivered, want 5", got)
	}
}

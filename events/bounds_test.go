package events_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

// TestOpenCloseBounded: connections that open and close with large
// headers while the application answers 503 keep the pending events
// within the event and byte bounds, and every event left out is counted.
func TestOpenCloseBounded(t *testing.T) {
	s := newSink(t)
	s.setAnswer(func(*http.Request, *sinkRequest) (int, string) { return http.StatusServiceUnavailable, "" })
	const (
		queueTotal = 100
		queueBytes = 1 << 20
		conns      = 300
	)
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 2, QueueTotal: queueTotal, QueueBytes: queueBytes})
	header := http.Header{"X-Big": {strings.Repeat("h", 60<<10)}}
	check := func(when string) {
		t.Helper()
		st := d.Stats()
		// The close events reserved count too: they are sure to come.
		n, size := st.Pending+st.Reserved, st.PendingBytes+st.Reserved*events.MaxCloseEventSize
		if n > queueTotal || size > queueBytes {
			t.Fatalf("%s: %d events, %d bytes pending or reserved; want at most %d and %d", when, n, size, queueTotal, queueBytes)
		}
	}
	// Opens first, then closes: the opens that fit stay pending (those in
	// flight are retried), the others are dropped.
	for i := range conns {
		d.OnOpen(bridge.ConnInfo{FD: int64(i + 1), Path: "/", Header: header})
		check(fmt.Sprint("open ", i))
	}
	for i := range conns {
		d.OnClose(int64(i+1), bridge.CloseEvent{Code: 1006})
		check(fmt.Sprint("close ", i))
	}
	// And pairs, each closed at once.
	for i := range conns {
		fd := int64(conns + i + 1)
		d.OnOpen(bridge.ConnInfo{FD: fd, Path: "/", Header: header})
		d.OnClose(fd, bridge.CloseEvent{Code: 1000})
		check(fmt.Sprint("pair ", i))
	}
	st := d.Stats()
	dr := st.Dropped
	if dr.QueueBytes == 0 || dr.Unopened == 0 {
		t.Errorf("stats %+v: want opens dropped for lack of room and connections closed before their open was sent dropped", st)
	}
	// Every event is pending or dropped (none is acknowledged: 503).
	if got := uint64(st.Pending) + dr.QueueFD + dr.QueueTotal + dr.QueueBytes + dr.Unopened; got != 4*conns {
		t.Errorf("stats %+v: %d events pending or dropped, want all %d", st, got, 4*conns)
	}
	if err := d.Admit(); err != nil {
		t.Errorf("Admit with %d events pending: %v, want room for a handshake", st.Pending, err)
	}

	// The application comes back: what was pending is delivered.
	s.setAnswer(nil)
	settle(t, d)
	if st := d.Stats(); st.PendingBytes != 0 || st.Reserved != 0 {
		t.Errorf("stats %+v once delivered, want nothing pending or reserved", st)
	}
	for _, fd := range s.fdsAcked() {
		evs := s.ackedOf(fd)
		if len(evs) != 2 || evs[0].Type != "open" || evs[1].Type != "close" || evs[1].Seq != 2 {
			t.Errorf("fd %d: delivered %+v, want its open and its close", fd, evs)
		}
	}
}

// fdsAcked lists the fds with acknowledged events.
func (s *sink) fdsAcked() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fds []int64
	for fd := range s.acked {
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	return fds
}

// TestAdmit: past the bounds the hub refuses a handshake with 503 and
// Retry-After (it asks Admit before the upgrade), counted as events_backlog.
func TestAdmit(t *testing.T) {
	th, d, s, gate, fds := fullHub(t, nil)
	if err := d.Admit(); !errors.Is(err, events.ErrBackpressure) {
		t.Errorf("Admit with two opens and two closes pending: %v, want ErrBackpressure", err)
	}
	c, resp, err := dialer.Dial(th.url+"/?id=c", nil)
	if err == nil {
		c.Close()
		t.Fatal("handshake accepted with the events backlog full")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("handshake with the backlog full: %s (Retry-After %q), want 503 with Retry-After", statusOf(resp), resp.Header.Get("Retry-After"))
	}
	if st := d.Stats(); st.HandshakesRefused != 2 {
		t.Errorf("stats %+v, want 2 handshakes refused (one asked here, one by the hub)", st)
	}
	if st := th.Stats(); st.Refused.EventsBacklog != 1 {
		t.Errorf("hub refused %+v, want 1 events_backlog", st.Refused)
	}
	drain(t, th, d, s, gate, fds)
}

// TestOpenDoesNotFit: an open that does not fit all the same (a hub that
// does not ask Admit, or a race between two handshakes) closes its
// connection with 1013 without a word to the application.
func TestOpenDoesNotFit(t *testing.T) {
	hide := struct{ bridge.Listener }{}
	th, d, s, gate, fds := fullHub(t, &hide)
	c := th.dial(t, "/?id=c", nil)
	if ce := testutil.ReadClose(t, c, wait); ce.Code != events.CloseTryAgainLater {
		t.Errorf("c got close %d, want 1013", ce.Code)
	}
	waitStats(t, d, "c's open and close dropped", func(s events.Stats) bool {
		return s.Dropped.QueueTotal == 1 && s.Dropped.Unopened == 1
	})
	drain(t, th, d, s, gate, fds)
}

// fullHub serves a dispatcher with room for four events and a held
// application, and opens two connections: their opens in flight and their
// closes reserved fill the bounds. With hide, the hub's Listener is
// *hide set to the dispatcher behind an interface without Admit.
func fullHub(t *testing.T, hide *struct{ bridge.Listener }) (*testHub, *events.Dispatcher, *sink, chan struct{}, []*websocket.Conn) {
	t.Helper()
	s := newSink(t)
	gate := make(chan struct{})
	s.setAnswer(s.blockUntil(gate))
	d, _ := newDispatcher(t, events.Config{URL: s.url, QueueTotal: 4, Timeout: wait})
	var cfg bridge.Config
	if hide != nil {
		hide.Listener = d
		cfg.Listener = hide
	}
	th := startHub(t, d, false, cfg)
	if err := d.Admit(); err != nil {
		t.Fatalf("Admit with nothing pending: %v", err)
	}
	a := th.dial(t, "/?id=a", nil)
	b := th.dial(t, "/?id=b", nil)
	waitStats(t, d, "two opens and two closes counted", func(s events.Stats) bool { return s.Pending == 2 && s.Reserved == 2 })
	return th, d, s, gate, []*websocket.Conn{a, b}
}

// drain lets the application answer, closes fullHub's two connections and
// checks that their opens and closes, and nothing else, were delivered.
func drain(t *testing.T, th *testHub, d *events.Dispatcher, s *sink, gate chan struct{}, conns []*websocket.Conn) {
	t.Helper()
	fdA, fdB := s.fdOf(t, "a"), s.fdOf(t, "b")
	close(gate)
	for _, c := range conns {
		closeClient(t, c, 1000, "")
	}
	s.waitClosed(t, fdA, fdB)
	st := settle(t, d)
	if st.Delivered != 4 || st.Reserved != 0 || st.PendingBytes != 0 {
		t.Errorf("stats %+v, want 4 delivered, nothing pending or reserved", st)
	}
	if got := s.fdsAcked(); !slices.Equal(got, []int64{fdA, fdB}) {
		t.Errorf("the application heard of fds %v, want %v", got, []int64{fdA, fdB})
	}
	if err := d.Admit(); err != nil {
		t.Errorf("Admit once delivered: %v", err)
	}
}

// TestClosedBeforeOpenSent: a connection that closes while its open event
// still waits (not in flight) with nothing after it is withdrawn: the
// application never hears of it. One that sent messages meanwhile is
// delivered whole.
func TestClosedBeforeOpenSent(t *testing.T) {
	s := newSink(t)
	gate := make(chan struct{})
	s.setAnswer(s.blockUntil(gate))
	d, logs := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	a := th.dial(t, "/?id=a", nil)
	fdA := s.fdOf(t, "a") // in flight, held
	b := th.dial(t, "/?id=b", nil)
	c := th.dial(t, "/?id=c", nil)
	send(t, c, "one", "two")
	waitStats(t, d, "b's and c's events queued", func(s events.Stats) bool { return s.Pending == 5 })
	closeClient(t, b, 1000, "")
	closeClient(t, c, 1000, "")
	waitStats(t, d, "b withdrawn", func(s events.Stats) bool { return s.Dropped.Unopened == 2 && s.Pending == 5 })
	close(gate)
	closeClient(t, a, 1000, "")
	s.waitClosed(t, fdA)
	fdC := s.fdOf(t, "c")
	s.waitClosed(t, fdC)
	checkRun(t, fdC, s.ackedOf(fdC), []string{"one", "two"})
	settle(t, d)
	if got := s.fdsAcked(); !slices.Equal(got, []int64{fdA, fdC}) {
		t.Errorf("the application heard of fds %v, want a's and c's %d %d", got, fdA, fdC)
	}
	if recs := logs.Records("event dropped"); len(recs) == 0 || recs[0]["reason"] != events.DropUnopened {
		t.Errorf("drop log records %v, want one with reason %s", recs, events.DropUnopened)
	}
}

// TestPoisonEvent: an event the application fails on, while it accepts
// the others, holds its batch for the retry budget only: the batch is
// split, the other connections' events are delivered, and the poison
// event is dropped and counted; the connection's later events go on.
func TestPoisonEvent(t *testing.T) {
	s := newSink(t)
	hold := make(chan struct{})
	var held atomic.Bool
	s.setAnswer(func(r *http.Request, req *sinkRequest) (int, string) {
		for _, e := range req.Events {
			switch e.Data {
			case "poison":
				return http.StatusInternalServerError, ""
			case "hold":
				if !held.Swap(true) {
					s.block(r, hold)
				}
			}
		}
		return http.StatusOK, ""
	})
	d, logs := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Retries: 2, RetryMax: 20 * time.Millisecond, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	a := th.dial(t, "/?id=a", nil)
	fdA := s.fdOf(t, "a")
	p := th.dial(t, "/?id=p", nil)
	fdP := s.fdOf(t, "p")
	s.waitFor(t, "both opens acknowledged", func() bool { return len(s.acked[fdA]) == 1 && len(s.acked[fdP]) == 1 })
	send(t, a, "hold") // the only sender waits on it: what follows queues up
	s.waitFor(t, "hold in flight", func() bool { return held.Load() })
	send(t, a, "a2")
	send(t, p, "poison", "p2")
	waitStats(t, d, "a2, poison and p2 queued", func(s events.Stats) bool { return s.Pending == 4 })
	close(hold) // the next batch holds a2, poison and p2
	s.waitFor(t, "a2 acknowledged", func() bool { return len(s.acked[fdA]) == 3 })
	s.waitFor(t, "p2 acknowledged", func() bool { return len(s.acked[fdP]) == 2 })
	closeClient(t, a, 1000, "")
	closeClient(t, p, 1000, "")
	s.waitClosed(t, fdA, fdP)
	checkRun(t, fdA, s.ackedOf(fdA), []string{"hold", "a2"})
	var got []string
	for _, e := range s.ackedOf(fdP) {
		got = append(got, fmt.Sprint(e.Type, " ", e.Seq, " ", e.Data))
	}
	// The poison took seq 2: the gap shows the loss.
	if want := []string{"open 1 ", "message 3 p2", "close 4 "}; !slices.Equal(got, want) {
		t.Errorf("p's events %q, want %q", got, want)
	}
	st := settle(t, d)
	if st.Dropped.Poison != 1 || st.Splits < 2 {
		t.Errorf("stats %+v, want 1 poison dropped, 2 splits (per fd, then per event)", st)
	}
	recs := logs.Records("event dropped")
	if len(recs) != 1 || recs[0]["fd"] != float64(fdP) || recs[0]["reason"] != events.DropPoison || recs[0]["seq"] != float64(2) {
		t.Errorf("drop log records %v, want one for fd %d seq 2, reason %s", recs, fdP, events.DropPoison)
	}
}

// TestDownIsNotPoison: while the application fails everything, batches are
// split past their retry budget but nothing is dropped; all is delivered
// once it is back.
func TestDownIsNotPoison(t *testing.T) {
	s := newSink(t)
	var down atomic.Bool
	down.Store(true)
	s.setAnswer(func(*http.Request, *sinkRequest) (int, string) {
		if down.Load() {
			return http.StatusBadGateway, ""
		}
		return http.StatusOK, ""
	})
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Retries: 1, RetryMax: 20 * time.Millisecond, Timeout: wait})
	for fd := int64(1); fd <= 3; fd++ {
		d.OnOpen(bridge.ConnInfo{FD: fd, Path: "/"})
		d.OnMessage(fd, bridge.OpText, []byte("m"))
		d.OnMessage(fd, bridge.OpText, []byte("n"))
	}
	waitStats(t, d, "split and retried alone", func(s events.Stats) bool { return s.Splits >= 1 && s.Retries >= 10 })
	down.Store(false)
	for fd := int64(1); fd <= 3; fd++ {
		d.OnClose(fd, bridge.CloseEvent{Code: 1000})
	}
	s.waitClosed(t, 1, 2, 3)
	for fd := int64(1); fd <= 3; fd++ {
		checkRun(t, fd, s.ackedOf(fd), []string{"m", "n"})
	}
	if st := settle(t, d); st.Dropped != (events.DropStats{}) {
		t.Errorf("stats %+v, want nothing dropped", st)
	}
}

// TestURLQueryNotLogged: the events and auth URLs' query strings (which
// may hold a token) and passwords appear in no log line.
func TestURLQueryNotLogged(t *testing.T) {
	down := newDownListener(t)
	ln := down.Listener
	go func() { // accepts and closes until the listener is closed
		for {
			if _, err := down.Accept(); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	base := "http://user:pa55word@" + ln.Addr().String()
	d, logs := newDispatcher(t, events.Config{URL: base + "/events?token=s3cret-events", AuthURL: base + "/auth?token=s3cret-auth"})
	d.OnOpen(bridge.ConnInfo{FD: 1, Path: "/"})
	waitStats(t, d, "a retry", func(s events.Stats) bool { return s.Retries >= 1 })
	th := startHub(t, d, true, bridge.Config{})
	if _, resp, err := dialer.Dial(th.url+"/", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial: %v (%s), want HTTP 503", err, statusOf(resp))
	} else {
		resp.Body.Close()
	}
	for _, msg := range []string{"events delivery failed, will retry", "authorization failed, handshake refused with 503"} {
		recs := logs.Records(msg)
		if len(recs) == 0 {
			t.Fatalf("no %q logged:\n%s", msg, logs)
		}
		if e, _ := recs[0]["err"].(string); !strings.Contains(e, ln.Addr().String()) || !strings.Contains(e, "?…") {
			t.Errorf("%q: err %q, want the URL without its query", msg, e)
		}
	}
	// Shut down now: the open event cannot be delivered, and the lines
	// that shutdown writes are checked too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = d.Shutdown(ctx)
	for _, secret := range []string{"s3cret", "pa55word"} {
		if out := logs.String(); strings.Contains(out, secret) {
			t.Errorf("the log holds %q:\n%s", secret, out)
		}
	}
}

// TestPoisonOpen: an open event the application fails on is dropped like
// any poison event, and its connection is closed with 1011: the
// application never heard of it, so its later events are dropped too.
func TestPoisonOpen(t *testing.T) {
	s := newSink(t)
	s.setAnswer(func(_ *http.Request, req *sinkRequest) (int, string) {
		for _, e := range req.Events {
			if e.Type == "open" && strings.Contains(e.Query, "id=p") {
				return http.StatusInternalServerError, ""
			}
		}
		return http.StatusOK, ""
	})
	d, _ := newDispatcher(t, events.Config{URL: s.url, Concurrency: 1, Retries: 1, RetryMax: 20 * time.Millisecond, Timeout: wait})
	th := startHub(t, d, false, bridge.Config{})
	a := th.dial(t, "/?id=a", nil)
	fdA := s.fdOf(t, "a")
	s.waitFor(t, "a's open acknowledged", func() bool { return len(s.acked[fdA]) == 1 })
	p := th.dial(t, "/?id=p", nil)
	s.fdOf(t, "p")   // its open has been tried
	send(t, a, "a1") // acknowledged: the application is up
	if ce := testutil.ReadClose(t, p, wait); ce.Code != events.CloseInternalError {
		t.Errorf("p got close %d, want 1011", ce.Code)
	}
	closeClient(t, a, 1000, "")
	s.waitClosed(t, fdA)
	st := settle(t, d)
	if st.Dropped.Poison != 1 || st.Dropped.Unopened != 1 || st.Reserved != 0 {
		t.Errorf("stats %+v, want the open dropped as poison, the close as unopened, nothing reserved", st)
	}
	if got := s.fdsAcked(); !slices.Equal(got, []int64{fdA}) {
		t.Errorf("the application acknowledged events of fds %v, want only a's %d", got, fdA)
	}
}

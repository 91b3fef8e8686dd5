package events_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

// wait bounds what should happen at once: long enough never to fail on a
// loaded machine, short enough to turn a hang into a failure.
const wait = 20 * time.Second

// wireEvent is an event as the application receives it.
type wireEvent struct {
	Type        string      `json:"type"`
	FD          int64       `json:"fd"`
	Seq         uint64      `json:"seq"`
	Time        int64       `json:"time"`
	Path        string      `json:"path"`
	Query       string      `json:"query"`
	Headers     http.Header `json:"headers"`
	RemoteAddr  string      `json:"remote_addr"`
	Subprotocol string      `json:"subprotocol"`
	User        string      `json:"user"`
	Groups      []string    `json:"groups"`
	Opcode      int         `json:"opcode"`
	Data        string      `json:"data"`
	Encoding    string      `json:"encoding"`
	Code        int         `json:"code"`
	Reason      string      `json:"reason"`
	By          string      `json:"by"`
	LostNode    *int        `json:"lost_node"`
}

// sinkRequest is one request the sink received.
type sinkRequest struct {
	Kind, Node, Timestamp, Signature, Attempt, ContentType string
	Body                                                   []byte
	Node0                                                  int         // "node" of the body
	Events                                                 []wireEvent // of an events request
	Status                                                 int         // the sink's answer
	Reply                                                  string      // its body
}

// sink is the PHP application's endpoint: a real HTTP server on loopback
// that records every request. answer decides each answer (default 200);
// it may block until the request's context ends or the sink is released.
type sink struct {
	t   testing.TB
	srv *httptest.Server
	url string

	mu       sync.Mutex
	cond     *sync.Cond
	reqs     []*sinkRequest
	acked    map[int64][]wireEvent // events of 2xx answers, by fd, in arrival order
	inFlight map[int64]bool        // fds in a request being answered
	overlap  []string              // fds seen in two requests at once
	answer   func(r *http.Request, req *sinkRequest) (int, string)
	released chan struct{} // closed at cleanup: every blocked answer returns
}

// newSink starts a sink; it is closed at the end of the test, after
// everything registered later (LIFO) has stopped.
func newSink(t testing.TB) *sink {
	t.Helper()
	s := newSinkOn(t, nil)
	return s
}

// newSinkOn starts a sink on ln (nil: a new loopback listener).
func newSinkOn(t testing.TB, ln net.Listener) *sink {
	t.Helper()
	s := &sink{t: t, acked: map[int64][]wireEvent{}, inFlight: map[int64]bool{}, released: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if ln != nil {
		s.srv.Listener.Close()
		s.srv.Listener = ln
	}
	s.srv.Start()
	s.url = s.srv.URL + "/events"
	t.Cleanup(func() {
		s.release()
		s.srv.Close()
	})
	return s
}

// release lets every blocked answer return; later answers do not block.
func (s *sink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.released:
	default:
		close(s.released)
	}
}

// setAnswer sets how the sink answers from now on.
func (s *sink) setAnswer(f func(r *http.Request, req *sinkRequest) (status int, body string)) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

// blockUntil is an answer that waits for ch (or the end of the request or
// of the test), then answers 200.
func (s *sink) blockUntil(ch <-chan struct{}) func(*http.Request, *sinkRequest) (int, string) {
	return func(r *http.Request, _ *sinkRequest) (int, string) {
		s.block(r, ch)
		return http.StatusOK, ""
	}
}

// block waits for ch, the end of the request r, or the end of the test.
func (s *sink) block(r *http.Request, ch <-chan struct{}) {
	select {
	case <-ch:
	case <-r.Context().Done():
	case <-s.released:
	}
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := &sinkRequest{
		Kind: r.Header.Get(events.HeaderKind), Node: r.Header.Get(events.HeaderNode),
		Timestamp: r.Header.Get(events.HeaderTimestamp), Signature: r.Header.Get(events.HeaderSignature),
		Attempt: r.Header.Get(events.HeaderAttempt), ContentType: r.Header.Get("Content-Type"), Body: body,
	}
	if r.Method != http.MethodPost {
		s.t.Errorf("sink: %s request, want POST", r.Method)
	}
	if req.Kind == "events" {
		var b struct {
			Node   *int        `json:"node"`
			Events []wireEvent `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil || b.Node == nil {
			s.t.Errorf("sink: events body %q does not decode: %v", body, err)
		} else {
			req.Node0, req.Events = *b.Node, b.Events
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	for _, fd := range req.fds() {
		if s.inFlight[fd] {
			s.overlap = append(s.overlap, fmt.Sprint(fd))
		}
		s.inFlight[fd] = true
	}
	answer := s.answer
	s.cond.Broadcast()
	s.mu.Unlock()

	status, reply := http.StatusOK, ""
	if answer != nil {
		status, reply = answer(r, req)
	}
	s.mu.Lock()
	req.Status, req.Reply = status, reply
	for _, fd := range req.fds() {
		delete(s.inFlight, fd) // before the answer: the next batch of fd may follow it at once
	}
	if status >= 200 && status <= 299 && r.Context().Err() == nil {
		for _, e := range req.Events {
			s.acked[e.FD] = append(s.acked[e.FD], e)
		}
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	if status >= 300 && status <= 399 {
		w.Header().Set("Location", "/elsewhere")
	}
	if reply != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply)
}

// fds lists the fds of an events request, once each.
func (r *sinkRequest) fds() []int64 {
	var fds []int64
	seen := map[int64]bool{}
	for _, e := range r.Events {
		if !seen[e.FD] {
			seen[e.FD] = true
			fds = append(fds, e.FD)
		}
	}
	return fds
}

// waitFor blocks until cond (called with s.mu held) is true.
func (s *sink) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	stop := time.AfterFunc(wait, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer stop.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", wait, what)
		}
		s.cond.Wait()
	}
}

// waitClosed waits until the close event of every fd is acknowledged.
func (s *sink) waitClosed(t testing.TB, fds ...int64) {
	t.Helper()
	s.waitFor(t, fmt.Sprintf("the close events of %v", fds), func() bool {
		for _, fd := range fds {
			ev := s.acked[fd]
			if len(ev) == 0 || ev[len(ev)-1].Type != "close" {
				return false
			}
		}
		return true
	})
}

// ackedOf returns a copy of the acknowledged events of fd.
func (s *sink) ackedOf(fd int64) []wireEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wireEvent(nil), s.acked[fd]...)
}

// requests returns the requests so far.
func (s *sink) requests() []*sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*sinkRequest, len(s.reqs))
	for i, r := range s.reqs {
		c := *r
		out[i] = &c
	}
	return out
}

// signature is the X-Wsbridge-Signature the contract gives body.
func signature(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + "."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// newDispatcher returns a Dispatcher with cfg (RetryMax, Timeout and
// AuthTimeout defaulting to test values), logging to the returned buffer;
// it is shut down at the end of the test (before the sinks made earlier
// are closed, after the hubs made later).
func newDispatcher(t testing.TB, cfg events.Config) (*events.Dispatcher, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 200 * time.Millisecond
	}
	// Long request timeouts unless the test sets its own: on a slow,
	// loaded machine the defaults (5s, 3s) could end a request meant to
	// succeed and add a retry or a 503 the test does not expect.
	if cfg.Timeout == 0 {
		cfg.Timeout = wait
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = wait
	}
	d, err := events.New(cfg)
	if err != nil {
		t.Fatalf("events.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = d.Shutdown(ctx) // the tests check what they expect of it themselves
	})
	return d, logs
}

// testHub is a bridge.Hub served on loopback whose events go to a
// Dispatcher.
type testHub struct {
	*bridge.Hub
	srv *httptest.Server
	url string // ws://127.0.0.1:port/
}

// startHub serves a Hub with cfg, d as its Listener unless cfg has one
// (and Authorize when withAuth) and closer; it is shut down at the end of the test.
func startHub(t testing.TB, d *events.Dispatcher, withAuth bool, cfg bridge.Config) *testHub {
	t.Helper()
	if cfg.Listener == nil {
		cfg.Listener = d
	}
	if withAuth {
		cfg.Authorize = d.Authorize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := bridge.New(cfg)
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	d.SetCloser(h)
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.Server()
	srv.Start()
	th := &testHub{Hub: h, srv: srv, url: "ws://" + srv.Listener.Addr().String()}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("hub Shutdown: %v", err)
		}
	})
	return th
}

var dialer = &websocket.Dialer{HandshakeTimeout: wait}

// dial connects a gorilla client to path (with its query) and returns it.
func (th *testHub) dial(t testing.TB, path string, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := dialer.Dial(th.url+path, header)
	if err != nil {
		t.Fatalf("dial %s: %v (%s)", path, err, statusOf(resp))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return resp.Status
}

// fdOf waits until the sink has received (not necessarily acknowledged)
// the open event of the connection dialed with ?id=id, and returns its fd.
func (s *sink) fdOf(t testing.TB, id string) int64 {
	t.Helper()
	var fd int64
	s.waitFor(t, "the open event of "+id, func() bool {
		for _, r := range s.reqs {
			for _, e := range r.Events {
				if e.Type == "open" && strings.Contains("&"+e.Query+"&", "&id="+id+"&") {
					fd = e.FD
					return true
				}
			}
		}
		return false
	})
	return fd
}

// waitStats polls the Dispatcher's counters until cond holds (they change
// on goroutines the test does not see; polling with a bound is the only
// way to wait for them).
func waitStats(t testing.TB, d *events.Dispatcher, what string, cond func(events.Stats) bool) events.Stats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := d.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; stats %+v", wait, what, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// send writes text messages to c.
func send(t testing.TB, c *websocket.Conn, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatalf("write %q: %v", m, err)
		}
	}
}

// closeClient sends a close frame with code and reason and waits for the
// server's answer.
func closeClient(t testing.TB, c *websocket.Conn, code int, reason string) {
	t.Helper()
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(wait)); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

package tests

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// phpApp is a Go stand-in for the PHP application: it receives the
// binary's event batches and auth requests, checks their signature, and
// answers auth requests with allow unless the handshake's query says
// deny.
type phpApp struct {
	tb     testing.TB
	secret string
	srv    *httptest.Server

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when an event arrives
	events  []appEvent
	auths   int
}

type appEvent struct {
	Type        string              `json:"type"`
	FD          int64               `json:"fd"`
	Seq         int                 `json:"seq"`
	Query       string              `json:"query"`
	Headers     map[string][]string `json:"headers"`
	Subprotocol string              `json:"subprotocol"`
	User        string              `json:"user"`
	Groups      []string            `json:"groups"`
	Opcode      int                 `json:"opcode"`
	Data        string              `json:"data"`
	Encoding    string              `json:"encoding"`
	Code        int                 `json:"code"`
	By          string              `json:"by"`
}

func newPHPApp(tb testing.TB, secret string) *phpApp {
	a := &phpApp{tb: tb, secret: secret, changed: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	tb.Cleanup(a.srv.Close)
	return a
}

func (a *phpApp) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	ts := r.Header.Get("X-Wsbridge-Timestamp")
	m := hmac.New(sha256.New, []byte(a.secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := "v1=" + hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(r.Header.Get("X-Wsbridge-Signature")), []byte(want)) {
		a.tb.Errorf("request with a bad signature %q (timestamp %q): %s", r.Header.Get("X-Wsbridge-Signature"), ts, body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > 300*time.Second {
		a.tb.Errorf("request timestamp %q is not now", ts)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Wsbridge-Node") != "3" {
		a.tb.Errorf("request %s with content type %q, node %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Wsbridge-Node"))
	}
	switch r.Header.Get("X-Wsbridge-Kind") {
	case "auth":
		var hs struct {
			Query string `json:"query"`
		}
		_ = json.Unmarshal(body, &hs)
		a.mu.Lock()
		a.auths++
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(hs.Query, "deny") {
			_, _ = io.WriteString(w, `{"allow": false, "status": 401, "message": "who are you"}`)
			return
		}
		_, _ = io.WriteString(w, `{"allow": true, "user": 42, "groups": ["room:1"]}`)
	case "events":
		var batch struct {
			Node   int        `json:"node"`
			Events []appEvent `json:"events"`
		}
		if err := json.Unmarshal(body, &batch); err != nil || batch.Node != 3 {
			a.tb.Errorf("events body %s: node %d, %v", body, batch.Node, err)
		}
		a.mu.Lock()
		a.events = append(a.events, batch.Events...)
		close(a.changed)
		a.changed = make(chan struct{})
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		a.tb.Errorf("request of kind %q", r.Header.Get("X-Wsbridge-Kind"))
	}
}

// waitEvents waits until n events have arrived and returns them.
func (a *phpApp) waitEvents(n int) []appEvent {
	a.tb.Helper()
	timeout := time.After(readTimeout)
	for {
		a.mu.Lock()
		evs, changed := append([]appEvent(nil), a.events...), a.changed
		a.mu.Unlock()
		if len(evs) >= n {
			return evs
		}
		select {
		case <-changed:
		case <-timeout:
			a.tb.Fatalf("%d events within %s, want %d: %+v", len(evs), readTimeout, n, evs)
		}
	}
}

// TestEventsDelivered: the binary, with WSBRIDGE_EVENTS_* set, delivers a
// client's open, messages and close to the application, signed and in
// order; it asks the application to authorize each handshake first; on
// SIGTERM it delivers the close events of the clients it closes before it
// exits. The same in both read modes.
func TestEventsDelivered(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"goroutine", "poll"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testEventsDelivered(t, mode)
		})
	}
}

func testEventsDelivered(t *testing.T, mode string) {
	const secret = "e2e-secret"
	app := newPHPApp(t, secret)
	p := startDefault(t, []string{
		"WSBRIDGE_EVENTS_URL=" + app.srv.URL + "/wsbridge/events",
		"WSBRIDGE_EVENTS_AUTH_URL=" + app.srv.URL + "/wsbridge/auth",
		"WSBRIDGE_EVENTS_SECRET=" + secret,
		"WSBRIDGE_NODE_ID=3",
		"WSBRIDGE_READ_MODE=" + mode,
	})
	if rec := p.waitFor("websocket listening"); rec["read_mode"] != mode {
		t.Errorf("websocket listening record %v, want read_mode %s", rec, mode)
	}
	if rec, ok := p.find("events configured"); !ok || rec["signed"] != true {
		t.Errorf("events configured record %v, want signed", rec)
	}
	if strings.Contains(p.log(), secret) {
		t.Errorf("the secret is in the log:\n%s", p.log())
	}

	// A refused handshake: the application's status and message.
	resp := dialStatus(t, "ws://"+p.addr+"/?deny=1")
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(msg)) != "who are you" {
		t.Errorf("denied handshake: %s %q, want 401 who are you", resp.Status, msg)
	}

	ws, _, err := dialer.Dial("ws://"+p.addr+"/?room=1&token=abc", http.Header{"X-App": {"e2e"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := newClient(t, ws)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello <world> & é")); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "done"), time.Now().Add(readTimeout)); err != nil {
		t.Fatal(err)
	}
	if code := c.closeCode(); code != 4001 {
		t.Errorf("close echo %d, want 4001", code)
	}

	evs := app.waitEvents(4)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %d", e.Type, e.Seq))
		if e.FD != evs[0].FD || e.FD>>43 != 3 {
			t.Errorf("event %+v: fd %d, want %d of node 3", e, e.FD, evs[0].FD)
		}
	}
	if want := "open 1,message 2,message 3,close 4"; strings.Join(got, ",") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	open, text, bin, cl := evs[0], evs[1], evs[2], evs[3]
	if open.Query != "room=1&token=abc" || open.Headers["X-App"][0] != "e2e" || open.User != "42" || len(open.Groups) != 1 || open.Groups[0] != "room:1" {
		t.Errorf("open event %+v: want the query, the X-App header, user 42 and group room:1", open)
	}
	if text.Opcode != 1 || text.Data != "hello <world> & é" || text.Encoding != "" {
		t.Errorf("text message event %+v", text)
	}
	if b, err := base64.StdEncoding.DecodeString(bin.Data); bin.Opcode != 2 || bin.Encoding != "base64" || err != nil || string(b) != "\x00\x01\x02\xff" {
		t.Errorf("binary message event %+v", bin)
	}
	if cl.Code != 4001 || cl.By != "client" {
		t.Errorf("close event %+v, want 4001 by client", cl)
	}

	// Shutdown: the close event of a client the binary closes arrives
	// before it exits.
	c2 := connect(t, "ws://"+p.addr+"/?second=1")
	c2.ping("registered")
	app.waitEvents(5)
	p.stop()
	if code := c2.closeCode(); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	app.mu.Lock()
	evs = append([]appEvent(nil), app.events...) // no waiting: the binary has exited
	app.mu.Unlock()
	if len(evs) != 6 {
		t.Fatalf("%d events when the binary exited, want 6: %+v", len(evs), evs)
	}
	if last := evs[5]; last.Type != "close" || last.Code != websocket.CloseGoingAway || last.By != "server" || last.Seq != 2 {
		t.Errorf("last event %+v, want the second client's close 1001 by server, seq 2", last)
	}
	if rec, ok := p.find("events stopped"); !ok || rec["delivered"] != float64(6) || rec["drained"] != true {
		t.Errorf("events stopped record %v, want 6 delivered, drained", rec)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.auths != 3 {
		t.Errorf("%d auth requests, want 3", app.auths)
	}
}

// TestEventsBacklogRefusesHandshakes: while the application does not answer,
// the pending events (each open with its reserved close) reach
// WSBRIDGE_EVENTS_QUEUE_TOTAL and the binary refuses new handshakes with
// 503 and Retry-After instead of queueing without bound (issue 8, defect
// 1); once the application answers, everything pending is delivered and
// handshakes pass again.
func TestEventsBacklogRefusesHandshakes(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	opened := map[int64]bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		var batch struct{ Events []appEvent }
		_ = json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		for _, e := range batch.Events {
			if e.Type == "open" {
				opened[e.FD] = true
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(app.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	p := startDefault(t, []string{"WSBRIDGE_EVENTS_URL=" + app.URL, "WSBRIDGE_MAX_CONNECTIONS=3", "WSBRIDGE_EVENTS_QUEUE_TOTAL=4",
		"WSBRIDGE_EVENTS_TIMEOUT=30s"})
	connect(t, "ws://"+p.addr+"/?id=a")
	connect(t, "ws://"+p.addr+"/?id=b")
	// Two opens pending and two closes reserved: the bound of 4 is reached
	// once the bridge has counted both opens (just after their upgrades);
	// a handshake that slips in before is closed at once (1013, its open
	// does not fit) and takes no room.
	deadline := time.Now().Add(readTimeout)
	for {
		ws, resp, err := dialer.Dial("ws://"+p.addr+"/?id=c", nil)
		if err == nil {
			ws.Close()
			if time.Now().After(deadline) {
				t.Fatal("handshakes still accepted with the events backlog full")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "not keeping up") {
			t.Fatalf("handshake with the events backlog full: %s, Retry-After %q, body %q; want 503 with Retry-After",
				resp.Status, resp.Header.Get("Retry-After"), body)
		}
		break
	}
	close(release)
	deadline = time.Now().Add(readTimeout)
	for {
		mu.Lock()
		n := len(opened)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d open events delivered once the application answered, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	connect(t, "ws://"+p.addr+"/?id=c") // room again
}

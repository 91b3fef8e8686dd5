package bridge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// TestAuthorizePanicReleasesTheSlot: a panicking Authorize answers the
// handshake 500, gives its slot back, and leaves Shutdown its deadline.
func TestAuthorizePanicReleasesTheSlot(t *testing.T) {
	th := startHub(t, bridge.Config{MaxConnections: 1, Authorize: func(r *http.Request) bridge.Authorization {
		if r.URL.Query().Get("id") == "boom" {
			panic("authorize exploded")
		}
		return bridge.Authorization{Allow: true}
	}})
	for range 3 { // more than the one slot: a leaked slot would refuse the next
		_, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=boom", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("dial with a panicking Authorize: %v, %v; want HTTP 500", resp, err)
		}
	}
	if n := th.Count(); n != 0 {
		t.Fatalf("%d slots held after the panics, want 0", n)
	}
	th.dial(t, "fine")
	if got := th.Stats().Refused.InternalError; got != 3 {
		t.Errorf("Stats().Refused.InternalError = %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// serveHub serves a Hub with cfg as it is (Listener included) through
// Server() on a loopback socket, and shuts both down at the end.
func serveHub(t *testing.T, cfg bridge.Config) (*bridge.Hub, *httptest.Server) {
	t.Helper()
	return serve(t, cfg, nil)
}

// dialStatus dials and returns the HTTP status of a refused handshake
// (101 for an accepted one, which it closes at the end of the test).
func dialStatus(t *testing.T, url string, h http.Header) (int, http.Header) {
	t.Helper()
	c, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(url, h)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		return http.StatusSwitchingProtocols, resp.Header
	}
	if resp == nil {
		t.Fatalf("dial %s: %v, no HTTP answer", url, err)
	}
	return resp.StatusCode, resp.Header
}

func TestNonWebSocketRequests(t *testing.T) {
	th := startHub(t, bridge.Config{Paths: []string{"/ws"}})
	addr := th.srv.Listener.Addr().String()
	for _, tt := range []struct {
		request string
		status  int
		header  string // a header the answer must have, "Name: value"
	}{
		{"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest, "Connection: close"},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", http.StatusBadRequest, "Connection: close"},
		{"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed, "Allow: GET"},
		// A body announced and never sent: answered at once, the
		// connection closed rather than waiting for the body.
		{"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", http.StatusMethodNotAllowed, "Connection: close"},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound, ""},
		{"PUT /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", http.StatusNotFound, "Connection: close"},
	} {
		rc := dialRaw(t, addr)
		fmt.Fprint(rc, tt.request)
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != tt.status {
			t.Fatalf("%q: %v, %v; want %d", tt.request, resp, err, tt.status)
		}
		if tt.header == "Connection: close" { // ReadResponse turns the header into resp.Close
			if !resp.Close {
				t.Errorf("%q: no Connection: close", tt.request)
			}
		} else if name, value, ok := strings.Cut(tt.header, ": "); ok && resp.Header.Get(name) != value {
			t.Errorf("%q: %s: %q, want %q", tt.request, name, resp.Header.Get(name), value)
		}
		if resp.Close {
			io.Copy(io.Discard, resp.Body)
			rc.expectEOF(t)
		}
	}
	if th.Count() != 0 {
		t.Fatalf("%d slots held, want 0", th.Count())
	}
}

func TestMaxConnectionsPerIP(t *testing.T) {
	th := startHub(t, bridge.Config{MaxConnectionsPerIP: 2, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	url := th.url + "/?id="
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	a, _ := th.dialWith(t, &websocket.Dialer{HandshakeTimeout: wait}, "a") // 127.0.0.1 itself
	th.dial(t, "b")
	if status, h := dialStatus(t, url+"c", nil); status != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" {
		t.Fatalf("third from 127.0.0.1: HTTP %d, Retry-After %q; want 503, 1", status, h.Get("Retry-After"))
	}
	// Behind the trusted proxy, each client address counts alone; IPv6
	// addresses by their /64.
	for _, tt := range []struct {
		id, ip string
		status int
	}{
		{"d", "203.0.113.1", 101}, {"e", "203.0.113.1", 101}, {"f", "203.0.113.1", 503}, {"g", "203.0.113.2", 101},
		{"h", "2001:db8:1:2::1", 101}, {"i", "2001:db8:1:2::ffff", 101}, {"j", "2001:db8:1:2:ffff::", 503}, {"k", "2001:db8:1:3::1", 101},
	} {
		if status, _ := dialStatus(t, url+tt.id, xff(tt.ip)); status != tt.status {
			t.Errorf("%s from %s: HTTP %d, want %d", tt.id, tt.ip, status, tt.status)
		}
	}
	if got := th.Stats().Refused.PerIP; got != 3 {
		t.Errorf("Stats().Refused.PerIP = %d, want 3", got)
	}
	// A connection that ends gives its address's slot back.
	a.Close()
	th.rec.closeOf(t, th.rec.fdOf(t, "a"))
	deadline := time.Now().Add(wait)
	for {
		status, _ := dialStatus(t, url+"again", nil)
		if status == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot for 127.0.0.1 after one of its connections ended: HTTP %d", status)
		}
		time.Sleep(time.Millisecond) // the slot is released just after the close event
	}
}

func TestClientAddressBehindTrustedProxies(t *testing.T) {
	authorized := make(chan string, 1)
	trusted := startHub(t, bridge.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")},
		Authorize: func(r *http.Request) bridge.Authorization {
			authorized <- r.RemoteAddr
			return bridge.Authorization{Allow: true}
		}})
	untrusted := startHub(t, bridge.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for i, tt := range []struct {
		name   string
		header http.Header
		want   string // "" means the TCP peer's own address
	}{
		{"one address", http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7:0"},
		{"right-most untrusted", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}}, "203.0.113.7:0"},
		{"trusted hops skipped", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7, 10.1.2.3"}}, "203.0.113.7:0"},
		{"several headers in order", http.Header{"X-Forwarded-For": {"198.51.100.1", "203.0.113.7,10.0.0.9"}}, "203.0.113.7:0"},
		{"garbage stops the walk", http.Header{"X-Forwarded-For": {"203.0.113.7, not-an-ip, 10.1.2.3"}}, "10.1.2.3:0"},
		{"garbage at the right", http.Header{"X-Forwarded-For": {"203.0.113.7, not-an-ip"}}, ""},
		{"every hop trusted", http.Header{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2"}}, "10.0.0.1:0"},
		{"with a port", http.Header{"X-Forwarded-For": {"[2001:db8::1]:4711"}}, "[2001:db8::1]:0"},
		{"IPv4 in IPv6", http.Header{"X-Forwarded-For": {"::ffff:203.0.113.7"}}, "203.0.113.7:0"},
		{"X-Real-IP", http.Header{"X-Real-Ip": {"203.0.113.9"}}, "203.0.113.9:0"},
		{"X-Forwarded-For wins", http.Header{"X-Real-Ip": {"203.0.113.9"}, "X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7:0"},
		{"no header", nil, ""},
	} {
		for _, hub := range []*testHub{trusted, untrusted} {
			id := fmt.Sprint(i)
			c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(hub.url+"/?id="+id, tt.header)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			hub.rec.fdOf(t, id)
			var seen string // by Authorize
			if hub == trusted {
				seen = <-authorized
			}
			hub.rec.mu.Lock()
			got := hub.rec.opens[id].RemoteAddr
			hub.rec.mu.Unlock()
			want := tt.want
			if want == "" || hub == untrusted { // an untrusted peer's headers are ignored
				want = c.LocalAddr().String()
			}
			if got != want {
				t.Errorf("%s (trusted peer: %v): RemoteAddr %q, want %q", tt.name, hub == trusted, got, want)
			}
			if hub == trusted && seen != want {
				t.Errorf("%s: Authorize saw RemoteAddr %q, want %q", tt.name, seen, want)
			}
			c.Close()
		}
	}
}

func TestMaxHandshakes(t *testing.T) {
	h, srv := serveHub(t, bridge.Config{MaxHandshakes: 2})
	addr := srv.Listener.Addr().String()
	// Two connections that never send their request hold both places.
	slow := []*rawConn{dialRaw(t, addr), dialRaw(t, addr)}
	waitStats(t, h, "2 handshakes in progress", func(s bridge.Stats) bool { return s.Handshakes == 2 })
	third := dialRaw(t, addr)
	resp, err := http.ReadResponse(third.br, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third connection: %v, %v; want 503 with Retry-After 1", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	third.expectEOF(t)
	if got := h.Stats().Refused.Handshakes; got != 1 {
		t.Errorf("Stats().Refused.Handshakes = %d, want 1", got)
	}
	slow[0].Close()
	waitStats(t, h, "1 handshake in progress", func(s bridge.Stats) bool { return s.Handshakes == 1 })
	c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial with a place free: %v", err)
	}
	defer c.Close()
	// An upgraded connection is no longer a handshake.
	waitStats(t, h, "the upgraded connection out of the count", func(s bridge.Stats) bool { return s.Handshakes == 1 && s.Connections == 1 })
}

func TestAcceptRate(t *testing.T) {
	// One handshake per 100 s, bursts of 2: the third is refused however
	// slow the machine.
	th := startHub(t, bridge.Config{AcceptRate: 0.01, AcceptBurst: 2})
	th.dial(t, "a")
	th.dial(t, "b")
	status, h := dialStatus(t, th.url+"/?id=c", nil)
	if status != http.StatusTooManyRequests {
		t.Fatalf("third handshake: HTTP %d, want 429", status)
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 100 {
		t.Fatalf("Retry-After %q, want 1..100 seconds", h.Get("Retry-After"))
	}
	// Requests that are not handshakes take no token.
	resp, err := http.Get("http://" + th.srv.Listener.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := th.Stats().Refused; got.Rate != 1 || got.MaxConnections != 0 {
		t.Errorf("Stats().Refused = %+v, want 1 for rate", got)
	}
}

// admitter is a Listener that refuses new connections while full is set.
type admitter struct {
	*recorder
	full atomic.Bool
}

var errBacklog = errors.New("events backlog full")

func (a *admitter) Admit() error {
	if a.full.Load() {
		return errBacklog
	}
	return nil
}

func TestAdmitterRefusesHandshakes(t *testing.T) {
	l := &admitter{recorder: newRecorder()}
	var asked atomic.Int32
	h, srv := serveHub(t, bridge.Config{Listener: l, Authorize: func(*http.Request) bridge.Authorization {
		asked.Add(1)
		return bridge.Authorization{Allow: true}
	}})
	url := "ws://" + srv.Listener.Addr().String() + "/?id="
	if status, _ := dialStatus(t, url+"a", nil); status != http.StatusSwitchingProtocols {
		t.Fatalf("admitted: HTTP %d", status)
	}
	l.full.Store(true)
	status, hdr := dialStatus(t, url+"b", nil)
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("while the listener refuses: HTTP %d, Retry-After %q; want 503 with Retry-After", status, hdr.Get("Retry-After"))
	}
	l.full.Store(false)
	if status, _ := dialStatus(t, url+"c", nil); status != http.StatusSwitchingProtocols {
		t.Fatalf("admitted again: HTTP %d", status)
	}
	st := h.Stats()
	if st.Refused.EventsBacklog != 1 || h.Count() != 2 {
		t.Errorf("Refused %+v, %d connections; want 1 events_backlog and 2 connections", st.Refused, h.Count())
	}
	if asked.Load() != 2 {
		t.Errorf("Authorize asked %d times, want 2 (not for the refused handshake)", asked.Load())
	}
	l.waitFor(t, "open of c", func() bool { _, ok := l.opens["c"]; return ok })
}

func TestKeptHeadersAreBounded(t *testing.T) {
	th := startHub(t, bridge.Config{MaxKeptHeaderBytes: 256})
	big := http.Header{
		"Cookie":  {"sid=" + strings.Repeat("c", 96)},
		"X-Big":   {strings.Repeat("b", 150)},
		"X-Small": {"small"},
	}
	th.dial(t, "big") // a client's own headers fit
	c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=trimmed", big)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	th.rec.fdOf(t, "trimmed")
	th.rec.mu.Lock()
	kept, whole := th.rec.opens["trimmed"].Header, th.rec.opens["big"].Header
	th.rec.mu.Unlock()
	size := 0
	for name, vs := range kept {
		for _, v := range vs {
			size += len(name) + len(v) + 4
		}
	}
	if size > 256 {
		t.Errorf("kept %d bytes of headers, want at most 256: %v", size, kept)
	}
	for _, name := range []string{"Host", "Cookie", "User-Agent", "X-Small"} {
		if kept.Get(name) == "" {
			t.Errorf("%s dropped; kept %v", name, kept)
		}
	}
	if kept.Get("X-Big") != "" {
		t.Errorf("X-Big kept, want it dropped first: %v", kept)
	}
	if whole.Get("Sec-Websocket-Key") == "" || whole.Get("Upgrade") == "" {
		t.Errorf("headers under the bound were cut: %v", whole)
	}
	if got := th.Stats().HeadersTrimmed; got != 1 {
		t.Errorf("Stats().HeadersTrimmed = %d, want 1", got)
	}
}

// TestTLSListener: the upgrade and gathered writes work on a TLS socket
// (the hub wraps whatever net.Conn the server hijacks).
func TestTLSListener(t *testing.T) {
	rec := newRecorder()
	h, err := bridge.New(bridge.Config{Listener: rec, Compression: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.Server()
	srv.StartTLS()
	defer func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	d := &websocket.Dialer{HandshakeTimeout: wait, TLSClientConfig: &tls.Config{RootCAs: pool}, EnableCompression: true}
	c, _, err := d.Dial("wss://"+srv.Listener.Addr().String()+"/?id=tls", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := rec.fdOf(t, "tls")
	msg := strings.Repeat("over tls ", 1000)
	for range 3 {
		if err := h.Push(fd, []byte(msg), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		readText(t, c, msg)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("up")); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "message over TLS", func() bool { return len(rec.messages[fd]) == 1 })
}

// TestShutdownDoesNotWaitForAuthorize: a handshake stuck in Authorize
// (which ignores its context) does not hold Shutdown; when it finally
// passes, the hub is closed and the new connection is closed with 1001.
func TestShutdownDoesNotWaitForAuthorize(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h, srv := serveHub(t, bridge.Config{Authorize: func(*http.Request) bridge.Authorization {
		close(entered)
		<-release
		return bridge.Authorization{Allow: true}
	}})
	dialed := make(chan error, 1)
	var client *websocket.Conn
	go func() {
		c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial("ws://"+srv.Listener.Addr().String()+"/", nil)
		client = c
		dialed <- err
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shut <- h.Shutdown(ctx)
	}()
	returned := false
	select {
	case err := <-shut:
		returned = true
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(wait):
		t.Error("Shutdown waited for a handshake stuck in Authorize")
	}
	close(release)
	if !returned {
		<-shut
	}
	if err := <-dialed; err == nil {
		defer client.Close()
		client.SetReadDeadline(time.Now().Add(wait))
		if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("connection upgraded after Shutdown: %v, want close 1001", err)
		}
	}
	waitStats(t, h, "the slot released", func(bridge.Stats) bool { return h.Count() == 0 })
}

// TestPerIPCountsHandshakesInProgress: connections from one address that
// never send their request count against its cap at once, so one address
// cannot hold every place for handshakes.
func TestPerIPCountsHandshakesInProgress(t *testing.T) {
	h, srv := serveHub(t, bridge.Config{MaxConnectionsPerIP: 2})
	addr := srv.Listener.Addr().String()
	slow := []*rawConn{dialRaw(t, addr), dialRaw(t, addr)}
	waitStats(t, h, "2 handshakes in progress", func(s bridge.Stats) bool { return s.Handshakes == 2 })
	third := dialRaw(t, addr)
	resp, err := http.ReadResponse(third.br, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third connection from the address: %v, %v; want 503 with Retry-After 1", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	third.expectEOF(t)
	if got := h.Stats().Refused.PerIP; got != 1 {
		t.Errorf("Stats().Refused.PerIP = %d, want 1", got)
	}
	// One gone: a WebSocket connection fits, and counts as one.
	slow[0].Close()
	waitStats(t, h, "1 handshake in progress", func(s bridge.Stats) bool { return s.Handshakes == 1 })
	c, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial with a place free: %v", err)
	}
	defer c.Close()
	slow[1].Close()
	waitStats(t, h, "no handshake in progress", func(s bridge.Stats) bool { return s.Handshakes == 0 })
	c2, _, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	defer c2.Close()
	if status, _ := dialStatus(t, "ws://"+addr+"/", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("third WebSocket connection from the address: HTTP %d, want 503", status)
	}
}

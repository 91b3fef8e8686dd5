package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// TestRunShutdownIdleHTTPRequests: HTTP requests under way on the
// WebSocket port (a body announced and never sent, headers never
// finished, a handshake whose authorization never answers) do not hold the
// shutdown: the queued pushes of a client that reads only once the
// shutdown has begun are flushed, and every client gets 1001.
func TestRunShutdownIdleHTTPRequests(t *testing.T) {
	const part = 8 << 20 // three of them: more than loopback's socket buffers hold
	// The application allows every handshake but one, which it never
	// answers (until the bridge gives up on it).
	asked := make(chan struct{}, 1)
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "id=hang") {
			asked <- struct{}{}
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, `{"allow": true}`)
	}))
	defer auth.Close()
	r := startRun(t, "-admin-token", adminToken, "-shutdown-timeout", "8s", "-write-timeout", "1m",
		"-queue-bytes", "64MiB", "-admin-max-body", "9MiB", "-events-auth-url", auth.URL, "-events-auth-timeout", "1m",
		"-handshake-timeout", "1m")
	base := "http://" + r.adminAddr(t)
	go func() { // its dial fails when the bridge stops
		c, _, err := dialer.Dial("ws://"+r.addr+"/?id=hang", nil)
		if err == nil {
			c.Close()
		}
	}()
	<-asked

	// The idle requests: the first is accepted and served once (its 404
	// comes back), then announces a body it never sends; the second never
	// finishes its headers.
	idle := rawDial(t, r.addr)
	fmt.Fprintf(idle, "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("first request: %v, %v; want 404", resp, err)
	}
	resp.Body.Close()
	fmt.Fprintf(idle, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	partial := rawDial(t, r.addr)
	fmt.Fprintf(partial, "GET / HTTP/1.1\r\nHost: x\r\n")

	slow := dial(t, "ws://"+r.addr+"/") // reads only once the shutdown has begun
	fd := onlyFD(t, base)
	watcher := dial(t, "ws://"+r.addr+"/")
	payload := strings.Repeat("x", part)
	for i := range 3 {
		body := fmt.Sprintf(`{"data":"%d%s"}`, i, payload[1:])
		if code, out := adminDo(t, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), body, true); code != 200 || !strings.Contains(out, `"queued":true`) {
			t.Fatalf("push %d: %d %s", i, code, out)
		}
	}
	if code, out := adminDo(t, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), `{"data":"last"}`, true); code != 200 {
		t.Fatalf("push last: %d %s", code, out)
	}

	r.cancel()
	// The watcher's close frame says the hub's shutdown has begun.
	_ = watcher.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, _, err := watcher.ReadMessage(); !isClose(err, websocket.CloseGoingAway) {
		t.Fatalf("watcher: %v, want close 1001; log:\n%s", err, r.log.String())
	}
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range 3 {
		_, got, err := slow.ReadMessage()
		if err != nil || len(got) != part || got[0] != byte('0'+i) {
			t.Fatalf("push %d: %d bytes, %v; want all %d bytes; log:\n%s", i, len(got), err, part, r.log.String())
		}
	}
	if _, got, err := slow.ReadMessage(); err != nil || string(got) != "last" {
		t.Fatalf("last push: %q, %v", got, err)
	}
	if _, _, err := slow.ReadMessage(); !isClose(err, websocket.CloseGoingAway) {
		t.Fatalf("after the pushes: %v, want close 1001", err)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
	if _, ok := r.log.find(t, "shutdown deadline reached, remaining connections closed"); ok {
		t.Errorf("the hub hit the shutdown deadline; log:\n%s", r.log.String())
	}
}

func isClose(err error, code int) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == code
}

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// onlyFD waits until the admin API lists exactly one connection and
// returns its fd.
func onlyFD(t *testing.T, base string) int64 {
	t.Helper()
	var fd int64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		code, body := adminDo(t, "GET", base+"/v1/connections", "", true)
		if _, err := fmt.Sscanf(body, `{"connections":[{"fd":%d`, &fd); code == 200 && err == nil {
			return fd
		}
		if code != 200 || time.Now().After(deadline) {
			t.Fatalf("list: %d %s", code, body)
		}
	}
}

// waitConnections waits until the running bridge holds n connections, as
// Sender.Stats over its RPC port says: a client's dial returns once the
// 101 is read, a moment before the bridge registers the connection, and
// a connection still being registered when the shutdown begins is closed
// at once instead of being waited for.
func (r *running) waitConnections(t *testing.T, n int) {
	t.Helper()
	rec := r.log.waitFor(t, "rpc listening", r.done)
	addr, _ := rec["addr"].(string)
	c, err := rpc.Dial(addr, rpc.JSON, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st sender.Stats
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := c.Call("Sender.Stats", sender.Empty{}, &st); err != nil {
			t.Fatal(err)
		}
		if st.Connections == n {
			return
		}
	}
	t.Fatalf("the bridge holds %d connections 10s on, want %d", st.Connections, n)
}

//go:build linux

package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

const pollWait = 10 * time.Second

// startPollHub serves a poll-mode Hub (over TLS with tlsOn) and shuts it
// down at the end of the test.
func startPollHub(t *testing.T, tlsOn bool) (*Hub, *httptest.Server) {
	t.Helper()
	h, err := New(Config{ReadMode: ReadModePoll, Sequence: &CounterSequence{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.Server()
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), pollWait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return h, srv
}

// epollFDs counts the descriptors in the poller's epoll set, as the kernel
// lists them (/proc/self/fdinfo: one "tfd:" line each).
func epollFDs(t *testing.T, p *poller) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", p.epfd))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "tfd:")
}

// Every connection's socket leaves the epoll set when the connection ends,
// however it ends; the eventfd that stops the poller stays. The kernel
// drops a socket from the set by itself only once no descriptor of it is
// left open, so the test keeps a duplicate of each socket: the bridge must
// take it out (EPOLL_CTL_DEL) before it closes its own.
func TestPollSocketsLeaveTheEpollSet(t *testing.T) {
	h, srv := startPollHub(t, false)
	url := "ws://" + srv.Listener.Addr().String() + "/"
	var clients []*websocket.Conn
	for range 3 {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	waitUntil(t, "3 sockets and the eventfd in the set", func() bool { return epollFDs(t, h.poll) == 4 })
	waitUntil(t, "3 parked", func() bool { return h.poll.parked.Load() == 3 })
	for fd := int64(1); fd <= 3; fd++ {
		c := h.lookup(fd)
		if c == nil {
			t.Fatalf("no connection %d", fd)
		}
		var dup int
		var derr error
		if err := c.bc.raw.Control(func(s uintptr) { dup, derr = unix.Dup(int(s)) }); err != nil || derr != nil {
			t.Fatal(err, derr)
		}
		defer unix.Close(dup)
	}

	// The client closes; the bridge closes; the client goes away.
	_ = clients[0].WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(pollWait))
	if err := h.Disconnect(2, 1000, ""); err != nil {
		t.Fatal(err)
	}
	clients[2].NetConn().(*net.TCPConn).SetLinger(0)
	clients[2].Close()
	go func() { // gorilla answers the bridge's close
		for {
			if _, _, err := clients[1].ReadMessage(); err != nil {
				return
			}
		}
	}()
	waitUntil(t, "no connection", func() bool { return h.Count() == 0 })
	if n := epollFDs(t, h.poll); n != 1 {
		t.Fatalf("%d descriptors left in the epoll set, want only the eventfd", n)
	}
	if n := h.poll.parked.Load(); n != 0 {
		t.Fatalf("%d parked", n)
	}
}

// Over TLS a connection has no descriptor the pool could poll (tls.Conn
// buffers records out of sight): it is read by a goroutine of its own,
// counted, and works as in goroutine mode.
func TestPollOverTLSFallsBackToAGoroutine(t *testing.T) {
	h, srv := startPollHub(t, true)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: pollWait}
	c, _, err := d.Dial("wss://"+srv.Listener.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, "the connection", func() bool { return h.Check(1) })
	if err := h.Push(1, []byte("over tls"), OpText, true); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(pollWait))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "over tls" {
		t.Fatalf("read %q, %v", data, err)
	}
	s := h.Stats().Poll
	if s.Fallbacks != 1 || s.Parked != 0 || epollFDs(t, h.poll) != 1 {
		t.Fatalf("poll stats %+v, %d in the epoll set: want one fallback, nothing parked", *s, epollFDs(t, h.poll))
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(pollWait))
	waitUntil(t, "no connection", func() bool { return h.Count() == 0 })
}

package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestKeepalivePingsStartNoWriter: a keepalive ping to a connection with
// nothing queued is written at once by its worker's keepalive goroutine,
// with or without compression: no writer goroutine starts (each would grow
// a stack in gorilla's write path and take a gather buffer, memory that
// stays mapped after a round of pings to every connection). The client
// answers each ping and stays open; a push afterwards still arrives.
func TestKeepalivePingsStartNoWriter(t *testing.T) {
	for _, compression := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compression), func(t *testing.T) {
			h, pings, msgs := pingedHub(t, Config{Compression: compression})
			waitUntil(t, "5 pings", func() bool { return pings.Load() >= 5 })
			if n := h.writers.started.Load(); n != 0 {
				t.Errorf("%d writer goroutines started for keepalive pings to an idle connection, want 0", n)
			}
			var direct uint64
			for _, w := range h.Stats().Workers {
				direct += w.PingsDirect
			}
			if direct < 5 {
				t.Errorf("%d pings written directly, want at least the 5 the client saw", direct)
			}
			if !h.Check(1) {
				t.Fatal("the client was closed")
			}
			if err := h.Push(1, []byte("after"), OpText, true); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-msgs:
				if m != "after" {
					t.Fatalf("got %q, want %q", m, "after")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the push did not arrive")
			}
		})
	}
}

// TestKeepalivePingQueuedWhileFragmenting: while a fragmented message is
// open, its writer follows it: keepalive pings are queued (not written by
// the keepalive goroutine), reach the client, and the message arrives
// whole once it is finished.
func TestKeepalivePingQueuedWhileFragmenting(t *testing.T) {
	h, pings, msgs := pingedHub(t, Config{})
	waitUntil(t, "fd 1 open", func() bool { return h.Check(1) })
	if err := h.Push(1, []byte("ab"), OpText, false); err != nil {
		t.Fatal(err)
	}
	queued := func() (n uint64) {
		for _, w := range h.Stats().Workers {
			n += w.PingsQueued
		}
		return n
	}
	// Pings seen by the client after the fragment was written were queued.
	waitUntil(t, "2 pings queued", func() bool { return queued() >= 2 })
	seen := pings.Load()
	waitUntil(t, "a ping during the open message", func() bool { return pings.Load() > seen })
	if err := h.Push(1, []byte("cd"), OpText, true); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m != "abcd" {
			t.Fatalf("got %q, want %q", m, "abcd")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fragmented message did not arrive")
	}
}

// pingedHub serves a Hub of cfg with keepalive pings every 20 ms (pong
// timeout 5 s) and dials it: the client answers each ping and counts it,
// and sends what it reads to msgs, closed when the connection ends.
func pingedHub(t *testing.T, cfg Config) (*Hub, *atomic.Int32, chan string) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Sequence = &CounterSequence{}
	cfg.PingInterval, cfg.PongTimeout = 20*time.Millisecond, 5*time.Second
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	d := *websocket.DefaultDialer
	d.EnableCompression = cfg.Compression
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pings := new(atomic.Int32)
	c.SetPingHandler(func(p string) error {
		pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(10*time.Second))
	})
	msgs := make(chan string, 1)
	go func() {
		defer close(msgs)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			msgs <- string(b)
		}
	}()
	return h, pings, msgs
}

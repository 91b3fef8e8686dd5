package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// writersHub starts a hub with n clients; client i holds fd i+1 (the
// hub counts fds from 1, as CounterSequence does). The clients negotiate
// compression, so that their pushes go to writer goroutines (a plain
// connection's go to its worker's flusher, direct.go).
func writersHub(t *testing.T, n int, maxIdle int32) (*Hub, []*websocket.Conn) {
	t.Helper()
	h, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sequence: &CounterSequence{}, Compression: true})
	if err != nil {
		t.Fatal(err)
	}
	h.writers.max = maxIdle // before any writer starts
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		d := *websocket.DefaultDialer
		d.EnableCompression = true
		c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i] = c
		waitUntil(t, fmt.Sprintf("fd %d open", i+1), func() bool { return h.Check(int64(i + 1)) })
	}
	return h, clients
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func readMessage(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestWriterIsReused: the writer that wrote to one connection waits, and
// writes the next push to another connection; Shutdown ends it.
func TestWriterIsReused(t *testing.T) {
	h, clients := writersHub(t, 3, maxIdleWriters)
	for i, c := range clients {
		if err := h.Push(int64(i+1), []byte("m"), OpText, true); err != nil {
			t.Fatal(err)
		}
		readMessage(t, c, "m")
		// The writer counts itself idle just before it waits: wait until it
		// waits, or the next push would rightly start another one.
		waitUntil(t, "an idle writer", func() bool { return h.writers.idle.Load() == 1 && parkedWriters() == 1 })
	}
	if n := h.writers.started.Load(); n != 1 {
		t.Errorf("%d writer goroutines started for 3 pushes one after another, want 1", n)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.writers.idle.Load(); n != 0 {
		t.Errorf("%d writers still idle after Shutdown", n)
	}
}

// TestIdleWritersAreBounded: after pushes to many connections at once, at
// most max writers wait; Shutdown ends them.
func TestIdleWritersAreBounded(t *testing.T) {
	h, clients := writersHub(t, 8, 2)
	var wg sync.WaitGroup
	for round := range 5 {
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = h.Push(int64(i+1), []byte(fmt.Sprint(round)), OpText, true)
			}()
		}
		wg.Wait()
		for _, c := range clients {
			readMessage(t, c, fmt.Sprint(round))
		}
		if n := h.writers.idle.Load(); n > 2 {
			t.Errorf("round %d: %d idle writers, want at most 2", round, n)
		}
	}
	waitUntil(t, "the writers to settle", func() bool { return parkedWriters() == int(h.writers.idle.Load()) })
	if n := parkedWriters(); n > 2 || n == 0 {
		t.Errorf("%d writers wait after the pushes, want 1 or 2", n)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.writers.idle.Load(); n != 0 {
		t.Errorf("%d writers idle after Shutdown", n)
	}
	waitUntil(t, "the writers to end", func() bool { return parkedWriters() == 0 })
}

// parkedWriters counts the writer goroutines waiting for a connection.
func parkedWriters() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[chan receive") && strings.Contains(g, "bridge.(*Hub).runWriter(") {
			n++
		}
	}
	return n
}

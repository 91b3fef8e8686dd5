package rpc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

const wait = 10 * time.Second

// env is a hub with its WebSocket endpoint and the RPC server in front of it.
type env struct {
	hub *bridge.Hub
	srv *rpc.Server
	ws  string // ws://host:port
	rec *opens
}

// opens records each connection's fd by the "id" query parameter.
type opens struct {
	mu  sync.Mutex
	fds map[string]int64
	ch  chan struct{}
}

func (o *opens) OnOpen(info bridge.ConnInfo) {
	o.mu.Lock()
	o.fds[info.Query.Get("id")] = info.FD
	o.mu.Unlock()
	select {
	case o.ch <- struct{}{}:
	default:
	}
}
func (o *opens) OnMessage(int64, bridge.Opcode, []byte) {}
func (o *opens) OnClose(int64, bridge.CloseEvent)       {}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startEnv starts everything; network is "tcp" or "unix".
func startEnv(t testing.TB, network string, hcfg bridge.Config, rcfg rpc.Config) *env {
	t.Helper()
	rec := &opens{fds: map[string]int64{}, ch: make(chan struct{}, 1)}
	hcfg.Listener, hcfg.Logger = rec, quiet
	hub, err := bridge.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	ws := httptest.NewServer(hub)
	if rcfg.Addr == "" {
		rcfg.Addr = "tcp://127.0.0.1:0"
		if network == "unix" {
			rcfg.Addr = "unix://" + filepath.Join(t.TempDir(), "rpc.sock")
		}
	}
	rcfg.Logger = quiet
	srv, err := rpc.New(sender.NewService(hub), rcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("rpc Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ws.Close()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub Shutdown: %v", err)
		}
	})
	return &env{hub: hub, srv: srv, ws: "ws" + ws.URL[len("http"):], rec: rec}
}

// dial connects a WebSocket client and returns it with its fd.
func (e *env) dial(t testing.TB, id string) (*websocket.Conn, int64) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(e.ws+"/?id="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(wait)
	for {
		e.rec.mu.Lock()
		fd, ok := e.rec.fds[id]
		e.rec.mu.Unlock()
		if ok {
			return c, fd
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open event for %s", id)
		}
		select {
		case <-e.rec.ch:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// client dials the RPC server with codec.
func (e *env) client(t testing.TB, codec rpc.Codec) *rpc.Client {
	t.Helper()
	c, err := rpc.Dial(e.srv.Addr(), codec, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t testing.TB, c *websocket.Conn) (int, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	mt, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return mt, data
}

func readText(t testing.TB, c *websocket.Conn, want string) {
	t.Helper()
	if _, got := read(t, c); string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func call[R any](t testing.TB, c *rpc.Client, method string, args any) R {
	t.Helper()
	var r R
	if err := c.Call(method, args, &r); err != nil {
		t.Fatalf("%s(%v): %v", method, args, err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

func name(parts ...any) string { return fmt.Sprint(parts...) }

func timeout() time.Time { return time.Now().Add(wait) }

func contextWithTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), wait)
}

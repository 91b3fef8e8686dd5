package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
	"github.com/wsbridge/wsbridge/sender"
)

// wait bounds what should happen at once.
const wait = 10 * time.Second

// token is the admin token of the tests' servers.
const token = "t0ken-for-the-admin-tests-0123456789"

// opens is a bridge.Listener that records each connection's fd by the
// "id" query parameter it dialed with.
type opens struct {
	mu   sync.Mutex
	cond *sync.Cond
	fds  map[string]int64
}

func (o *opens) OnOpen(info bridge.ConnInfo) {
	o.mu.Lock()
	o.fds[info.Query.Get("id")] = info.FD
	o.cond.Broadcast()
	o.mu.Unlock()
}
func (o *opens) OnMessage(int64, bridge.Opcode, []byte) {}
func (o *opens) OnClose(int64, bridge.CloseEvent)       {}

// env is a hub served on loopback with an admin server in front of it.
type env struct {
	hub   *bridge.Hub
	admin *admin.Server
	ws    string // ws://host:port
	url   string // http://host:port of the admin server
	logs  *testutil.LogBuffer
	rec   *opens
}

// newEnv starts a hub with hcfg (its Listener is replaced, unless set)
// and an admin server with acfg on a free loopback port (Token defaults to
// token; "-" means none); both stop at the end of the test.
func newEnv(t testing.TB, hcfg bridge.Config, acfg admin.Config) *env {
	t.Helper()
	e := &env{logs: &testutil.LogBuffer{}, rec: &opens{fds: map[string]int64{}}}
	e.rec.cond = sync.NewCond(&e.rec.mu)
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if hcfg.Listener == nil {
		hcfg.Listener = e.rec
	}
	hcfg.Logger = log
	hub, err := bridge.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	e.hub = hub
	ws := httptest.NewUnstartedServer(hub)
	ws.Config = hub.Server()
	ws.Start()
	e.ws = "ws://" + ws.Listener.Addr().String()

	switch acfg.Token {
	case "":
		acfg.Token = token
	case "-":
		acfg.Token = ""
	}
	if acfg.Addr == "" {
		acfg.Addr = "127.0.0.1:0"
	}
	acfg.Logger = log
	srv, err := admin.New(hub, sender.NewService(hub), acfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	srv.SetReady()
	e.admin, e.url = srv, "http://"+srv.Addr()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("admin Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("admin Serve: %v", err)
		}
		ws.Close()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub Shutdown: %v", err)
		}
	})
	return e
}

// dial connects a gorilla client with ?id=id and returns it with its fd.
func (e *env) dial(t testing.TB, id string) (*websocket.Conn, int64) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(e.ws+"/?id="+id, http.Header{"X-Test": {"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.AfterFunc(wait, func() { e.rec.mu.Lock(); e.rec.cond.Broadcast(); e.rec.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for {
		if fd, ok := e.rec.fds[id]; ok {
			return c, fd
		}
		if time.Since(start) > wait {
			t.Fatalf("no open event for %s", id)
		}
		e.rec.cond.Wait()
	}
}

// answer is an admin server's answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body into v (strictly: the test knows the
// fields).
func (a answer) json(t testing.TB, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("answer %d %q does not decode into %T: %v", a.status, a.body, v, err)
	}
}

// errorCode returns the code of an error answer ("" for another body).
func (a answer) errorCode() string {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &b) != nil || b.Error.Message == "" {
		return ""
	}
	return b.Error.Code
}

// do sends a request with the test token.
func (e *env) do(t testing.TB, method, path, body string) answer {
	t.Helper()
	return e.doAuth(t, method, path, body, "Bearer "+token)
}

// doAuth sends a request with the Authorization header auth ("" for none).
func (e *env) doAuth(t testing.TB, method, path, body, auth string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return send(t, req)
}

func send(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// want checks an answer's status and, for errors, its code and JSON type.
func want(t testing.TB, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Errorf("%s: status %d, want %d; body %s", what, a.status, status, a.body)
		return
	}
	if ct := a.header.Get("Content-Type"); status != http.StatusOK && ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if got := a.errorCode(); got != code {
		t.Errorf("%s: error code %q, want %q; body %s", what, got, code, a.body)
	}
}

// read reads one message from c.
func read(t testing.TB, c *websocket.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	mt, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return mt, string(data)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

const adminToken = "e2e-admin-token-0123456789abcdef"

// startAdmin starts the binary with the admin server on a free loopback
// port and the token in its variable; it returns the process and the
// admin base URL, parsed from the "admin listening" log record.
func startAdmin(t *testing.T, args ...string) (*bridgeProc, string) {
	t.Helper()
	p := startDefault(t, []string{"WSBRIDGE_ADMIN_TOKEN=" + adminToken}, append([]string{"-admin-addr", "127.0.0.1:0"}, args...)...)
	rec := p.waitFor("admin listening")
	addr, _ := rec["addr"].(string)
	if addr == "" || rec["token_set"] != true {
		t.Fatalf("admin listening record %v", rec)
	}
	return p, "http://" + addr
}

// adminClient has its own connections, so tests do not share idle ones.
func adminClient() *http.Client {
	return &http.Client{Timeout: readTimeout, Transport: &http.Transport{}}
}

func adminCall(c *http.Client, method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestAdminEndToEnd: health, readiness, and a push through /v1 that
// reaches a real client of the real binary.
func TestAdminEndToEnd(t *testing.T) {
	t.Parallel()
	p, base := startAdmin(t)
	hc := adminClient()
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := hc.Get(base + path) // no token: the probes are open
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	ws, _, err := dialer.Dial("ws://"+p.addr+"/?who=e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// The connection is listed once the bridge has registered it, which
	// may follow the handshake's answer by a moment.
	var list struct {
		Connections []struct {
			FD int64 `json:"fd"`
		} `json:"connections"`
	}
	for deadline := time.Now().Add(readTimeout); len(list.Connections) == 0; time.Sleep(5 * time.Millisecond) {
		status, body, err := adminCall(hc, "GET", base+"/v1/connections", "")
		if err != nil || status != 200 || json.Unmarshal(body, &list) != nil || len(list.Connections) > 1 || time.Now().After(deadline) {
			t.Fatalf("list: %d %s %v", status, body, err)
		}
	}
	fd := list.Connections[0].FD
	status, body, err := adminCall(hc, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), `{"data":"from the admin API"}`)
	if err != nil || status != 200 || string(body) != "{\"queued\":true}\n" {
		t.Fatalf("push: %d %s %v", status, body, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "from the admin API" {
		t.Fatalf("the client read %q, %v", got, err)
	}
	status, body, _ = adminCall(hc, "GET", base+"/metrics", "")
	if status != 200 || !strings.Contains(string(body), `wsbridge_pushes_total{result="queued"} 1`) {
		t.Errorf("/metrics: %d, no queued push counted", status)
	}
	p.stop()
	if strings.Contains(p.log(), adminToken) {
		t.Errorf("the admin token is in the log:\n%s", p.log())
	}
}

// TestAdminGracefulShutdownUnderTraffic: SIGTERM while admin, RPC and
// WebSocket traffic run: no panic or race, every admin request and RPC
// call that the bridge took is answered (with a result or a clear error
// code), those it could not take fail to connect, and the exit code is 0.
func TestAdminGracefulShutdownUnderTraffic(t *testing.T) {
	t.Parallel()
	p, base := startAdmin(t, "-shutdown-timeout", "5s")
	rpcRec := p.waitFor("rpc listening")
	rpcAddr, _ := rpcRec["addr"].(string)

	const clients = 8
	var wsDone sync.WaitGroup
	closeCodes := make(chan int, clients)
	for i := range clients {
		ws, _, err := dialer.Dial(fmt.Sprintf("ws://%s/?c=%d", p.addr, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		wsDone.Add(2)
		go func() { // reader: until the bridge closes the connection
			defer wsDone.Done()
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						closeCodes <- ce.Code
					} else {
						closeCodes <- 0
					}
					return
				}
			}
		}()
		go func() { // writer: messages until the connection is closing
			defer wsDone.Done()
			for j := 0; j < 1000; j++ {
				if ws.WriteMessage(websocket.TextMessage, []byte("hi")) != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	var (
		sigterm             atomic.Bool // SIGTERM was sent
		stop                = make(chan struct{})
		traffic             sync.WaitGroup
		mu                  sync.Mutex
		problems            []string
		answered, refusedAt atomic.Int64
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// Admin traffic: broadcasts, list pages, pushes to fds.
	for w := 0; w < 3; w++ {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			hc := adminClient()
			defer hc.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				method, path, body := "POST", "/v1/broadcast", `{"data":"b"}`
				switch i % 3 {
				case 1:
					method, path, body = "GET", "/v1/connections?limit=3", ""
				case 2:
					path, body = "/v1/push", `{"fds":[1,2,3],"data":"m"}`
				}
				status, b, err := adminCall(hc, method, base+path, body)
				switch {
				case err != nil:
					if !sigterm.Load() {
						problem("admin %s %s failed before the shutdown: %v", method, path, err)
					}
					refusedAt.Add(1)
					return // the admin server has stopped
				case status == 200:
					answered.Add(1)
				case status == 503:
					var e struct {
						Error struct{ Code, Message string } `json:"error"`
					}
					if json.Unmarshal(b, &e) != nil || e.Error.Code != sender.CodeShuttingDown || !sigterm.Load() {
						problem("admin %s %s: 503 %s", method, path, b)
					}
					answered.Add(1)
				default:
					problem("admin %s %s: %d %s", method, path, status, b)
				}
			}
		}()
	}
	// RPC traffic: pushes and broadcasts on two connections.
	for w := 0; w < 2; w++ {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			c, err := rpc.Dial(rpcAddr, rpc.JSON, readTimeout)
			if err != nil {
				problem("rpc dial: %v", err)
				return
			}
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var ok bool
				var n int
				if i%2 == 0 {
					err = c.Call("Sender.Push", map[string]any{"fd": 1 + i%clients, "data": "r"}, &ok)
				} else {
					err = c.Call("Sender.Broadcast", map[string]any{"data": "rb"}, &n)
				}
				var re *sender.Error
				switch {
				case err == nil:
				case errors.As(err, &re) && re.Code == sender.CodeShuttingDown && sigterm.Load():
					return
				case sigterm.Load():
					return // the connection was closed after the calls in flight were answered
				default:
					problem("rpc call before the shutdown: %v", err)
					return
				}
			}
		}()
	}

	// Traffic flows: wait for admin answers (and let the rest run a while).
	deadline := time.Now().Add(readTimeout)
	for answered.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if answered.Load() == 0 {
		t.Error("no admin request was answered before the shutdown")
	}
	sigterm.Store(true)
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d after SIGTERM under traffic, want 0; stderr:\n%s", code, p.log())
	}
	close(stop)
	traffic.Wait()
	wsDone.Wait()
	close(closeCodes)
	for code := range closeCodes {
		if code != websocket.CloseGoingAway {
			t.Errorf("a client ended with close code %d, want %d", code, websocket.CloseGoingAway)
		}
	}
	for _, pr := range problems {
		t.Error(pr)
	}
	for _, msg := range []string{"shutting down", "stopped"} {
		if _, ok := p.find(msg); !ok {
			t.Errorf("no %q record; stderr:\n%s", msg, p.log())
		}
	}
	t.Logf("admin requests answered: %d; admin workers stopped by a refused connection: %d", answered.Load(), refusedAt.Load())
}

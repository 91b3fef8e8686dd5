package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSignalClosesClients: on SIGTERM or SIGINT every client gets a close
// frame with 1001 (going away) and the process exits 0.
func TestSignalClosesClients(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			p := startDefault(t, nil)
			clients := make([]*client, 5)
			for i := range clients {
				clients[i] = connect(t, "ws://"+p.addr+"/")
			}
			for i, c := range clients {
				c.ping(fmt.Sprint("before ", i)) // every connection is registered
			}
			if code := p.signal(sig); code != 0 {
				t.Errorf("exit code after %v = %d, want 0; stderr:\n%s", sig, code, p.log())
			}
			for i, c := range clients {
				if code := c.closeCode(); code != websocket.CloseGoingAway {
					t.Errorf("client %d: close code %d, want %d", i, code, websocket.CloseGoingAway)
				}
			}
			for _, msg := range []string{"shutting down", "stopped"} {
				if _, ok := p.find(msg); !ok {
					t.Errorf("no %q log record; stderr:\n%s", msg, p.log())
				}
			}
			if _, ok := p.find("shutdown deadline reached, remaining connections closed"); ok {
				t.Errorf("clients that answer the close frame hit the shutdown deadline; stderr:\n%s", p.log())
			}
		})
	}
}

// TestSignalWithoutClients: an idle bridge stops at once and cleanly.
func TestSignalWithoutClients(t *testing.T) {
	t.Parallel()
	p := startDefault(t, nil)
	p.stop()
}

// TestShutdownDeadline: a client that never answers the close frame is cut
// off at -shutdown-timeout (far below -close-timeout), and the exit is still
// clean.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	p := startDefault(t, nil, "-shutdown-timeout", "2s", "-close-timeout", "10m")
	connectIdle(t, "ws://"+p.addr+"/")
	answering := connect(t, "ws://"+p.addr+"/")
	answering.ping("x")
	p.stop()
	if code := answering.closeCode(); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want %d", code, websocket.CloseGoingAway)
	}
	if _, ok := p.find("shutdown deadline reached, remaining connections closed"); !ok {
		t.Errorf("no shutdown deadline warning; stderr:\n%s", p.log())
	}
}

// TestBadConfig: invalid flags and variables exit 2 before listening, with
// a message that names the setting.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want []string // each is in stderr
	}{
		{name: "node id out of range", args: []string{"-node-id", "5000"}, want: []string{"node-id", "0..1023"}},
		{name: "ws-addr without port", args: []string{"-ws-addr", "nope"}, want: []string{"ws-addr", "WSBRIDGE_WS_ADDR"}},
		{name: "bad overflow policy", args: []string{"-overflow-policy", "sometimes"}, want: []string{"overflow-policy"}},
		{name: "fragment size below 125", args: []string{"-fragment-size", "100"}, want: []string{"fragment-size"}},
		{name: "queue bytes below max push size", args: []string{"-queue-bytes", "1KiB"}, want: []string{"queue-bytes"}},
		{name: "huge size", args: []string{"-max-message-size", "2048GiB"}, want: []string{"max-message-size"}},
		{name: "rpc-addr without scheme", args: []string{"-rpc-addr", "127.0.0.1:6001"}, want: []string{"rpc-addr", "WSBRIDGE_RPC_ADDR"}},
		{name: "unknown flag", args: []string{"-no-such-flag"}, want: []string{"no-such-flag"}},
		{name: "positional argument", args: []string{"serve"}, want: []string{"unexpected argument"}},
		{name: "env bad int", env: []string{"WSBRIDGE_NODE_ID=abc"}, want: []string{"WSBRIDGE_NODE_ID"}},
		{name: "env negative duration", env: []string{"WSBRIDGE_WRITE_TIMEOUT=-1s"}, want: []string{"WSBRIDGE_WRITE_TIMEOUT"}},
		{name: "env ws-path without slash", env: []string{"WSBRIDGE_WS_PATH=ws"}, want: []string{"WSBRIDGE_WS_PATH"}},
		{name: "env bad log format", env: []string{"WSBRIDGE_LOG_FORMAT=xml"}, want: []string{"WSBRIDGE_LOG_FORMAT"}},
		{
			name: "every bad setting is named",
			args: []string{"-ws-addr", "127.0.0.1:0"},
			env:  []string{"WSBRIDGE_NODE_ID=abc", "WSBRIDGE_WORKERS=-2"},
			want: []string{"WSBRIDGE_NODE_ID", "WSBRIDGE_WORKERS"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, tt.env, tt.args...)
			if r.code != 2 {
				t.Errorf("wsbridge %q with %q: exit code %d, want 2; stderr:\n%s", tt.args, tt.env, r.code, r.stderr)
			}
			for _, w := range append(tt.want, "--help") {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("wsbridge %q with %q: stderr does not contain %q:\n%s", tt.args, tt.env, w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "websocket listening") {
				t.Errorf("wsbridge %q with %q started listening:\n%s", tt.args, tt.env, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("wsbridge %q with %q: stdout = %q, want nothing", tt.args, tt.env, r.stdout)
			}
		})
	}
}

// TestHelp: --help prints every setting with its variable and default on
// stdout and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			r := runBinary(t, nil, arg)
			if r.code != 0 {
				t.Errorf("wsbridge %s: exit code %d, want 0; stderr:\n%s", arg, r.code, r.stderr)
			}
			for _, want := range []string{
				"-ws-addr  (WSBRIDGE_WS_ADDR, default :9502)",
				"-ws-path  (WSBRIDGE_WS_PATH, default /)",
				"-node-id  (WSBRIDGE_NODE_ID, default auto)",
				"-max-connections  (WSBRIDGE_MAX_CONNECTIONS, default 10000)",
				"-shutdown-timeout  (WSBRIDGE_SHUTDOWN_TIMEOUT, default 10s)",
				"-rpc-addr  (WSBRIDGE_RPC_ADDR, default tcp://127.0.0.1:6001)",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("wsbridge %s: stdout does not contain %q:\n%s", arg, want, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("wsbridge %s: stderr = %q, want nothing", arg, r.stderr)
			}
		})
	}
}

// TestSettingsFromEnv: the binary runs on WSBRIDGE_* variables alone; the
// upgrade paths are exactly those of WSBRIDGE_WS_PATH.
func TestSettingsFromEnv(t *testing.T) {
	t.Parallel()
	p := start(t, []string{
		"WSBRIDGE_WS_ADDR=127.0.0.1:0",
		"WSBRIDGE_RPC_ADDR=tcp://127.0.0.1:0",
		"WSBRIDGE_LOG_FORMAT=json",
		"WSBRIDGE_WS_PATH=/ws, /chat",
		"WSBRIDGE_NODE_ID=7",
		"WSBRIDGE_WORKERS=3",
	})
	rec, _ := p.find("websocket listening")
	if fmt.Sprint(rec["paths"]) != "[/ws /chat]" || rec["node_id"] != float64(7) || rec["workers"] != float64(3) {
		t.Errorf("websocket listening record = %v, want paths [/ws /chat], node_id 7, workers 3", rec)
	}
	if rec := p.waitFor("rpc listening"); !strings.HasPrefix(fmt.Sprint(rec["addr"]), "tcp://127.0.0.1:") {
		t.Errorf("rpc listening record = %v, want an addr on tcp://127.0.0.1", rec)
	}

	c := connect(t, "ws://"+p.addr+"/ws?token=abc")
	c.ping("on /ws")
	connect(t, "ws://"+p.addr+"/chat").ping("on /chat")
	for _, path := range []string{"/", "/ws/", "/wsx", "/other", "/chat/"} {
		resp := dialStatus(t, "ws://"+p.addr+path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("dial %s: HTTP %d, want 404", path, resp.StatusCode)
		}
	}
	// A plain HTTP request on the path is not an upgrade.
	resp, err := http.Get("http://" + p.addr + "/ws")
	if err != nil {
		t.Fatalf("GET /ws: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /ws without upgrade: HTTP %d, want 400", resp.StatusCode)
	}
	c.ping("still open")
	http.DefaultClient.CloseIdleConnections()

	p.stop()
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want %d", code, websocket.CloseGoingAway)
	}
}

// TestFlagWinsOverEnv: with both set, the flag is used.
func TestFlagWinsOverEnv(t *testing.T) {
	t.Parallel()
	p := startDefault(t, []string{"WSBRIDGE_WS_PATH=/env", "WSBRIDGE_WS_ADDR=nope", "WSBRIDGE_LOG_FORMAT=xml"}, "-ws-path", "/flag")
	c := connect(t, "ws://"+p.addr+"/flag")
	c.ping("x")
	if resp := dialStatus(t, "ws://"+p.addr+"/env"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("dial /env: HTTP %d, want 404", resp.StatusCode)
	}
	p.stop()
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Errorf("close code %d, want %d", code, websocket.CloseGoingAway)
	}
}

// TestMaxConnections: past -max-connections a handshake gets HTTP 503 and
// the open connections are unaffected; a closed connection frees its slot.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	p := startDefault(t, nil, "-max-connections", "2")
	url := "ws://" + p.addr + "/"
	first, second := connect(t, url), connect(t, url)
	first.ping("1")
	second.ping("2")

	for range 3 {
		resp := dialStatus(t, url)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("third handshake: HTTP %d, want 503", resp.StatusCode)
		}
		if got := resp.Header.Get("Retry-After"); got == "" {
			t.Errorf("503 without Retry-After")
		}
	}
	first.ping("1 again")
	second.ping("2 again")

	// The client closes the first connection; its slot comes back once the
	// bridge has finished it.
	if err := first.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(readTimeout)); err != nil {
		t.Fatalf("send close: %v", err)
	}
	if code := first.closeCode(); code != websocket.CloseNormalClosure {
		t.Errorf("the bridge answered close 1000 with %d", code)
	}
	var third *client
	deadline := time.Now().Add(readTimeout)
	for third == nil {
		ws, resp, err := dialer.Dial(url, nil)
		switch {
		case err == nil:
			third = newClient(t, ws)
		case resp != nil && resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		default:
			t.Fatalf("dial after a close: %v (%s)", err, status(resp))
		}
	}
	third.ping("3")
	second.ping("2 once more")

	p.stop()
	for i, c := range []*client{second, third} {
		if code := c.closeCode(); code != websocket.CloseGoingAway {
			t.Errorf("client %d: close code %d, want %d", i, code, websocket.CloseGoingAway)
		}
	}
}

// TestFDLimitWarning: a connection cap above the open-file limit is warned
// about at start; one well below it is not.
func TestFDLimitWarning(t *testing.T) {
	t.Parallel()
	const msg = "open file limit is below the connection cap: connections past it will fail to be accepted"
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// The binary raises its soft limit to the hard one; 100000 is above
	// the 20000 of the test machines, hard+1 above any other.
	high := min(max(uint64(100000), rl.Max+1), 1<<30)
	for _, tt := range []struct {
		maxConns uint64
		warn     bool
	}{
		{high, true},
		{100, false},
	} {
		t.Run(fmt.Sprint(tt.maxConns), func(t *testing.T) {
			t.Parallel()
			p := startDefault(t, nil, "-max-connections", fmt.Sprint(tt.maxConns))
			rec, warned := p.find(msg)
			if warned != tt.warn {
				t.Errorf("-max-connections %d with open-file limit %d: warned = %v, want %v; stderr:\n%s", tt.maxConns, rl.Max, warned, tt.warn, p.log())
			}
			if warned {
				if rec["level"] != "WARN" || rec["max_connections"] != float64(tt.maxConns) || rec["nofile_limit"] == nil {
					t.Errorf("warning record = %v, want level WARN, max_connections %d and nofile_limit", rec, tt.maxConns)
				}
			}
			p.stop()
		})
	}
}

// TestListenFailure: an address in use is a runtime failure: exit 1 with an
// error record naming the address.
func TestListenFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := runBinary(t, nil, "-ws-addr", ln.Addr().String(), "-log-format", "json")
	if r.code != 1 {
		t.Errorf("exit code %d on a busy address, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "cannot listen for WebSocket connections") || !strings.Contains(r.stderr, ln.Addr().String()) {
		t.Errorf("stderr does not report the listen failure on %s:\n%s", ln.Addr(), r.stderr)
	}
}

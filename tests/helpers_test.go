// Package tests runs the real wsbridge binary, built once by TestMain, and
// talks to it over real sockets with gorilla/websocket clients.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// Bounds that turn a hang into a failure; none of them is a speed target.
const (
	startTimeout = 30 * time.Second // the binary logs "websocket listening"
	exitTimeout  = 30 * time.Second // the binary exits after a signal
	readTimeout  = 20 * time.Second // a client gets a pong or a close frame
)

// binary is the wsbridge executable TestMain builds.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wsbridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "wsbridge")
	if err := build(binary); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// Every stderr reader and client the tests started has ended.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// build compiles ./cmd/wsbridge of the module this package belongs to, with
// the race detector when the tests run with it: a data race in the binary
// then makes it exit 66 and print "DATA RACE", which the tests catch.
func build(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/wsbridge")
	cmd := exec.Command(goTool, args...)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, output)
	}
	return nil
}

// moduleRoot is the nearest directory at or above the working directory
// (this package's directory under go test) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// environ is this process's environment without WSBRIDGE_* variables (so
// the shell running the tests cannot change them), plus extra. Unless
// GORACE is set, a race-enabled binary skips the race runtime's 1s sleep at
// exit.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSBRIDGE_") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	// Bridges run side by side: none takes the default admin port unless
	// a test says otherwise (a later variable wins).
	env = append(env, "WSBRIDGE_ADMIN_ADDR=127.0.0.1:0")
	return append(env, extra...)
}

// bridgeProc is a running wsbridge process.
type bridgeProc struct {
	tb   testing.TB
	cmd  *exec.Cmd
	addr string // host:port of the WebSocket listener

	mu      sync.Mutex
	stderr  []string      // lines so far
	changed chan struct{} // closed and replaced when a line arrives
	exited  chan struct{} // closed once the process has exited and stderr is read
	state   *os.ProcessState
}

// start runs the binary with env (on top of environ()) and args, and waits
// for its "websocket listening" log record: JSON logs are required. The
// process is killed at cleanup if it still runs.
func start(tb testing.TB, env []string, args ...string) *bridgeProc {
	tb.Helper()
	p := &bridgeProc{tb: tb, changed: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = environ(env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", binary, err)
	}
	go p.collect(stderr)
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(exitTimeout):
				tb.Errorf("wsbridge (pid %d) still runs after SIGKILL", p.cmd.Process.Pid)
			}
		}
		if log := p.log(); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
			tb.Errorf("wsbridge reported a data race or a panic:\n%s", log)
		}
	})
	rec := p.waitFor("websocket listening")
	p.addr, _ = rec["addr"].(string)
	if p.addr == "" {
		tb.Fatalf("websocket listening record without addr: %v", rec)
	}
	return p
}

// startDefault starts the binary with its WebSocket and RPC listeners on
// free loopback ports and JSON logs.
func startDefault(tb testing.TB, env []string, args ...string) *bridgeProc {
	tb.Helper()
	return start(tb, env, append([]string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-log-format", "json"}, args...)...)
}

func (p *bridgeProc) collect(r interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.stderr = append(p.stderr, sc.Text())
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_ = p.cmd.Wait() // after the last read of the pipe, as os/exec requires
	p.mu.Lock()
	p.state = p.cmd.ProcessState
	p.mu.Unlock()
	close(p.exited)
}

// log is the process's stderr so far.
func (p *bridgeProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// records returns the JSON log records so far, and a channel closed when
// the next line arrives.
func (p *bridgeProc) records() ([]map[string]any, <-chan struct{}) {
	p.mu.Lock()
	lines, changed := p.stderr, p.changed
	p.mu.Unlock()
	var recs []map[string]any
	for _, l := range lines {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs, changed
}

// find returns the first log record with message msg.
func (p *bridgeProc) find(msg string) (map[string]any, bool) {
	recs, _ := p.records()
	for _, r := range recs {
		if r["msg"] == msg {
			return r, true
		}
	}
	return nil, false
}

// waitFor waits for a log record with message msg.
func (p *bridgeProc) waitFor(msg string) map[string]any {
	p.tb.Helper()
	return p.waitRecord(msg, func(map[string]any) bool { return true })
}

// waitRecord waits for a log record with message msg for which match
// holds.
func (p *bridgeProc) waitRecord(msg string, match func(map[string]any) bool) map[string]any {
	p.tb.Helper()
	timeout := time.NewTimer(startTimeout)
	defer timeout.Stop()
	find := func(recs []map[string]any) (map[string]any, bool) {
		for _, r := range recs {
			if r["msg"] == msg && match(r) {
				return r, true
			}
		}
		return nil, false
	}
	for {
		recs, changed := p.records()
		if r, ok := find(recs); ok {
			return r
		}
		select {
		case <-changed:
		case <-p.exited:
			recs, _ := p.records()
			if r, ok := find(recs); ok { // the line came with the exit
				return r
			}
			p.tb.Fatalf("wsbridge exited (%v) before logging the %q record wanted; stderr:\n%s", p.state, msg, p.log())
		case <-timeout.C:
			p.tb.Fatalf("wsbridge logged no matching %q within %s; stderr:\n%s", msg, startTimeout, p.log())
		}
	}
}

// signal sends sig and returns the exit code; the process must exit within
// exitTimeout.
func (p *bridgeProc) signal(sig syscall.Signal) int {
	p.tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.tb.Fatalf("send %v: %v", sig, err)
	}
	return p.wait()
}

// wait returns the exit code; the process must exit within exitTimeout.
func (p *bridgeProc) wait() int {
	p.tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(exitTimeout):
		p.tb.Fatalf("wsbridge did not exit within %s; stderr:\n%s", exitTimeout, p.log())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode()
}

// stop sends SIGTERM and requires exit code 0.
func (p *bridgeProc) stop() {
	p.tb.Helper()
	if code := p.signal(syscall.SIGTERM); code != 0 {
		p.tb.Errorf("wsbridge exited with %d after SIGTERM, want 0; stderr:\n%s", code, p.log())
	}
}

// result is a finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// runBinary runs the binary to completion with env and args; it must exit
// within exitTimeout.
func runBinary(tb testing.TB, env []string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = environ(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("wsbridge %q did not exit within %s; stderr:\n%s", args, exitTimeout, stderr.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("run wsbridge %q: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

var dialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}

// client is a gorilla WebSocket client whose reader goroutine runs from the
// start: it answers pings and close frames the way gorilla does by default.
type client struct {
	tb      testing.TB
	ws      *websocket.Conn
	pongs   chan string
	readErr chan error // the error that ended the reader
}

// connect dials url and fails the test if the handshake does not succeed.
func connect(tb testing.TB, url string) *client {
	tb.Helper()
	ws, resp, err := dialer.Dial(url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v (%s)", url, err, status(resp))
	}
	return newClient(tb, ws)
}

// newClient starts the reader goroutine of a dialed connection.
func newClient(tb testing.TB, ws *websocket.Conn) *client {
	c := &client{tb: tb, ws: ws, pongs: make(chan string, 16), readErr: make(chan error, 1)}
	ws.SetPongHandler(func(data string) error {
		select {
		case c.pongs <- data:
		default:
		}
		return nil
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				c.readErr <- err
				return
			}
		}
	}()
	tb.Cleanup(func() { _ = ws.Close() })
	return c
}

// connectIdle dials url and never reads: such a client never answers the
// server's close frame.
func connectIdle(tb testing.TB, url string) *websocket.Conn {
	tb.Helper()
	ws, resp, err := dialer.Dial(url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v (%s)", url, err, status(resp))
	}
	tb.Cleanup(func() { _ = ws.Close() })
	return ws
}

// ping sends a ping and waits for the server's pong: the connection is
// registered and served.
func (c *client) ping(payload string) {
	c.tb.Helper()
	if err := c.ws.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(readTimeout)); err != nil {
		c.tb.Fatalf("ping %q: %v", payload, err)
	}
	timeout := time.After(readTimeout)
	for {
		select {
		case got := <-c.pongs:
			if got == payload {
				return
			}
		case err := <-c.readErr:
			c.readErr <- err
			c.tb.Fatalf("connection ended while waiting for pong %q: %v", payload, err)
		case <-timeout:
			c.tb.Fatalf("no pong %q within %s", payload, readTimeout)
		}
	}
}

// closeCode waits for the reader to end and returns the close code the
// server sent; a reader that ended without a close frame fails the test.
func (c *client) closeCode() int {
	c.tb.Helper()
	select {
	case err := <-c.readErr:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.tb.Errorf("connection ended with %v, not a close frame", err)
			return 0
		}
		return ce.Code
	case <-time.After(readTimeout):
		c.tb.Errorf("no close frame within %s", readTimeout)
		return 0
	}
}

// dialStatus dials url, requires the handshake to fail, and returns the
// HTTP response.
func dialStatus(tb testing.TB, url string) *http.Response {
	tb.Helper()
	ws, resp, err := dialer.Dial(url, nil)
	if err == nil {
		_ = ws.Close()
		tb.Fatalf("dial %s succeeded, want a refused handshake", url)
	}
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		tb.Fatalf("dial %s: %v (%s), want %v with an HTTP response", url, err, status(resp), websocket.ErrBadHandshake)
	}
	return resp
}

func status(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return resp.Status
}

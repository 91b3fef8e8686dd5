package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const adminToken = "run-test-admin-token-0123456789"

// adminAddr waits for the admin listening record and returns its address.
func (r *running) adminAddr(t *testing.T) string {
	t.Helper()
	rec := r.log.waitFor(t, "admin listening", r.done)
	addr, _ := rec["addr"].(string)
	if addr == "" {
		t.Fatalf("admin listening record without addr: %v", rec)
	}
	return addr
}

// adminDo sends a request to the admin server with the token (or none) and
// returns the status and body.
func adminDo(t *testing.T, method, url, body string, withToken bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if withToken {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunAdmin: the admin server starts with the others, serves probes,
// the /v1 API and metrics, and never logs the token.
func TestRunAdmin(t *testing.T) {
	r := startRun(t, "-admin-token", adminToken, "-admin-pprof")
	base := "http://" + r.adminAddr(t)
	rec, _ := r.log.find(t, "admin listening")
	if rec["token_set"] != true || rec["pprof"] != true {
		t.Errorf("admin listening record %v", rec)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := adminDo(t, "GET", base+path, "", false); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	ws := dial(t, "ws://"+r.addr+"/")
	// The client sees its handshake done a moment before the hub files
	// the connection: list until it is there.
	var fd int64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		code, body := adminDo(t, "GET", base+"/v1/connections", "", true)
		if _, err := fmt.Sscanf(body, `{"connections":[{"fd":%d`, &fd); code == 200 && err == nil {
			break
		}
		if code != 200 || time.Now().After(deadline) {
			t.Fatalf("list: %d %s", code, body)
		}
	}
	if code, body := adminDo(t, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), `{"data":"via admin"}`, true); code != 200 || !strings.Contains(body, `"queued":true`) {
		t.Fatalf("push: %d %s", code, body)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "via admin" {
		t.Fatalf("read %q, %v", got, err)
	}
	code, body := adminDo(t, "GET", base+"/metrics", "", true)
	for _, want := range []string{"wsbridge_connections 1", "wsbridge_pushes_total{result=\"queued\"} 1", "go_goroutines", "process_cpu_seconds_total"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, lacks %q", code, want)
		}
	}
	if code, _ := adminDo(t, "GET", base+"/debug/pprof/cmdline", "", true); code != 200 {
		t.Errorf("pprof: %d", code)
	}
	if code, _ := adminDo(t, "GET", base+"/metrics", "", false); code != 401 {
		t.Errorf("/metrics without the token: %d", code)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
	if strings.Contains(r.log.String(), adminToken) {
		t.Errorf("the log holds the admin token:\n%s", r.log.String())
	}
}

func TestRunAdminWithoutToken(t *testing.T) {
	r := startRun(t)
	base := "http://" + r.adminAddr(t)
	rec, ok := r.log.find(t, "the admin token is not set (WSBRIDGE_ADMIN_TOKEN): /metrics, /v1 and pprof are off (503 token_not_set); /healthz and /readyz are served")
	if !ok || rec["level"] != "WARN" {
		t.Errorf("no warning about the missing token; log:\n%s", r.log.String())
	}
	if code, body := adminDo(t, "GET", base+"/v1/groups", "", true); code != 503 || !strings.Contains(body, "token_not_set") {
		t.Errorf("/v1/groups without a token configured: %d %s", code, body)
	}
	if code, _ := adminDo(t, "GET", base+"/readyz", "", false); code != 200 {
		t.Errorf("readyz: %d", code)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d", code)
	}
}

func TestRunAdminOff(t *testing.T) {
	r := startRun(t, "-admin-addr", "off")
	if _, ok := r.log.find(t, "the admin server is off (WSBRIDGE_ADMIN_ADDR=off): no health, readiness or metrics endpoints"); !ok {
		t.Errorf("no admin-off record; log:\n%s", r.log.String())
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d", code)
	}
	if _, ok := r.log.find(t, "admin listening"); ok {
		t.Errorf("the admin server listens although it is off; log:\n%s", r.log.String())
	}
}

// TestRunAdminListenError: an admin address set explicitly that cannot be
// bound is a runtime failure, exit code 1, and the other listeners are
// released.
func TestRunAdminListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log := newLogSink()
	code := run(context.Background(), []string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-admin-addr", ln.Addr().String(), "-log-format", "json"}, noEnv, io.Discard, log)
	if code != 1 {
		t.Errorf("run with a busy admin address = %d, want 1", code)
	}
	if rec, ok := log.find(t, "cannot start the admin server"); !ok || !strings.Contains(fmt.Sprint(rec["err"]), ln.Addr().String()) {
		t.Errorf("no admin listen error naming %s; log:\n%s", ln.Addr(), log.String())
	}
	if _, ok := log.find(t, "websocket listening"); ok {
		t.Errorf("run reported listening although it failed to start; log:\n%s", log.String())
	}
}

// TestRunAdminDefaultTaken: a taken admin address, the default one
// included, stops the bridge with exit 1: running without health probes
// would hide the problem from the orchestrator.
func TestRunAdminDefaultTaken(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:9503"); err == nil {
		defer ln.Close()
	} // else something else holds it: taken all the same
	log := newLogSink()
	code := run(context.Background(), []string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-log-format", "json"}, noEnv, io.Discard, log)
	if code != 1 {
		t.Errorf("run returned %d, want 1; log:\n%s", code, log.String())
	}
	if rec, ok := log.find(t, "cannot start the admin server"); !ok || !strings.Contains(fmt.Sprint(rec["err"]), "127.0.0.1:9503") {
		t.Errorf("no error naming the admin address; log:\n%s", log.String())
	}
}

// TestRunShutdownReadiness: once the shutdown starts, /readyz answers 503
// while the admin API still serves: pushes get a clear answer (nothing
// delivered, not an error) until the admin server stops last.
func TestRunShutdownReadiness(t *testing.T) {
	// A client that never answers the close frame keeps the hub's shutdown
	// busy until -shutdown-timeout.
	r := startRun(t, "-admin-token", adminToken, "-shutdown-timeout", "3s", "-close-timeout", "10m")
	base := "http://" + r.adminAddr(t)
	idle, _, err := dialer.Dial("ws://"+r.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if code, _ := adminDo(t, "GET", base+"/readyz", "", false); code != 200 {
		t.Fatalf("readyz before the shutdown: %d", code)
	}
	r.cancel()
	r.log.waitFor(t, "shutting down", r.done)
	var readyz, broadcast int
	var body string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) { // until the hub's drain has begun: the idle client no longer takes pushes
		readyz, _ = adminDo(t, "GET", base+"/readyz", "", false)
		broadcast, body = adminDo(t, "POST", base+"/v1/broadcast", `{"data":"x"}`, true)
		if readyz == 503 && strings.Contains(body, `"accepted":0`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if readyz != 503 || broadcast != 200 || !strings.Contains(body, `"accepted":0`) {
		t.Errorf("during the shutdown: readyz %d, broadcast %d %s; want 503 and 200 accepted 0", readyz, broadcast, body)
	}
	if code, _ := adminDo(t, "GET", base+"/healthz", "", false); code != 200 {
		t.Errorf("healthz during the shutdown: %d", code)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d; log:\n%s", code, r.log.String())
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("the admin server still answers after run returned")
	}
}

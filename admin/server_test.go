package admin_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
)

func newHub(t testing.TB) *bridge.Hub {
	t.Helper()
	hub, err := bridge.New(bridge.Config{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Shutdown(context.Background()) })
	return hub
}

func TestServerLifecycle(t *testing.T) {
	hub := newHub(t)
	if _, err := admin.New(hub, admin.Config{MaxBody: -1}); err == nil {
		t.Error("New with a negative MaxBody succeeded")
	}
	srv, err := admin.New(hub, admin.Config{Addr: "127.0.0.1:0", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != "127.0.0.1:0" {
		t.Errorf("Addr before Listen = %q", srv.Addr())
	}
	if err := srv.Serve(); err == nil || !strings.Contains(err.Error(), "before Listen") {
		t.Errorf("Serve before Listen = %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	// The address is taken: another server cannot listen on it.
	other, _ := admin.New(hub, admin.Config{Addr: addr, Logger: quietLog()})
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Listen on a taken address = %v", err)
	}
	// Shutdown without Serve closes the listener.
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	if err := srv.Serve(); err != nil {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after Shutdown")
	}
}

// TestShutdownLetsRequestsFinish: a request under way when Shutdown
// starts is answered, and /readyz turned 503 before.
func TestShutdownLetsRequestsFinish(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	ws, fd := e.dial(t, "a")
	// A push whose body arrives in two parts, the second after Shutdown
	// has started.
	body, w := io.Pipe()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/connections/%d/push", e.url, fd), body)
	req.Header.Set("Authorization", "Bearer "+token)
	done := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{status: -1, body: []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{status: resp.StatusCode, body: b}
	}()
	if _, err := io.WriteString(w, `{"data":`); err != nil {
		t.Fatal(err)
	}

	e.admin.SetStopping()
	if a := e.doAuth(t, "GET", "/readyz", "", ""); a.status != 503 {
		t.Errorf("readyz after SetStopping: %d", a.status)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shut <- e.admin.Shutdown(ctx)
	}()
	// Shutdown has started once the listener refuses connections.
	addr := strings.TrimPrefix(e.url, "http://")
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := io.WriteString(w, `"late"}`); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if a := <-done; a.status != 200 || !strings.Contains(string(a.body), `"queued":true`) {
		t.Errorf("the request under way got %d %s", a.status, a.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, got := read(t, ws); got != "late" {
		t.Errorf("the client read %q", got)
	}
}

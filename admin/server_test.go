package admin_test

import (
	"bufio"
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
	"github.com/wsbridge/wsbridge/sender"
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
	if _, err := admin.New(hub, sender.NewService(hub), admin.Config{MaxBody: -1}); err == nil {
		t.Error("New with a negative MaxBody succeeded")
	}
	srv, err := admin.New(hub, sender.NewService(hub), admin.Config{Addr: "127.0.0.1:0", Logger: quietLog()})
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
	other, _ := admin.New(hub, sender.NewService(hub), admin.Config{Addr: addr, Logger: quietLog()})
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
	// A push sent by hand with "Expect: 100-continue": the server answers
	// "100 Continue" when the handler starts to read the body, which proves
	// the request is under way before Shutdown starts. The body follows
	// after Shutdown has started.
	addr := strings.TrimPrefix(e.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	body := `{"data":"late"}`
	fmt.Fprintf(conn, "POST /v1/connections/%d/push HTTP/1.1\r\nHost: %s\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", fd, addr, token, len(body))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("interim response %q, %v", line, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q, %v", blank, err)
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
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request under way got no answer: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"queued":true`) {
		t.Errorf("the request under way got %d %s", resp.StatusCode, got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, got := read(t, ws); got != "late" {
		t.Errorf("the client read %q", got)
	}
}

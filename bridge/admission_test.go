package bridge_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// TestAuthorizePanicReleasesTheSlot: a panicking Authorize answers the
// handshake 500, gives its slot back, and leaves Shutdown its deadline.
func TestAuthorizePanicReleasesTheSlot(t *testing.T) {
	th := startHub(t, bridge.Config{MaxConnections: 1, Authorize: func(r *http.Request) bridge.Authorization {
		if r.URL.Query().Get("id") == "boom" {
			panic("authorize exploded")
		}
		return bridge.Authorization{Allow: true}
	}})
	for range 3 { // more than the one slot: a leaked slot would refuse the next
		_, resp, err := (&websocket.Dialer{HandshakeTimeout: wait}).Dial(th.url+"/?id=boom", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("dial with a panicking Authorize: %v, %v; want HTTP 500", resp, err)
		}
	}
	if n := th.Count(); n != 0 {
		t.Fatalf("%d slots held after the panics, want 0", n)
	}
	th.dial(t, "fine")
	if got := th.Stats().Refused.InternalError; got != 3 {
		t.Errorf("Stats().Refused.InternalError = %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

package tests

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestPollModeHalfFrame: the binary in poll mode, one pool goroutine, a
// short poll read timeout. A client that sends part of a large frame is
// closed with 1008 once the timeout passes, and the application gets its
// close; another client's messages are delivered before and after, in
// order.
func TestPollModeHalfFrame(t *testing.T) {
	t.Parallel()
	const secret = "poll-secret"
	app := newPHPApp(t, secret)
	p := startDefault(t, []string{
		"WSBRIDGE_EVENTS_URL=" + app.srv.URL + "/wsbridge/events",
		"WSBRIDGE_EVENTS_SECRET=" + secret,
		"WSBRIDGE_NODE_ID=3", // what newPHPApp checks
		"WSBRIDGE_READ_MODE=poll",
		"WSBRIDGE_POLL_WORKERS=1",
		"WSBRIDGE_POLL_READ_TIMEOUT=300ms",
	})
	other, _, err := dialer.Dial("ws://"+p.addr+"/?who=other", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	half, _, err := dialer.Dial("ws://"+p.addr+"/?who=half", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	app.waitEvents(2) // both opens

	if err := other.WriteMessage(websocket.TextMessage, []byte("before")); err != nil {
		t.Fatal(err)
	}
	app.waitEvents(3)
	// A masked binary frame of 10,000 bytes (more than the bridge waits
	// for in its epoll set): its header, its key, 100 of its bytes.
	if _, err := half.NetConn().Write(append([]byte{0x82, 0x80 | 126, 0x27, 0x10, 1, 2, 3, 4}, make([]byte, 100)...)); err != nil {
		t.Fatal(err)
	}
	if err := other.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	half.SetReadDeadline(time.Now().Add(readTimeout))
	_, _, err = half.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "message not received in time" {
		t.Fatalf("half a frame: read %v, want close 1008 \"message not received in time\"", err)
	}

	evs := app.waitEvents(5)
	var got []string
	for _, e := range evs {
		switch e.Type {
		case "open":
			got = append(got, "open "+e.Query)
		case "message":
			got = append(got, "message "+e.Data)
		case "close":
			got = append(got, fmt.Sprintf("close %d %s %s", e.Code, e.By, e.Query))
		}
	}
	joined := strings.Join(got, ",")
	for _, want := range []string{"message before", "message after", "close 1008 server"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("events %v, want %q among them", got, want)
		}
	}
	if strings.Index(joined, "message before") > strings.Index(joined, "message after") {
		t.Fatalf("events %v: out of order", got)
	}
}

package rpc_test

import (
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// TestPushesDuringHubDrain: while the hub's shutdown drains its
// connections, every push answers "nothing delivered" (false, 0, a list of
// false), as a push to a closed fd does, never shutting_down: the chat
// example's onClose pushes to a group during every deploy.
func TestPushesDuringHubDrain(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)
	call[bool](t, c, "Sender.Join", map[string]any{"fd": fd, "group": "room"})
	call[bool](t, c, "Sender.Bind", map[string]any{"fd": fd, "user": "u"})

	// The client reads nothing: the hub's close 1001 waits for its answer,
	// so the shutdown stays in its drain until the client is closed.
	ctx, cancel := contextWithTimeout()
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- e.hub.Shutdown(ctx) }()
	// Shutdown marks the hub closed before it closes the connections: once
	// fd is no longer open, the drain is under way.
	for deadline := time.Now().Add(wait); call[bool](t, c, "Sender.Check", map[string]any{"fd": fd}); {
		if time.Now().After(deadline) {
			t.Fatal("fd still open after Shutdown started")
		}
		time.Sleep(time.Millisecond)
	}

	svc := sender.NewService(e.hub)
	msg := sender.Message{Data: "bye"}
	counts := []struct {
		method string
		args   any
		direct func() (int, int, error)
	}{
		{"Sender.PushGroup", map[string]any{"group": "room", "data": "bye"}, func() (int, int, error) {
			return svc.PushGroup(&sender.PushGroupArgs{Group: "room", Message: msg})
		}},
		{"Sender.PushUser", map[string]any{"user": "u", "data": "bye"}, func() (int, int, error) {
			return svc.PushUser(&sender.PushUserArgs{User: "u", Message: msg})
		}},
		{"Sender.PushMany", map[string]any{"fds": []int64{fd}, "data": "bye"}, func() (int, int, error) {
			return svc.PushMany(&sender.PushManyArgs{FDs: []int64{fd}, Message: msg})
		}},
		{"Sender.Broadcast", map[string]any{"data": "bye"}, func() (int, int, error) {
			return svc.Broadcast(&sender.BroadcastArgs{Message: msg})
		}},
	}
	for _, tt := range counts {
		var n int
		if err := c.Call(tt.method, tt.args, &n); err != nil || n != 0 {
			t.Errorf("%s during the drain = %d, %v; want 0, no error", tt.method, n, err)
		}
		if n, _, err := tt.direct(); err != nil || n != 0 {
			t.Errorf("Service %s during the drain = %d, %v; want 0, no error", tt.method, n, err)
		}
	}
	for _, tt := range []struct {
		method string
		args   any
	}{
		{"Sender.Push", map[string]any{"fd": fd, "data": "bye"}},
		{"Sender.Disconnect", map[string]any{"fd": fd}},
		{"Sender.Join", map[string]any{"fd": fd, "group": "other"}},
	} {
		var ok bool
		if err := c.Call(tt.method, tt.args, &ok); err != nil || ok {
			t.Errorf("%s during the drain = %v, %v; want false, no error", tt.method, ok, err)
		}
	}
	var res []bool
	if err := c.Call("Sender.PushBatch", map[string]any{"messages": []map[string]any{{"fd": fd, "data": "bye"}}}, &res); err != nil || len(res) != 1 || res[0] {
		t.Errorf("Sender.PushBatch during the drain = %v, %v; want [false], no error", res, err)
	}
	// Invalid input is still an error during the drain.
	var n int
	if err := c.Call("Sender.PushGroup", map[string]any{"group": "room", "data": "x", "opcode": 9}, &n); !isCode(err, sender.CodeInvalidOpcode) {
		t.Errorf("PushGroup with a bad opcode during the drain = %d, %v; want invalid_opcode", n, err)
	}

	ws.Close()
	if err := <-drained; err != nil {
		t.Fatalf("hub Shutdown: %v", err)
	}
}

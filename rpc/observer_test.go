package rpc_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// calls records what an rpc.Observer is told.
type calls struct {
	mu   sync.Mutex
	list []string // "method outcome"
	neg  bool     // a negative duration was seen
}

func (c *calls) ObserveCall(method, outcome string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, method+" "+outcome)
	if d < 0 {
		c.neg = true
	}
}

func (c *calls) get() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list), c.neg
}

func TestObserver(t *testing.T) {
	obs := &calls{}
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{Observer: obs})
	_, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)

	call[bool](t, c, "Sender.Push", map[string]any{"fd": fd, "data": "x"})
	call[bool](t, c, "Sender.Push", map[string]any{"fd": fd + 100, "data": "x"}) // false, no error
	var ok bool
	var re *sender.Error
	if err := c.Call("Sender.Push", map[string]any{"fd": -1, "data": "x"}, &ok); !errors.As(err, &re) || re.Code != sender.CodeInvalidFD {
		t.Fatalf("Push to fd -1: %v", err)
	}
	if err := c.Call("Sender.Check", map[string]any{"fd": "one"}, &ok); !errors.As(err, &re) || re.Code != sender.CodeBadRequest {
		t.Fatalf("Check with a string fd: %v", err)
	}
	if err := c.Call("Sender.Nope", map[string]any{}, &ok); err == nil {
		t.Fatal("Sender.Nope succeeded")
	}
	call[map[string]int](t, c, "Sender.Groups", map[string]any{})

	got, neg := obs.get()
	want := []string{
		"Sender.Push ok", "Sender.Push ok", "Sender.Push invalid_fd", "Sender.Check bad_request",
		"unknown error", "Sender.Groups ok",
	}
	if !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
	if neg {
		t.Error("a negative duration was observed")
	}
}

func TestMethods(t *testing.T) {
	want := []string{
		"Sender.Bind", "Sender.Broadcast", "Sender.Check", "Sender.Connections", "Sender.Disconnect", "Sender.GroupMembers",
		"Sender.Groups", "Sender.GroupsOf", "Sender.Info", "Sender.Join", "Sender.Leave", "Sender.Push",
		"Sender.PushBatch", "Sender.PushGroup", "Sender.PushMany", "Sender.PushUser", "Sender.Stats",
		"Sender.Unbind", "Sender.UserFds",
	}
	if got := rpc.Methods(); !slices.Equal(got, want) {
		t.Errorf("Methods() = %q, want %q", got, want)
	}
}

// TestServiceMatchesRPC: the Service called from Go answers as the RPC
// method does, errors with the same codes.
func TestServiceMatchesRPC(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	svc := sender.NewService(e.hub)
	if ok, err := svc.Push(&sender.PushArgs{FD: fd, Message: sender.Message{Data: "aGk=", Encoding: "base64"}}); !ok || err != nil {
		t.Fatalf("Push = %v, %v", ok, err)
	}
	readText(t, ws, "hi")
	if ok, err := svc.Push(&sender.PushArgs{FD: fd, Message: sender.Message{Data: "x", Encoding: "hex"}}); ok || !isCode(err, sender.CodeBadRequest) {
		t.Errorf("Push with encoding hex = %v, %v; want bad_request", ok, err)
	}
	if n, _, err := svc.PushMany(&sender.PushManyArgs{FDs: make([]int64, sender.MaxBatch+1)}); n != 0 || !isCode(err, sender.CodeBadRequest) {
		t.Errorf("PushMany past MaxBatch = %d, %v; want bad_request", n, err)
	}
	if n, _, err := svc.Broadcast(&sender.BroadcastArgs{Message: sender.Message{Data: "x", Opcode: ptr(9)}}); n != 0 || !isCode(err, sender.CodeInvalidOpcode) {
		t.Errorf("Broadcast of a ping = %d, %v; want invalid_opcode", n, err)
	}
	if n, _, err := svc.PushUser(&sender.PushUserArgs{User: "", Message: sender.Message{Data: "x"}}); n != 0 || !isCode(err, sender.CodeInvalidName) {
		t.Errorf("PushUser to an empty user = %d, %v; want invalid_name", n, err)
	}
	if ok, err := svc.Disconnect(&sender.DisconnectArgs{FD: fd, Code: 1005}); ok || !isCode(err, sender.CodeInvalidCloseCode) {
		t.Errorf("Disconnect with 1005 = %v, %v; want invalid_close_code", ok, err)
	}
	if info, _ := svc.Info(fd + 1); info.Connected || info.Groups == nil || info.Headers == nil {
		t.Errorf("Info of an unknown fd = %+v", info)
	}
	if got, _, _ := svc.GroupMembers("none"); got == nil || len(got) != 0 {
		t.Errorf("GroupMembers of an empty group = %#v, want []", got)
	}
	if st := svc.Stats(); st.Connections != 1 || len(st.Workers) == 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func isCode(err error, code string) bool {
	var e *sender.Error
	return errors.As(err, &e) && e.Code == code
}

package rpc

import (
	"errors"
	"testing"

	"github.com/wsbridge/wsbridge/sender"
)

// TestPanicIsAnInternalError: a Sender method that panics (here: a
// Service without a hub) answers internal instead of ending the process,
// which net/rpc would let happen.
func TestPanicIsAnInternalError(t *testing.T) {
	r := &receiver{svc: new(sender.Service)}
	var ok bool
	err := r.Push(&sender.PushArgs{FD: 1, Message: sender.Message{Data: "x"}}, &ok)
	var e *sender.Error
	if !errors.As(err, &e) || e.Code != sender.CodeInternal {
		t.Fatalf("Push on a broken Service = %v, %v; want internal", ok, err)
	}
}

package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// batchClients dials n clients and returns them with their fds.
func batchClients(t *testing.T, th *testHub, n int) ([]*websocket.Conn, []int64) {
	t.Helper()
	cs, fds := make([]*websocket.Conn, n), make([]int64, n)
	for i := range n {
		cs[i], fds[i] = th.dial(t, fmt.Sprint("c", i))
	}
	return cs, fds
}

func workerOf(t *testing.T, th *testHub, fd int64) int {
	t.Helper()
	info, ok := th.Info(fd)
	if !ok {
		t.Fatalf("fd %d is not open", fd)
	}
	return info.Worker
}

// A batch to more connections than one chunk of the flushers (128), over
// several workers and flushers, each connection named twice and an unknown
// fd between them: every connection gets its two messages in the batch's
// order, the unknown fd answers false, the others true.
func TestPushBatchOrderAcrossWorkers(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 3, Flushers: 2})
	const n = 300
	cs, fds := batchClients(t, th, n)
	var msgs []bridge.BatchMessage
	var want []bool
	for round := range 2 {
		for k := range n {
			i := k
			if round == 1 {
				i = n - 1 - k
			}
			msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: fmt.Appendf(nil, "%d/%d", i, round), Op: bridge.OpText, Finish: true})
			want = append(want, true)
			if k%100 == 0 {
				msgs = append(msgs, bridge.BatchMessage{FD: fds[n-1] + 1000, Data: []byte("nobody"), Op: bridge.OpText, Finish: true})
				want = append(want, false)
			}
		}
	}
	ok := make([]bool, len(msgs))
	stopped, err := th.PushBatch(msgs, ok)
	if err != nil || stopped != len(msgs) {
		t.Fatalf("PushBatch = %d, %v; want %d, nil", stopped, err, len(msgs))
	}
	for i := range ok {
		if ok[i] != want[i] {
			t.Fatalf("ok[%d] (fd %d) = %v, want %v", i, msgs[i].FD, ok[i], want[i])
		}
	}
	for i, c := range cs {
		readText(t, c, fmt.Sprintf("%d/0", i))
		readText(t, c, fmt.Sprintf("%d/1", i))
	}
	if got := th.Stats().NotOpen; got != 6 {
		t.Fatalf("Stats().NotOpen = %d, want 6", got)
	}
}

// A batch of 1,000 messages to 10 connections of one worker (the lookups
// take the worker's read lock again every 256 fds), and fds of a closed
// connection among them: each open connection gets its 100 messages in
// order, the closed one's answer false.
func TestPushBatchManyOnOneWorker(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 1, QueueSize: 200})
	const n, per = 10, 100
	cs, fds := batchClients(t, th, n)
	closed, closedFD := th.dial(t, "closed")
	closed.Close()
	th.rec.closeOf(t, closedFD)
	var msgs []bridge.BatchMessage
	for k := range per {
		for i := range n {
			msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: fmt.Appendf(nil, "%d/%d", i, k), Op: bridge.OpText, Finish: true})
		}
		msgs = append(msgs, bridge.BatchMessage{FD: closedFD, Data: []byte("gone"), Op: bridge.OpText, Finish: true})
	}
	ok := make([]bool, len(msgs))
	if stopped, err := th.PushBatch(msgs, ok); err != nil || stopped != len(msgs) {
		t.Fatalf("PushBatch = %d, %v; want %d, nil", stopped, err, len(msgs))
	}
	for i, m := range msgs {
		if ok[i] != (m.FD != closedFD) {
			t.Fatalf("ok[%d] (fd %d) = %v", i, m.FD, ok[i])
		}
	}
	for i, c := range cs {
		for k := range per {
			readText(t, c, fmt.Sprintf("%d/%d", i, k))
		}
	}
}

// A message whose fault depends on the connection's state stops the batch
// there: the messages before it are sent, it and those after are not, on
// every worker, and the error is the one Push returns.
func TestPushBatchStopsAtStateError(t *testing.T) {
	// Consecutive fds of a CounterSequence are on different workers of 2;
	// the default ClockSequence may give two dials in different
	// milliseconds fds of the same parity.
	th := startHub(t, bridge.Config{Workers: 2, Sequence: &bridge.CounterSequence{}})
	a, fdA := th.dial(t, "a")
	b, fdB := th.dial(t, "b")
	if workerOf(t, th, fdA) == workerOf(t, th, fdB) {
		t.Fatalf("fds %d and %d share a worker", fdA, fdB)
	}
	text := func(fd int64, s string) bridge.BatchMessage {
		return bridge.BatchMessage{FD: fd, Data: []byte(s), Op: bridge.OpText, Finish: true}
	}
	for _, tc := range []struct {
		bad  bridge.BatchMessage
		want error
	}{
		{bridge.BatchMessage{FD: fdA, Data: []byte{0xff, 0xfe}, Op: bridge.OpText, Finish: true}, bridge.ErrInvalidUTF8},
		{bridge.BatchMessage{FD: fdA, Data: []byte("cont"), Op: bridge.OpContinuation, Finish: true}, bridge.ErrInvalidOpcode},
		{bridge.BatchMessage{FD: fdA + 1000, Data: []byte{0xff}, Op: bridge.OpText, Finish: true}, bridge.ErrInvalidUTF8}, // not open: checked all the same
	} {
		msgs := []bridge.BatchMessage{text(fdA, "a1"), text(fdB, "b1"), tc.bad, text(fdB, "b-after"), text(fdA, "a-after")}
		ok := []bool{false, false, true, true, true} // a reused slice: the batch must clear what it did not send
		stopped, err := th.PushBatch(msgs, ok)
		if stopped != 2 || !errors.Is(err, tc.want) {
			t.Fatalf("PushBatch with %v = %d, %v; want 2, %v", tc.bad, stopped, err, tc.want)
		}
		single := th.Push(tc.bad.FD, tc.bad.Data, tc.bad.Op, tc.bad.Finish)
		if !errors.Is(single, tc.want) {
			t.Fatalf("Push of the same message = %v, want %v", single, tc.want)
		}
		if !ok[0] || !ok[1] || ok[2] || ok[3] || ok[4] {
			t.Fatalf("ok = %v, want [true true false false false]", ok)
		}
		for _, fd := range []int64{fdA, fdB} {
			if err := th.Push(fd, []byte("marker"), bridge.OpText, true); err != nil {
				t.Fatal(err)
			}
		}
		readText(t, a, "a1")
		readText(t, a, "marker") // "a-after" was not sent
		readText(t, b, "b1")
		readText(t, b, "marker")
	}
}

// A result slice shorter than the batch is an error before anything is
// sent, not a panic after some messages were queued.
func TestPushBatchShortResults(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c, fd := th.dial(t, "a")
	msgs := []bridge.BatchMessage{
		{FD: fd, Data: []byte("m0"), Op: bridge.OpText, Finish: true},
		{FD: fd, Data: []byte("m1"), Op: bridge.OpText, Finish: true},
	}
	ok := make([]bool, 1)
	var stopped int
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("PushBatch panicked: %v", p)
			}
		}()
		stopped, err = th.PushBatch(msgs, ok)
	}()
	if err == nil || stopped != 0 || ok[0] {
		t.Fatalf("PushBatch with 1 result for 2 messages = %d, %v, ok %v; want 0, an error, false", stopped, err, ok)
	}
	if err := th.Push(fd, []byte("marker"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "marker") // nothing of the batch was sent
}

// With a send queue of 2 messages, a batch of 10 to one connection that is
// not read (overflow policy drop): the queue's bound answers false for what does not fit, and the
// client gets exactly the messages answered true, in order.
func TestPushBatchQueueBound(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 2, Overflow: bridge.OverflowDrop})
	c, fd := th.dial(t, "a")
	msgs := make([]bridge.BatchMessage, 10)
	for i := range msgs {
		msgs[i] = bridge.BatchMessage{FD: fd, Data: fmt.Appendf(nil, "m%d", i), Op: bridge.OpBinary, Finish: true}
	}
	ok := make([]bool, len(msgs))
	if stopped, err := th.PushBatch(msgs, ok); err != nil || stopped != len(msgs) {
		t.Fatalf("PushBatch = %d, %v", stopped, err)
	}
	// Nothing is written before the batch hands the connection to its
	// flusher at its end: the queue holds the first two, the rest do not fit.
	for i := range msgs {
		if ok[i] != (i < 2) {
			t.Fatalf("ok = %v: want the first two accepted and the other 8 refused", ok)
		}
	}
	readText(t, c, "m0")
	readText(t, c, "m1")
	if got := th.Stats().Workers[workerOf(t, th, fd)].Overflows; got != 8 {
		t.Fatalf("overflows = %d, want 8", got)
	}
	if err := th.Push(fd, []byte("last"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "last")
}

// PushMany to more connections than one flusher chunk, over several
// workers, with unknown, invalid and repeated fds: each open fd gets the
// message once per time it is named, and the count says so.
func TestPushManyAcrossWorkers(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 3, Flushers: 2})
	const n = 200
	cs, fds := batchClients(t, th, n)
	list := append([]int64{-1, fds[n-1] + 1000, fds[0]}, fds...)
	got, err := th.PushMany(list, []byte("all"), bridge.OpText)
	if err != nil || got != n+1 {
		t.Fatalf("PushMany = %d, %v; want %d", got, err, n+1)
	}
	readText(t, cs[0], "all")
	for _, c := range cs {
		readText(t, c, "all")
	}
	if got := th.Stats().NotOpen; got != 2 {
		t.Fatalf("Stats().NotOpen = %d, want 2", got)
	}
}

// Pushes to one fd are written directly while the socket takes them (the
// flusher, direct.go); a client that does not read fills the socket, and
// then the writes go to a writer goroutine, partial frames included. Every
// push returns without waiting for the client, and once it reads, the
// client gets exactly the accepted messages, whole and in order.
func TestPushToFullSocketInOrder(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 1000, QueueBytes: 64 << 20, Overflow: bridge.OverflowDrop, WriteTimeout: time.Minute})
	c, fd := th.dial(t, "slow")
	const n = 300
	msg := func(i int) []byte {
		b := make([]byte, 60000)
		copy(b, fmt.Sprintf("%04d", i))
		return b
	}
	// The pushing goroutine reports through pushErr, read once it is done:
	// on the timeout path the test ends while it may still run, and it
	// must not touch t then.
	var accepted []int
	var pushErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			switch err := th.Push(fd, msg(i), bridge.OpBinary, true); {
			case err == nil:
				accepted = append(accepted, i)
			case !bridge.IsNotDelivered(err):
				pushErr = fmt.Errorf("push %d: %w", i, err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("pushes to a client that does not read did not return")
	}
	if pushErr != nil {
		t.Fatal(pushErr)
	}
	if len(accepted) == 0 {
		t.Fatal("no push accepted")
	}
	for _, i := range accepted {
		c.SetReadDeadline(time.Now().Add(wait))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read (want message %d): %v", i, err)
		}
		if len(data) != 60000 || string(data[:4]) != fmt.Sprintf("%04d", i) {
			t.Fatalf("got message %q (%d bytes), want %04d", data[:4], len(data), i)
		}
	}
}

// pauseHandler is a slog.Handler that calls pause, in the logging
// goroutine, for every record whose message is msg: a test stops a
// PushBatch at a known message with it (an overflow that closes the
// connection logs from the pushing goroutine).
type pauseHandler struct {
	msg   string
	pause func()
}

func (h pauseHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h pauseHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h pauseHandler) WithGroup(string) slog.Handler            { return h }
func (h pauseHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.pause()
	}
	return nil
}

// A batch that names one connection first and then, for many messages, no
// connection that needs its flusher (fds of another node) must hand that
// connection to its flusher while it goes on, not only at its end. The
// batch is paused near its end (an overflow of connection B with policy
// close logs from the pushing goroutine, and the log handler waits there)
// until A's client has read its message: it must get it while the batch is
// still paused.
func TestPushBatchFlushesWhileItGoesOn(t *testing.T) {
	got := make(chan struct{})
	var during bool // A's message arrived while the batch was paused
	pause := func() {
		select {
		case <-got:
			during = true
		case <-time.After(wait):
		}
	}
	th := startHub(t, bridge.Config{QueueSize: 1, Overflow: bridge.OverflowClose,
		Logger: slog.New(pauseHandler{msg: "send queue full, closing slow connection", pause: pause})})
	a, fdA := th.dial(t, "a")
	_, fdB := th.dial(t, "b")
	read := make(chan error, 1)
	go func() {
		_ = a.SetReadDeadline(time.Now().Add(2 * wait))
		_, data, err := a.ReadMessage()
		if err == nil && string(data) != "first" {
			err = fmt.Errorf("read %q, want \"first\"", data)
		}
		if err == nil {
			close(got)
		}
		read <- err
	}()
	other := int64(5)<<bridge.SeqBits | 1 // an fd of node 5: answered false, collects no connection
	text := func(fd int64, s string) bridge.BatchMessage {
		return bridge.BatchMessage{FD: fd, Data: []byte(s), Op: bridge.OpText, Finish: true}
	}
	msgs := []bridge.BatchMessage{text(fdA, "first")}
	for range 1000 { // many chunks' worth
		msgs = append(msgs, text(other, "filler"))
	}
	msgs = append(msgs, text(fdB, "b1"), text(fdB, "b2")) // b2 overflows B's queue of 1: the pause
	ok := make([]bool, len(msgs))
	if stopped, err := th.PushBatch(msgs, ok); err != nil || stopped != len(msgs) {
		t.Fatalf("PushBatch = %d, %v; want %d, nil", stopped, err, len(msgs))
	}
	if !ok[0] || ok[1] || !ok[len(msgs)-2] || ok[len(msgs)-1] {
		t.Fatalf("ok[0], ok[1], ok[b1], ok[b2] = %v %v %v %v, want true false true false", ok[0], ok[1], ok[len(msgs)-2], ok[len(msgs)-1])
	}
	if err := <-read; err != nil {
		t.Fatalf("A: %v", err)
	}
	if !during {
		t.Fatal("A's message was written only after the whole batch")
	}
}

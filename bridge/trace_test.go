package bridge_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// TestTraceRecordsFramesPushesAndClose: a traced connection's trace shows
// the message it sent, the pushes to it (one queued, one refused by its
// full queue, a broadcast), the frames written, its close, and the push
// made after the close; an untraced one shows nothing.
func TestTraceRecordsFramesPushesAndClose(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 2, Workers: 1})
	c, fd := th.dial(t, "traced")
	_, other := th.dial(t, "other")

	if _, ok := th.TraceOf(fd); ok {
		t.Fatal("a trace before Trace was called")
	}
	until, err := th.Trace(fd, time.Minute)
	if err != nil {
		t.Fatalf("Trace: %v", err)
	}
	if d := time.Until(until); d < 50*time.Second || d > time.Minute {
		t.Errorf("trace until %v from now, want about a minute", d)
	}

	if err := c.WriteMessage(websocket.TextMessage, []byte("hello <b>bridge</b>")); err != nil {
		t.Fatal(err)
	}
	th.rec.waitFor(t, "the message", func() bool { return len(th.rec.messages[fd]) == 1 })
	if err := th.Push(fd, []byte("pushed one"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "pushed one")
	if _, err := th.Broadcast([]byte("to all"), bridge.OpText, nil); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "to all")
	if err := th.Push(fd, []byte{0, 1, 2, 0xff}, bridge.OpBinary, true); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if err := th.Push(other, []byte("not traced"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("é", bridge.TracePreview) // 2 bytes each: cut at a character
	if err := th.Push(fd, []byte(big), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, c, big)

	waitTrace(t, th, fd, "4 frames out", func(tr bridge.Trace) bool { return len(tr.Out) == 4 })
	tr, _ := th.TraceOf(fd)
	if !tr.Active || tr.FD != fd {
		t.Errorf("trace active=%v fd=%d, want active, %d", tr.Active, tr.FD, fd)
	}
	if len(tr.In) != 1 || tr.In[0].Preview != "hello <b>bridge</b>" || tr.In[0].Opcode != bridge.OpText || tr.In[0].Size != 19 {
		t.Errorf("frames in: %+v", tr.In)
	}
	wantPushes := []struct {
		preview   string
		broadcast bool
		binary    bool
	}{{"pushed one", false, false}, {"", true, false}, {"000102ff", false, true}, {big[:bridge.TracePreview], false, false}}
	if len(tr.Pushes) != len(wantPushes) {
		t.Fatalf("pushes: %+v", tr.Pushes)
	}
	for i, w := range wantPushes {
		p := tr.Pushes[i]
		if p.Kind != bridge.TracePush || p.Outcome != "queued" || p.Broadcast != w.broadcast || p.Binary != w.binary {
			t.Errorf("push %d: %+v", i, p)
		}
		if !w.broadcast && p.Preview != w.preview {
			t.Errorf("push %d: preview %q, want %q", i, p.Preview, w.preview)
		}
	}
	if p := tr.Pushes[3]; !p.Truncated || p.Size != len(big) {
		t.Errorf("a long push's entry: %+v", p)
	}
	for _, o := range tr.Out {
		if o.Outcome != "written" || o.At.IsZero() {
			t.Errorf("frame out: %+v", o)
		}
	}
	if tr.Out[1].Broadcast != true || tr.Out[1].Size != len("to all") {
		t.Errorf("the broadcast's frame: %+v", tr.Out[1])
	}
	st, ok := th.ConnStats(fd)
	if !ok || st.BytesIn != 19 || st.BytesOut != uint64(len("pushed one")+len("to all")+4+len(big)) {
		t.Errorf("ConnStats = %+v, %v", st, ok)
	}
	if _, ok := th.TraceOf(other); ok {
		t.Error("the untraced connection has a trace")
	}

	// A full queue: the client stops reading; pushes fill the queue (2)
	// and the kernel's buffers, then one is refused.
	c.SetReadDeadline(time.Time{})
	payload := strings.Repeat("x", 60<<10)
	refused := false
	for i := 0; i < 1000 && !refused; i++ {
		err := th.Push(fd, []byte(payload), bridge.OpText, true)
		refused = errors.Is(err, bridge.ErrQueueFull)
	}
	if !refused {
		t.Fatal("no push refused by the full queue")
	}
	waitTrace(t, th, fd, "the close", func(tr bridge.Trace) bool { return tr.Closed != nil })
	_ = th.Push(fd, []byte("after the close"), bridge.OpText, true)
	tr, ok = th.TraceOf(fd)
	if !ok {
		t.Fatal("the trace of a closed connection is gone before its time")
	}
	last := tr.Pushes[len(tr.Pushes)-1]
	if last.Outcome != "not_open" || last.Preview != "after the close" {
		t.Errorf("the push after the close: %+v", last)
	}
	found := false
	for _, p := range tr.Pushes {
		found = found || p.Outcome == "queue_full"
	}
	if !found {
		t.Errorf("no queue_full push in %d entries (lost %d)", len(tr.Pushes), tr.Lost.Pushes)
	}
	if !strings.HasPrefix(tr.Closed.Outcome, fmt.Sprint(bridge.CloseSlowConsumer)+" by server") {
		t.Errorf("close entry: %+v", tr.Closed)
	}
	if !th.StopTrace(fd) || th.StopTrace(fd) {
		t.Error("StopTrace: want true, then false")
	}
	if _, ok := th.TraceOf(fd); ok {
		t.Error("a trace after StopTrace")
	}
}

// TestTraceBounds: a trace stops at its time; at most MaxTraces at once;
// only open connections; the rings keep the last TraceSize entries.
func TestTraceBounds(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 1})
	_, fd := th.dial(t, "a")
	if _, err := th.Trace(0, time.Second); !errors.Is(err, bridge.ErrInvalidFD) {
		t.Errorf("Trace(0): %v", err)
	}
	if _, err := th.Trace(fd+1000, time.Second); !errors.Is(err, bridge.ErrUnknownFD) {
		t.Errorf("Trace of an unknown fd: %v", err)
	}
	if _, err := th.Trace(fd, time.Millisecond); err != nil { // raised to a second
		t.Fatal(err)
	}
	for i := range bridge.TraceSize + 10 {
		if err := th.Push(fd, []byte(fmt.Sprint(i)), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
	}
	tr, _ := th.TraceOf(fd)
	if len(tr.Pushes) != bridge.TraceSize || tr.Lost.Pushes != 10 || tr.Pushes[0].Preview != "10" {
		t.Errorf("ring: %d entries, %d lost, first %q", len(tr.Pushes), tr.Lost.Pushes, tr.Pushes[0].Preview)
	}
	deadline := time.Now().Add(wait)
	for {
		if _, ok := th.TraceOf(fd); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trace did not stop at its time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(th.Traced()) != 0 {
		t.Errorf("Traced() = %v after expiry", th.Traced())
	}

	fds := []int64{fd}
	for i := range bridge.MaxTraces {
		_, f := th.dial(t, fmt.Sprint("n", i))
		fds = append(fds, f)
	}
	for i, f := range fds {
		_, err := th.Trace(f, time.Minute)
		if i < bridge.MaxTraces && err != nil {
			t.Fatalf("trace %d: %v", i, err)
		}
		if i == bridge.MaxTraces && !errors.Is(err, bridge.ErrTooManyTraces) {
			t.Fatalf("trace %d: %v, want ErrTooManyTraces", i, err)
		}
	}
	for _, f := range fds {
		th.StopTrace(f)
	}
}

func waitTrace(t *testing.T, th *testHub, fd int64, what string, cond func(bridge.Trace) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		tr, ok := th.TraceOf(fd)
		if ok && cond(tr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trace does not show %s: %+v", what, tr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

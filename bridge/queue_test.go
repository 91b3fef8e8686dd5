package bridge_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// smallBuffers is a listener whose connections have a small fixed send
// buffer (no autotuning), so what a client that does not read takes off the
// bridge's queue is a few kilobytes, not what the kernel grows it to.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		err = errors.Join(err, tc.SetWriteBuffer(4096))
	}
	return c, err
}

// startStalledHub is startHub with smallBuffers, for tests that count what
// the queues of stalled clients hold.
func startStalledHub(t testing.TB, cfg bridge.Config) *testHub {
	t.Helper()
	return startHubOn(t, cfg, func(ln net.Listener) net.Listener { return smallBuffers{ln} })
}

// expectClose reads until the client gets a close frame and fails unless
// its code is want.
func expectClose(t testing.TB, c *websocket.Conn, want int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != want {
			t.Fatalf("read: %v, want close %d", err, want)
		}
		return
	}
}

// Under the drop policy, broadcasts held behind an open fragmented message
// fill their own bound, not the queue: the push that finishes the message
// is accepted, the client gets the whole message and then the held
// broadcasts, and the connection keeps taking pushes.
func TestOpenFragmentDoesNotWedgeTheQueue(t *testing.T) {
	const bound, flood = 8, 50
	th := startHub(t, bridge.Config{Overflow: bridge.OverflowDrop, QueueSize: bound})
	c, fd := th.dial(t, "a")
	if err := th.Push(fd, []byte("hel"), bridge.OpText, false); err != nil {
		t.Fatal(err)
	}
	held := 0
	for i := range flood {
		n, err := th.Broadcast([]byte(fmt.Sprint("b", i)), bridge.OpText, nil)
		if err != nil {
			t.Fatal(err)
		}
		held += n
	}
	if err := th.Push(fd, []byte("lo"), bridge.OpContinuation, false); err != nil {
		t.Fatalf("a continuation: %v", err)
	}
	if err := th.Push(fd, []byte(" you"), bridge.OpText, true); err != nil {
		t.Fatalf("the finishing push: %v", err)
	}
	readText(t, c, "hello you")
	for i := range held {
		readText(t, c, fmt.Sprint("b", i))
	}
	if !th.Check(fd) {
		t.Fatal("the connection was closed")
	}
	if err := th.Push(fd, []byte("after"), bridge.OpText, true); err != nil {
		t.Fatalf("a push after the message: %v", err)
	}
	readText(t, c, "after")
	if held != bound {
		t.Fatalf("%d broadcasts held, want the bound %d", held, bound)
	}
	st := th.Stats()
	if n := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.HeldOverflows }); n != flood-bound {
		t.Fatalf("held overflows counted: %d, want %d", n, flood-bound)
	}
	if n := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.Overflows }); n != flood-bound {
		t.Fatalf("overflows counted: %d, want %d", n, flood-bound)
	}
	waitStats(t, th.Hub, "queued bytes back to 0", func(s bridge.Stats) bool { return s.QueuedBytes == 0 })
}

// Pushes that continue an open fragmented message are bounded by the
// message (MaxPushSize), not by the queue: with the queue at its byte bound
// behind a client that does not read, the message is still continued and
// finished, and the client, once it reads, gets everything.
func TestFragmentContinuesPastAFullQueue(t *testing.T) {
	const max = 256 << 10
	th := startStalledHub(t, bridge.Config{Overflow: bridge.OverflowDrop, QueueBytes: max, MaxPushSize: max,
		QueueSize: 1 << 16, WriteTimeout: time.Hour})
	c, fd := th.dialWith(t, stalledDialer, "slow")
	msg := []byte(strings.Repeat("m", 16<<10+1))
	accepted := 0
	for ; ; accepted++ {
		err := th.Push(fd, msg, bridge.OpText, true)
		if errors.Is(err, bridge.ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	part := strings.Repeat("f", 16<<10)
	if err := th.Push(fd, []byte("<"), bridge.OpText, false); err != nil {
		t.Fatalf("opening push: %v", err)
	}
	const parts = 15 // 240 KiB: more than a stalled client's socket buffers take
	for i := range parts {
		if err := th.Push(fd, []byte(part), bridge.OpContinuation, false); err != nil {
			t.Fatalf("continuation %d past the queue's bound: %v", i, err)
		}
	}
	if err := th.Push(fd, []byte(">"), bridge.OpContinuation, true); err != nil {
		t.Fatalf("the finishing push: %v", err)
	}
	for range accepted {
		readText(t, c, string(msg))
	}
	readText(t, c, "<"+strings.Repeat(part, parts)+">")
	waitStats(t, th.Hub, "queued bytes back to 0", func(s bridge.Stats) bool { return s.QueuedBytes == 0 })
}

// A fragmented message that no push continues within FragmentTimeout is
// aborted with 1011 and counted; the connection takes no more pushes (which
// would otherwise be glued into the open message). Connections with nothing
// open are left alone.
func TestIdleFragmentIsAborted(t *testing.T) {
	th := startHub(t, bridge.Config{FragmentTimeout: 200 * time.Millisecond})
	c, fd := th.dial(t, "a")
	other, otherFD := th.dial(t, "b")
	if err := th.Push(fd, []byte("hel"), bridge.OpText, false); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, bridge.CloseInternalError)
	if ev := th.rec.closeOf(t, fd); ev.Code != bridge.CloseInternalError || !ev.ByServer {
		t.Fatalf("close event %+v, want 1011 by the server", ev)
	}
	if err := th.Push(fd, []byte("lo"), bridge.OpContinuation, true); !errors.Is(err, bridge.ErrUnknownFD) {
		t.Fatalf("a push after the abort: %v, want ErrUnknownFD", err)
	}
	st := th.Stats()
	if n := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.FragmentTimeouts }); n != 1 {
		t.Fatalf("fragment timeouts counted: %d, want 1", n)
	}
	if err := th.Push(otherFD, []byte("still here"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, other, "still here")
}

// A fragmented message is bounded by MaxPushSize as a whole: a message of
// exactly the bound goes through; a push that would take one past it is
// refused with ErrTooLarge and the message, which cannot be finished on the
// wire, is aborted with 1011 and counted.
func TestFragmentedMessageSizeIsBounded(t *testing.T) {
	const max = 1000
	th := startHub(t, bridge.Config{MaxPushSize: max, QueueBytes: 4 * max})
	ok, okFD := th.dial(t, "ok")
	half := strings.Repeat("h", max/2)
	for i, finish := range []bool{false, true} {
		if err := th.Push(okFD, []byte(half), bridge.OpText, finish); err != nil {
			t.Fatalf("push %d of a message at the bound: %v", i, err)
		}
	}
	readText(t, ok, half+half)

	c, fd := th.dial(t, "big")
	for i := range 2 {
		if err := th.Push(fd, []byte(half), bridge.OpBinary, false); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
	}
	if err := th.Push(fd, []byte("x"), bridge.OpContinuation, true); !errors.Is(err, bridge.ErrTooLarge) {
		t.Fatalf("a push past the message's bound: %v, want ErrTooLarge", err)
	}
	expectClose(t, c, bridge.CloseInternalError)
	if ev := th.rec.closeOf(t, fd); ev.Code != bridge.CloseInternalError || !ev.ByServer {
		t.Fatalf("close event %+v, want 1011 by the server", ev)
	}
	st := th.Stats()
	if n := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.FragmentTooLarge }); n != 1 {
		t.Fatalf("too large fragmented messages counted: %d, want 1", n)
	}
	if !th.Check(okFD) {
		t.Fatal("the other connection was closed")
	}
}

// pushUntil pushes msg to fd until the Hub's queued bytes reach atLeast,
// checking after each push that they stay within the budget.
func pushUntil(t *testing.T, th *testHub, fd int64, msg []byte, atLeast, budget int64) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		q := th.Stats().QueuedBytes
		if q > budget {
			t.Fatalf("queued bytes %d, over the budget %d", q, budget)
		}
		if q >= atLeast {
			return
		}
		if err := th.Push(fd, msg, bridge.OpBinary, true); err != nil {
			t.Fatalf("push %d to fd %d (queued %d): %v", i, fd, q, err)
		}
	}
	t.Fatalf("queued bytes never reached %d", atLeast)
}

// The global budget of queued bytes, close policy: three clients that never
// read hold queues of about 1, 0.5 and 0 MiB under a 2 MiB budget. Pushes to
// the smallest that would pass the budget close the largest queue's
// connection with 1008 and are accepted; the total stays within the budget.
func TestQueuedBytesBudgetClosesLargestQueues(t *testing.T) {
	const budget = 2 << 20
	th := startStalledHub(t, bridge.Config{MaxQueuedBytes: budget, QueueBytes: budget, MaxPushSize: 64 << 10,
		QueueSize: 1 << 16, WriteTimeout: time.Hour})
	big, bigFD := th.dialWith(t, stalledDialer, "big")
	_, midFD := th.dialWith(t, stalledDialer, "mid")
	_, smallFD := th.dialWith(t, stalledDialer, "small")
	msg := make([]byte, 16<<10)
	pushUntil(t, th, bigFD, msg, 1<<20, budget)
	pushUntil(t, th, midFD, msg, 3<<19, budget)
	for i := 0; th.Check(bigFD); i++ {
		if i == 1000 {
			t.Fatal("the largest queue was never closed")
		}
		if err := th.Push(smallFD, msg, bridge.OpBinary, true); err != nil {
			t.Fatalf("push %d to the smallest queue: %v", i, err)
		}
		if q := th.Stats().QueuedBytes; q > budget {
			t.Fatalf("queued bytes %d, over the budget %d", q, budget)
		}
	}
	if !th.Check(midFD) || !th.Check(smallFD) {
		t.Fatal("a smaller queue was closed")
	}
	big.Close() // its writer is stuck; the socket goes and the bridge finishes it
	if ev := th.rec.closeOf(t, bigFD); ev.Code != bridge.CloseSlowConsumer || !ev.ByServer {
		t.Fatalf("close event %+v, want 1008 by the server", ev)
	}
	if st := th.Stats(); st.BudgetCloses != 1 {
		t.Fatalf("budget closes counted: %d, want 1", st.BudgetCloses)
	}
}

// The global budget, drop policy: past three quarters of the budget the
// largest queue is refused while a small one still takes pushes; the total
// never passes the budget; refusals are counted.
func TestQueuedBytesBudgetRefusesLargestQueues(t *testing.T) {
	const budget = 2 << 20
	th := startStalledHub(t, bridge.Config{MaxQueuedBytes: budget, QueueBytes: budget, MaxPushSize: 64 << 10,
		QueueSize: 1 << 16, WriteTimeout: time.Hour, Overflow: bridge.OverflowDrop})
	_, bigFD := th.dialWith(t, stalledDialer, "big")
	_, smallFD := th.dialWith(t, stalledDialer, "small")
	msg := make([]byte, 16<<10)
	refused := false
	for i := 0; !refused; i++ {
		if i == 10000 {
			t.Fatal("the big queue was never refused")
		}
		err := th.Push(bigFD, msg, bridge.OpBinary, true)
		switch {
		case errors.Is(err, bridge.ErrQueueFull):
			refused = true
		case err != nil:
			t.Fatal(err)
		}
		if q := th.Stats().QueuedBytes; q > budget {
			t.Fatalf("queued bytes %d, over the budget %d", q, budget)
		}
	}
	st := th.Stats()
	if st.QueuedBytes < budget*3/4 {
		t.Fatalf("the big queue was refused at %d queued bytes, under three quarters of the budget", st.QueuedBytes)
	}
	if err := th.Push(smallFD, msg, bridge.OpBinary, true); err != nil {
		t.Fatalf("a push to the small queue: %v", err)
	}
	// Fill up to the budget: the total stays within it.
	for i := 0; i < 1000; i++ {
		if err := th.Push(smallFD, msg, bridge.OpBinary, true); err != nil && !errors.Is(err, bridge.ErrQueueFull) {
			t.Fatal(err)
		}
		if q := th.Stats().QueuedBytes; q > budget {
			t.Fatalf("queued bytes %d, over the budget %d", q, budget)
		}
	}
	if !th.Check(bigFD) || !th.Check(smallFD) {
		t.Fatal("drop policy: a connection was closed")
	}
	if st := th.Stats(); st.BudgetRefused == 0 || st.BudgetCloses != 0 {
		t.Fatalf("budget refusals %d (want some), closes %d (want 0)", st.BudgetRefused, st.BudgetCloses)
	}
}

// The global budget with many clients that do not read: ten stalled
// clients hold backlogs of 64 KiB × 1..10, then every round pushes 16 KiB to
// each of them until the budget bites. The total never passes the budget,
// and the policy always takes the largest queues first: under close, the
// closed clients are always the ones with the largest backlogs (1008,
// counted); under drop, the refused pushes of a round are always those to
// the largest backlogs (counted) and nobody is closed.
func TestQueuedBytesBudgetTakesLargestQueuesFirst(t *testing.T) {
	const budget, clients, unit = 4 << 20, 10, 16 << 10
	for _, policy := range []bridge.OverflowPolicy{bridge.OverflowClose, bridge.OverflowDrop} {
		t.Run(string(policy), func(t *testing.T) {
			th := startStalledHub(t, bridge.Config{MaxQueuedBytes: budget, QueueBytes: budget, MaxPushSize: unit,
				QueueSize: 1 << 16, WriteTimeout: time.Hour, Overflow: policy})
			conns := make([]*websocket.Conn, clients)
			fds := make([]int64, clients)
			for i := range clients {
				conns[i], fds[i] = th.dialWith(t, stalledDialer, fmt.Sprint(i))
			}
			msg := make([]byte, unit)
			within := func() {
				t.Helper()
				if q := th.Stats().QueuedBytes; q > budget {
					t.Fatalf("queued bytes %d, over the budget %d", q, budget)
				}
			}
			for i, fd := range fds {
				for range 4 * (i + 1) {
					if err := th.Push(fd, msg, bridge.OpBinary, true); err != nil {
						t.Fatalf("filling client %d: %v", i, err)
					}
					within()
				}
			}
			// closedSuffix fails unless the closed clients are the k largest.
			closedSuffix := func() int {
				t.Helper()
				k := 0
				for i := clients - 1; i >= 0 && !th.Check(fds[i]); i-- {
					k++
				}
				for i := range clients - k {
					if !th.Check(fds[i]) {
						t.Fatalf("client %d closed while a larger backlog (client %d) is open", i, clients-k-1)
					}
				}
				return k
			}
			refusedRounds := 0
			for round := 0; ; round++ {
				if round == 100 {
					t.Fatal("the budget never applied")
				}
				firstRefused := -1
				var refusedAt int64 // the total queued when firstRefused was refused
				for i, fd := range fds {
					before := th.Stats().QueuedBytes
					err := th.Push(fd, msg, bridge.OpBinary, true)
					within()
					switch {
					case err == nil:
						// A writer that finished a write meanwhile gives
						// back room to every queue: only at the same total
						// or more must a larger backlog be refused too.
						drained := min(before, th.Stats().QueuedBytes-unit) < refusedAt
						if firstRefused >= 0 && !drained {
							t.Fatalf("round %d: client %d accepted after client %d (a smaller backlog) was refused", round, i, firstRefused)
						}
					case errors.Is(err, bridge.ErrQueueFull) || errors.Is(err, bridge.ErrUnknownFD):
						if policy == bridge.OverflowDrop && firstRefused < 0 {
							firstRefused, refusedAt = i, before
						}
					default:
						t.Fatal(err)
					}
					if policy == bridge.OverflowClose {
						closedSuffix()
					}
				}
				if firstRefused >= 0 {
					refusedRounds++
				}
				if policy == bridge.OverflowClose && closedSuffix() >= 3 || refusedRounds == 3 {
					break
				}
			}
			st := th.Stats()
			switch policy {
			case bridge.OverflowClose:
				k := closedSuffix()
				if st.BudgetCloses != uint64(k) {
					t.Fatalf("budget closes counted: %d, want %d", st.BudgetCloses, k)
				}
				for i := clients - k; i < clients; i++ {
					conns[i].Close()
					if ev := th.rec.closeOf(t, fds[i]); ev.Code != bridge.CloseSlowConsumer || !ev.ByServer {
						t.Fatalf("client %d: close event %+v, want 1008 by the server", i, ev)
					}
				}
			case bridge.OverflowDrop:
				if st.BudgetRefused == 0 || st.BudgetCloses != 0 {
					t.Fatalf("budget refusals %d (want some), closes %d (want 0)", st.BudgetRefused, st.BudgetCloses)
				}
				if closedSuffix() != 0 {
					t.Fatal("drop policy: a client was closed")
				}
			}
		})
	}
}

// FuzzQueues drives a sequence of pushes, fragments, broadcasts, group
// pushes and disconnects at two live connections, one that reads and one
// that does not, under both overflow policies and tight bounds (queue,
// held list, message, budget). Every call returns nil or a documented
// error; once both connections have ended, the Hub's queued bytes are back
// to 0 (nothing charged is lost or given back twice).
//
// Each op is two bytes: the first picks the action (low 3 bits) and the
// connection (bit 3); the second is the payload size.
func FuzzQueues(f *testing.F) {
	f.Add(false, []byte{1, 10, 3, 20, 3, 20, 2, 5})                             // fragment, broadcasts held, finish
	f.Add(true, []byte{1, 200, 1, 200, 2, 1})                                   // a message past MaxPushSize
	f.Add(false, []byte{9, 200, 9, 200, 9, 200, 9, 200, 3, 100, 3, 100, 10, 1}) // the stalled one's message over the queue
	f.Add(true, []byte{8, 250, 8, 250, 8, 250, 8, 250, 8, 250, 0, 250, 0, 250}) // budget reached, close
	f.Add(false, []byte{8, 250, 8, 250, 8, 250, 8, 250, 8, 250, 0, 250, 0, 250})
	f.Add(true, []byte{1, 5, 4, 0, 7, 9, 5, 0, 2, 5})        // ping and group push mid-message, then a disconnect
	f.Add(false, []byte{1, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1}) // held list full
	hubs := map[bool]*testHub{}
	for _, drop := range []bool{false, true} {
		policy := bridge.OverflowClose
		if drop {
			policy = bridge.OverflowDrop
		}
		hubs[drop] = startStalledHub(f, bridge.Config{MaxPushSize: 256, QueueBytes: 1024, QueueSize: 4,
			MaxQueuedBytes: 2048, Overflow: policy, Workers: 2})
	}
	known := []error{bridge.ErrUnknownFD, bridge.ErrTooLarge, bridge.ErrInvalidOpcode, bridge.ErrQueueFull,
		bridge.ErrInvalidUTF8, bridge.ErrInvalidCloseCode}
	n := 0
	f.Fuzz(func(t *testing.T, drop bool, ops []byte) {
		th := hubs[drop]
		n++
		reader, readerFD := th.dial(t, fmt.Sprint("r", n))
		stalled, stalledFD := th.dialWith(t, stalledDialer, fmt.Sprint("s", n))
		done := make(chan struct{})
		go func() { // reads until the connection ends
			defer close(done)
			for {
				if _, _, err := reader.ReadMessage(); err != nil {
					return
				}
			}
		}()
		group := fmt.Sprint("g", n)
		for _, fd := range []int64{readerFD, stalledFD} {
			if err := th.Join(fd, group); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string, err error) {
			if err == nil {
				return
			}
			for _, k := range known {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("%s: undocumented error %v", what, err)
		}
		for i := 0; i+1 < len(ops) && i < 200; i += 2 {
			fd := readerFD
			if ops[i]&8 != 0 {
				fd = stalledFD
			}
			data := make([]byte, ops[i+1])
			switch ops[i] & 7 {
			case 0:
				check("push", th.Push(fd, data, bridge.OpBinary, true))
			case 1:
				check("fragment", th.Push(fd, data, bridge.OpBinary, false))
			case 2:
				check("finish", th.Push(fd, data, bridge.OpContinuation, true))
			case 3:
				_, err := th.Broadcast(data, bridge.OpBinary, nil)
				check("broadcast", err)
			case 4:
				check("ping", th.Push(fd, data[:min(len(data), 125)], bridge.OpPing, true))
			case 5:
				check("disconnect", th.Disconnect(fd, 4000, ""))
			case 6:
				check("many", func() error { _, err := th.PushMany([]int64{readerFD, stalledFD}, data, bridge.OpBinary); return err }())
			case 7:
				_, err := th.PushGroup(group, data, bridge.OpBinary, nil)
				check("group", err)
			}
			if q := th.Stats().QueuedBytes; q < 0 || q > 2048 {
				t.Fatalf("queued bytes %d, outside 0..2048", q)
			}
		}
		reader.Close()
		stalled.Close()
		<-done
		th.rec.closeOf(t, readerFD)
		th.rec.closeOf(t, stalledFD)
		waitStats(t, th.Hub, "queued bytes back to 0", func(s bridge.Stats) bool { return s.QueuedBytes == 0 })
	})
}

// The budget's sweep closes first the connections whose bytes are theirs
// alone: closing a holder of a broadcast that other queues hold too gives
// nothing back. Ten stalled clients hold the same broadcasts (most of the
// budget); one holds a directed push, less than any of theirs in total;
// a push that needs room closes that one, not the ten (found by a review:
// all ten were closed and nothing came back until the last).
func TestSweepClosesOwnBytesFirst(t *testing.T) {
	const budget = 2 << 20
	th := startStalledHub(t, bridge.Config{MaxQueuedBytes: budget, QueueBytes: budget, MaxPushSize: 256 << 10,
		QueueSize: 1 << 16, WriteTimeout: time.Hour})
	fds := make([]int64, 10)
	for i := range fds {
		_, fds[i] = th.dialWith(t, stalledDialer, fmt.Sprint("holder", i))
	}
	msg := make([]byte, 64<<10)
	for th.Stats().QueuedBytes+(64<<10) <= budget-(600<<10) {
		if n, err := th.PushMany(fds, msg, bridge.OpBinary); err != nil || n != len(fds) {
			t.Fatalf("PushMany: %d, %v", n, err)
		}
	}
	// Seven directed pushes: the writer is stuck in the first, the others
	// wait in the queue, which closing the connection gives back.
	_, own := th.dialWith(t, stalledDialer, "own")
	for range 7 {
		if err := th.Push(own, msg, bridge.OpBinary, true); err != nil {
			t.Fatal(err)
		}
	}
	_, late := th.dialWith(t, stalledDialer, "late")
	if err := th.Push(late, make([]byte, 256<<10), bridge.OpBinary, true); err != nil {
		t.Fatalf("the push that needs room (%d bytes queued): %v", th.Stats().QueuedBytes, err)
	}
	if th.Check(own) {
		t.Fatal("the connection whose bytes were its own is still open")
	}
	for _, fd := range fds {
		if !th.Check(fd) {
			t.Fatalf("a holder of the shared broadcasts (fd %d) was closed", fd)
		}
	}
	if st := th.Stats(); st.BudgetCloses != 1 {
		t.Fatalf("%d connections closed by the budget, want 1", st.BudgetCloses)
	}
}

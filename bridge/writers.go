package bridge

import (
	"sync/atomic"
	"time"
)

// maxIdleWriters bounds the writer goroutines that wait for work.
const maxIdleWriters = 64

// writers reuses writer goroutines. One that has emptied its connection's
// queue does not exit: it waits for another connection that needs a
// writer, unless maxIdleWriters wait already. So a stream of pushes to many
// connections (a batch, pushes round-robin over clients) does not start a
// goroutine per message, grow its new stack in gorilla's write path and
// end it again. A waiting writer is one goroutine blocked on one channel;
// a push checks a counter before it tries the channel, so when no writer
// waits (a broadcast that has taken them all) it costs an atomic load. An
// idle connection still holds no goroutine but its reader; after a burst
// at most maxIdleWriters goroutines stay, until the Hub shuts down.
type writers struct {
	handoff chan *conn   // unbuffered; nil tells a waiting writer to exit
	idle    atomic.Int32 // writers waiting, or about to
	max     int32
	closed  atomic.Bool   // the Hub is shutting down: no writer waits
	started atomic.Uint64 // writer goroutines started
}

func newWriters() writers {
	return writers{handoff: make(chan *conn), max: maxIdleWriters}
}

// startWriter runs c's writer: a waiting writer takes it, or a new one. It
// never blocks; it runs under c's lock.
func (h *Hub) startWriter(c *conn) {
	if h.writers.idle.Load() > 0 {
		select {
		case h.writers.handoff <- c:
			return
		default: // the waiting writers are not at the channel yet
		}
	}
	h.writers.started.Add(1)
	go h.runWriter(c)
}

// runWriter writes c's queue out, then that of each connection handed to
// it, until it may not wait or is told to exit.
func (h *Hub) runWriter(c *conn) {
	for c != nil {
		c.writeLoop()
		if !h.mayWait() {
			return
		}
		c = <-h.writers.handoff
		h.writers.idle.Add(-1)
	}
}

// mayWait counts a writer as waiting, unless enough wait already or the
// Hub is shutting down. The count never passes the bound. closed is read
// after the count is taken and stopWriters sets it before it reads the
// count, so a writer either sees closed or is seen waiting and told to exit.
func (h *Hub) mayWait() bool {
	for {
		n := h.writers.idle.Load()
		if n >= h.writers.max {
			return false
		}
		if h.writers.idle.CompareAndSwap(n, n+1) {
			break
		}
	}
	if h.writers.closed.Load() {
		h.writers.idle.Add(-1)
		return false
	}
	return true
}

// stopWriters ends the waiting writers, and makes the later ones end with
// their connection's queue. A writer counted as waiting may not be at the
// channel yet, and a late push may take one instead: so it offers the exit
// until none waits.
func (h *Hub) stopWriters() {
	h.writers.closed.Store(true)
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for h.writers.idle.Load() > 0 {
		t.Reset(time.Millisecond)
		select {
		case h.writers.handoff <- nil:
		case <-t.C:
		}
	}
}

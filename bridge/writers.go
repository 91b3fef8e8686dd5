package bridge

import (
	"sync"
	"sync/atomic"
	"time"
)

// A writer goroutine that has emptied its connection's queue does not exit
// at once: it waits up to writerLinger for another connection that needs a
// writer, so that a stream of pushes to many connections (a batch, pushes
// round-robin over clients) does not start a goroutine per message, grow its
// new stack and end it again. At most maxIdleWriters wait at a time; an idle
// connection still holds no goroutine but its reader.
const (
	writerLinger   = 100 * time.Millisecond
	maxIdleWriters = 64
)

// writers hands connections to idle writer goroutines.
type writers struct {
	handoff chan *conn // unbuffered: a send succeeds only when a writer waits
	linger  time.Duration
	maxIdle int32

	idle    atomic.Int32  // writers waiting or about to
	started atomic.Uint64 // writer goroutines started
	waiting sync.WaitGroup
}

func newWriters() writers {
	return writers{handoff: make(chan *conn), linger: writerLinger, maxIdle: maxIdleWriters}
}

// startWriter runs c's writer: an idle writer takes it, or a new one.
func (h *Hub) startWriter(c *conn) {
	select {
	case h.writers.handoff <- c:
	default:
		h.writers.started.Add(1)
		go h.runWriter(c)
	}
}

// runWriter writes c's queue out, then waits for other connections to
// write for, until it has waited writerLinger for nothing, enough others
// wait already, or the hub shuts down.
func (h *Hub) runWriter(c *conn) {
	c.writeLoop()
	if !h.becomeIdle() {
		return
	}
	defer h.writers.waiting.Done()
	t := time.NewTimer(h.writers.linger)
	defer t.Stop()
	for {
		select {
		case c = <-h.writers.handoff:
			h.writers.idle.Add(-1)
			c.writeLoop()
			if h.writers.idle.Add(1) > h.writers.maxIdle {
				h.writers.idle.Add(-1)
				return
			}
			t.Reset(h.writers.linger)
		case <-t.C:
			h.writers.idle.Add(-1)
			return
		case <-h.stop:
			h.writers.idle.Add(-1)
			return
		}
	}
}

// becomeIdle reports whether a writer may wait for more work, and counts
// it for Shutdown, which waits for the waiting writers.
func (h *Hub) becomeIdle() bool {
	if h.writers.idle.Add(1) > h.writers.maxIdle {
		h.writers.idle.Add(-1)
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.writers.idle.Add(-1)
		return false
	}
	h.writers.waiting.Add(1) // never after Shutdown has set closed and waits
	return true
}

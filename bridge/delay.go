package bridge

import (
	"sync"
	"time"
)

// The write delay (Config.WriteDelay, off by default) trades latency for
// system calls: a message to a connection that was written to less than
// WriteDelay ago is not written at once but queued, and the connection's
// writer starts only when the delay has passed since the message was
// queued, writing everything queued meanwhile with one system call (the
// worker's flusher, direct.go, or a writer goroutine whose frames are
// gathered, bufConn). A connection that was quiet for the delay
// gets its next message at once, directly: the delay applies only to
// connections that receive messages faster than one a delay ("adaptive"),
// which is where gathering saves system calls. Centrifugo's
// client.write_delay is the same trade, applied to every message.
//
// No timer per connection: each worker keeps the list of its connections
// waiting for their delay and one timer for the list (time.AfterFunc,
// armed when the list becomes non-empty), so a burst costs one timer per
// worker and delay. A delayed connection counts as having a writer
// (writing is set), so nothing else starts one or writes to it directly,
// and anything queued for it (a push, a ping, a close) waits for the same
// writer, at most the delay.

// delayed is a worker's list of connections waiting for the write delay.
type delayed struct {
	mu    sync.Mutex
	conns []*conn
	count uint64 // connections delayed, for Stats
}

// recentlyWrittenLocked reports whether the write delay applies to c now:
// it is on and c was last written to less than a delay ago (under c.mu).
func (c *conn) recentlyWrittenLocked() bool {
	d := c.hub.cfg.WriteDelay
	return d > 0 && time.Now().UnixNano()-c.lastWrite < int64(d)
}

// noteWriteLocked records when c was last written to, for the write delay
// (under c.mu).
func (c *conn) noteWriteLocked() {
	if c.hub.cfg.WriteDelay > 0 {
		c.lastWrite = time.Now().UnixNano()
	}
}

// delayLocked puts c, whose writing was just set, on its worker's list
// when the write delay applies to what is queued (a message, not a control
// or close frame); false when its writer must start now.
func (c *conn) delayLocked() bool {
	if !c.recentlyWrittenLocked() {
		return false
	}
	if k := c.q[len(c.q)-1].kind; k != itemData && k != itemPrepared {
		return false
	}
	w := c.worker
	w.delayed.mu.Lock()
	w.delayed.conns = append(w.delayed.conns, c)
	w.delayed.count++
	first := len(w.delayed.conns) == 1
	w.delayed.mu.Unlock()
	if first {
		time.AfterFunc(c.hub.cfg.WriteDelay, w.startDelayed)
	}
	return true
}

// startDelayed starts the writers of the connections whose delay is over.
func (w *worker) startDelayed() {
	w.delayed.mu.Lock()
	conns := w.delayed.conns
	w.delayed.conns = nil
	w.delayed.mu.Unlock()
	for i, c := range conns {
		c.mu.Lock()
		if c.head < len(c.q) && c.flushableLocked() {
			w.scheduleFlush(c) // the flusher writes the gathered frames (direct.go)
		} else {
			c.hub.startWriter(c)
		}
		c.mu.Unlock()
		conns[i] = nil
	}
}

func (w *worker) delayedCount() uint64 {
	w.delayed.mu.Lock()
	defer w.delayed.mu.Unlock()
	return w.delayed.count
}

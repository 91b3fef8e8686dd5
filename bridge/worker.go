package bridge

import (
	"sync"
	"sync/atomic"
	"time"
)

// worker owns one partition of the connections: the map from fd to conn,
// the keepalive pings of those connections, and their counters. A push
// touches only the worker its fd maps to.
type worker struct {
	id    int
	mu    sync.RWMutex
	conns map[int64]*conn

	opened     atomic.Uint64
	closed     atomic.Uint64
	pushed     atomic.Uint64 // messages accepted into a send queue
	overflows  atomic.Uint64 // pushes refused by a full queue
	messagesIn atomic.Uint64 // messages received from clients and given to the Listener
	bytesIn    atomic.Uint64 // payload bytes of the messages received
	bytesOut   atomic.Uint64 // payload bytes of the messages written to clients

	refused       [numMsgRefusals]atomic.Uint64 // client messages not given to the Listener, by reason
	heldOverflows atomic.Uint64                 // broadcasts refused by a full held queue (also in overflows)
	fragTimeouts  atomic.Uint64                 // fragmented messages aborted: idle past FragmentTimeout
	fragTooLarge  atomic.Uint64                 // fragmented messages aborted: past MaxPushSize
	direct        atomic.Uint64                 // messages written by the flusher (direct.go)
	pingsDirect   atomic.Uint64                 // keepalive pings written at once by the keepalive goroutine (ping.go)
	pingsQueued   atomic.Uint64                 // keepalive pings queued: something was queued or being written
	pingsSkipped  atomic.Uint64                 // keepalive pings skipped: the queue was full
	directPartial atomic.Uint64                 // of which only in part: the rest went to a writer
	delayed       delayed                       // connections waiting for the write delay (delay.go)
	flush         *flushList                    // its flusher's list, shared with other workers (direct.go)

	// closes counts ended connections by who closed first (0 the client,
	// 1 the bridge) and close code slot (closeSlot).
	closes [2][numCloseSlots]atomic.Uint64
}

func newWorker(id int) *worker {
	return &worker{id: id, conns: make(map[int64]*conn)}
}

func (w *worker) get(fd int64) *conn {
	w.mu.RLock()
	c := w.conns[fd]
	w.mu.RUnlock()
	return c
}

func (w *worker) add(c *conn) {
	w.mu.Lock()
	w.conns[c.fd] = c
	w.mu.Unlock()
	w.opened.Add(1)
}

func (w *worker) remove(c *conn) {
	w.mu.Lock()
	delete(w.conns, c.fd)
	w.mu.Unlock()
	w.closed.Add(1)
}

func (w *worker) len() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.conns)
}

// snapshot appends the worker's connections to dst. Callers act on the copy
// after the lock is released, so a slow enqueue never holds up the map.
func (w *worker) snapshot(dst []*conn) []*conn {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, c := range w.conns {
		dst = append(dst, c)
	}
	return dst
}

// keepalive pings every connection of the worker once per interval until
// stop is closed. One ticker per worker instead of one per connection keeps
// idle connections cheap; a connection is pinged on the first tick at least
// interval after its previous ping, so pings spread over time. A ping to a
// connection with nothing queued is written here, at once (ping.go). The
// same tick aborts fragmented messages idle for fragTimeout (one atomic
// load per connection), so an open fragment needs no timer of its own. In
// poll mode it also ends the connections that showed no sign of life for
// interval+pongTimeout (no goroutine waits for them with a read deadline):
// they are found up to one tick late.
func (w *worker) keepalive(interval, pongTimeout, fragTimeout time.Duration, stop <-chan struct{}) {
	tick := max(min(interval, fragTimeout)/4, 10*time.Millisecond)
	idle := int64(interval + pongTimeout)
	t := time.NewTicker(tick)
	defer t.Stop()
	var buf []*conn
	pw := newRawWriter()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			buf = w.snapshot(buf[:0])
			for i, c := range buf {
				if at := c.fragAt.Load(); at != 0 && now.UnixNano()-at >= int64(fragTimeout) {
					c.abortIdleFragment(at)
				}
				if c.polled && now.UnixNano()-c.seen.Load() >= idle {
					c.expire()
				}
				if now.UnixNano()-c.pingedAt >= int64(interval) {
					c.pingedAt = now.UnixNano()
					c.ping(pw)
				}
				buf[i] = nil
			}
		}
	}
}

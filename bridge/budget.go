package bridge

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// sweepPause: after a sweep that could not make room (what is left is
// being written by the writers of closed connections, or belongs to
// connections already closing), pushes are refused without another sweep
// for this long, so a Hub stuck at its budget does not scan and sort every
// connection on every push.
const sweepPause = 10 * time.Millisecond

// errOverBudget: a push does not fit in the Hub's budget of queued bytes.
// enqueue turns it into ErrQueueFull after the overflow policy applied.
var errOverBudget = errors.New("bridge: queued bytes budget reached")

// budget bounds the bytes queued for all connections together
// (Config.MaxQueuedBytes). A push reserves its bytes with one
// compare-and-swap on the total; only a push that finds the total at the
// bound does more (a sweep, under OverflowClose).
type budget struct {
	max        int64 // Config.MaxQueuedBytes
	soft       int64 // three quarters of max: OverflowDrop starts refusing the largest queues
	queueBytes int64 // Config.QueueBytes: the room of a queue below soft
	shrink     bool  // OverflowDrop: past soft, a queue's room shrinks to nothing at max

	queued  atomic.Int64  // bytes queued, held or being written, for all connections
	refused atomic.Uint64 // pushes refused by the budget
	closed  atomic.Uint64 // connections closed by a sweep

	sweepMu  sync.Mutex   // one sweep at a time
	noRoomAt atomic.Int64 // unix nanoseconds: the last sweep ended without room; 0 otherwise
}

func newBudget(cfg *Config) budget {
	return budget{
		max:        cfg.MaxQueuedBytes,
		soft:       cfg.MaxQueuedBytes - cfg.MaxQueuedBytes/4,
		queueBytes: int64(cfg.QueueBytes),
		shrink:     cfg.Overflow == OverflowDrop,
	}
}

// sharedPayload is the payload of a broadcast (a PreparedMessage), held by
// many queues at once: the budget counts it once, from the first queue that
// takes it until the last writer has written it.
type sharedPayload struct {
	refs  atomic.Int64
	frame []byte // the uncompressed frame, for direct writes; nil when too large (direct.go)
}

// reserve adds n to the total unless that passes the bound. With shrink,
// past the soft mark a queue that already holds connBytes may only grow to
// a room that shrinks linearly from queueBytes at the soft mark to nothing
// at the bound, so the largest queues are refused first and the small ones
// keep the rest of the budget.
func (b *budget) reserve(n, connBytes int64, shrink bool) bool {
	for {
		cur := b.queued.Load()
		if cur+n > b.max {
			return false
		}
		if shrink && cur+n > b.soft {
			room := float64(b.queueBytes) * float64(b.max-cur-n) / float64(b.max-b.soft)
			if float64(connBytes+n) > room {
				return false
			}
		}
		if b.queued.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// charge counts it against the budget before it is queued on a connection
// that holds connBytes; false when it does not fit. soft is false for a
// continuation of an open fragmented message, which only the hard bound
// refuses. The payload of a broadcast is charged by the first queue that
// takes it only.
func (h *Hub) charge(it *item, connBytes int64, soft bool) bool {
	n := int64(it.size)
	shrink := soft && h.budget.shrink
	if it.ref != nil {
		if it.ref.refs.Add(1) > 1 {
			return true
		}
		if h.budget.reserve(n, connBytes, shrink) {
			return true
		}
		it.ref.refs.Add(-1)
		return false
	}
	return n == 0 || h.budget.reserve(n, connBytes, shrink)
}

// uncharge gives back what charge took, once it is written or dropped.
func (h *Hub) uncharge(it *item) {
	if it.ref != nil && it.ref.refs.Add(-1) > 0 {
		return
	}
	if it.size != 0 {
		h.budget.queued.Add(-int64(it.size))
	}
}

// sweep brings the total back to where need more bytes fit, closing the
// connections with the largest queues first (OverflowClose): first by what
// is theirs alone (closing one gives that back at once), then, if that was
// not enough, by all they hold (a broadcast's payload comes back only once
// every queue that holds it is gone). It reads each
// connection's size without its lock, one worker's snapshot at a time, and
// takes the lock only of the connections it closes. A closed connection's
// queue is dropped at once; the message its writer is writing is given back
// when that write ends.
func (h *Hub) sweep(need int64) {
	b := &h.budget
	if t := b.noRoomAt.Load(); t != 0 && time.Now().UnixNano()-t < int64(sweepPause) {
		return
	}
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	if b.queued.Load()+need <= b.max {
		return // another sweep made room
	}
	type queue struct {
		c         *conn
		own, size int64
	}
	var queues []queue
	var buf []*conn
	for _, w := range h.workers {
		buf = w.snapshot(buf[:0])
		for i, c := range buf {
			if n := c.size.Load(); n > 0 {
				queues = append(queues, queue{c, c.own.Load(), n})
			}
			buf[i] = nil
		}
	}
	for _, by := range []func(queue) int64{
		func(q queue) int64 { return q.own },
		func(q queue) int64 { return q.size },
	} {
		slices.SortFunc(queues, func(a, b queue) int { return cmp.Compare(by(b), by(a)) })
		for _, q := range queues {
			if b.queued.Load()+need <= b.max {
				b.noRoomAt.Store(0)
				return
			}
			if by(q) > 0 && q.c.closeOverBudget(q.size) {
				b.closed.Add(1)
			}
		}
	}
	if b.queued.Load()+need <= b.max {
		b.noRoomAt.Store(0)
	} else {
		b.noRoomAt.Store(time.Now().UnixNano())
	}
}

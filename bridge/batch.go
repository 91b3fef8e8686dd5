package bridge

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
)

// A batch of pushes (PushBatch) shares two costs out per worker and per
// flusher instead of paying them per message:
//
//   - the fds are looked up one worker at a time (lookupAll): each
//     worker's read lock is taken once per lookupRun (256) of its fds,
//     not once per fd;
//   - a connection that needs its flusher (direct.go) is collected in a
//     flushBatch and handed to its flush list with the others of the same
//     chunk (flushChunk connections): one lock of the list and one wake-up
//     of its flusher per chunk instead of per connection, and the flusher
//     takes a chunk at a time instead of competing for the list with the
//     pusher on every message.
//
// Everything else is as for one push at a time: each message is queued in
// the batch's order under its connection's lock, with the same bounds and
// answers, so order per connection holds and a batch stops at the same
// message with the same error. A connection on a flushBatch counts as
// having a writer (writing is set), so nothing else writes to it or starts
// one; the batch hands its chunk over when it is full, when its oldest
// connection has waited flushChunk messages, and before it returns (a
// deferred flush, panics included), so a collected connection waits at
// most for flushChunk messages of the batch.

// flushChunk bounds the connections a flushBatch holds before it hands
// them to their flushers, and the messages the oldest of them waits for:
// large enough that the list's lock and the wake-up are a small share of a
// push, small enough that the first connection of a chunk waits only for a
// few microseconds of enqueues and the flusher writes on the other cores
// while the batch goes on.
const flushChunk = 128

// flushBatch collects the connections a batch puts on their flushers.
type flushBatch struct {
	conns []*conn
}

// add collects c (under c.mu, c.writing just set, c flushable).
func (fb *flushBatch) add(c *conn) { fb.conns = append(fb.conns, c) }

// full reports whether a chunk is collected.
func (fb *flushBatch) full() bool { return len(fb.conns) >= flushChunk }

// flush hands the collected connections to their flush lists: one lock and
// one wake-up per list.
func (fb *flushBatch) flush() {
	for len(fb.conns) > 0 {
		f := fb.conns[0].worker.flush
		rest := fb.conns[:0]
		f.mu.Lock()
		for _, c := range fb.conns {
			if c.worker.flush == f {
				f.conns = append(f.conns, c)
			} else {
				rest = append(rest, c)
			}
		}
		f.mu.Unlock()
		select {
		case f.wake <- struct{}{}:
		default:
		}
		clear(fb.conns[len(rest):])
		fb.conns = rest
	}
}

// batchScratch is the memory of one batch's lookups and flushBatch, reused.
type batchScratch struct {
	fds   []int64 // PushBatch's fds
	conns []*conn
	order []int32 // indexes of the fds, grouped by worker
	start []int32 // start[w]: where worker w's indexes begin in order
	fb    flushBatch
}

var batchPool = sync.Pool{New: func() any { return new(batchScratch) }}

func getScratch() *batchScratch { return batchPool.Get().(*batchScratch) }

// put clears what refers to connections and keeps the memory, unless a
// very large batch made it large.
func (s *batchScratch) put() {
	clear(s.conns)
	clear(s.fb.conns)
	if cap(s.conns) > keepScratch {
		return
	}
	s.conns, s.order, s.fb.conns = s.conns[:0], s.order[:0], s.fb.conns[:0]
	batchPool.Put(s)
}

// keepScratch bounds the batches whose scratch memory is pooled for the
// next one: the RPC's largest (sender.MaxBatch) and more.
const keepScratch = 4 * 10000

// lookupRun bounds the fds lookupAll looks up under one hold of a worker's
// read lock: a writer waiting for the lock (a connection opening or
// closing) holds up every new reader of that worker, every push to it
// included, so a batch of 10,000 fds on one worker must not keep it for
// all of them.
const lookupRun = 256

// lookupAll sets s.conns[i] to the open connection of fds[i] on this node
// (nil for none, or an invalid fd), taking each worker's read lock once per
// lookupRun of its fds: a counting sort of the indexes by worker, then one
// pass per worker.
func (h *Hub) lookupAll(s *batchScratch, fds []int64) []*conn {
	n, nw := len(fds), len(h.workers)
	s.conns = grow(s.conns, n)
	s.order = grow(s.order, n)
	s.start = grow(s.start, nw+1)
	clear(s.start)
	node := h.cfg.NodeID
	for _, fd := range fds {
		if ValidFD(fd) && NodeOf(fd) == node {
			s.start[h.workerIndex(fd)+1]++
		}
	}
	for w := range nw {
		s.start[w+1] += s.start[w]
	}
	next := s.start[:nw] // next[w]: the next free place of worker w; ends at start[w+1]
	for i, fd := range fds {
		s.conns[i] = nil
		if ValidFD(fd) && NodeOf(fd) == node {
			w := h.workerIndex(fd)
			s.order[next[w]] = int32(i)
			next[w]++
		}
	}
	// next[w] now holds where worker w+1 begins: worker w's indexes are
	// order[begin:next[w]], begin being where worker w-1's end.
	begin := int32(0)
	for w, wk := range h.workers {
		end := next[w]
		if end > begin {
			wk.mu.RLock()
			for k, i := range s.order[begin:end] {
				if k > 0 && k%lookupRun == 0 {
					wk.mu.RUnlock() // let a waiting writer (an open, a close) in
					wk.mu.RLock()
				}
				s.conns[i] = wk.conns[fds[i]]
			}
			wk.mu.RUnlock()
		}
		begin = end
	}
	return s.conns[:n]
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

func (h *Hub) workerIndex(fd int64) int {
	return int(uint64(fd&seqMask) % uint64(len(h.workers)))
}

// BatchMessage is one message of a PushBatch: what Push takes.
type BatchMessage struct {
	FD     int64
	Data   []byte
	Op     Opcode
	Finish bool
}

// PushBatch pushes each message as Push would, in order, and sets ok[i]
// to whether message i was queued; false is what Push reports with an
// IsNotDelivered error (no open connection, a full queue). ok must hold at
// least len(msgs) results; a shorter one is an error (0, nothing sent). At
// the first other error it stops and returns that message's index with
// the error, every message before it pushed (and none after; their ok are
// false); otherwise it returns len(msgs), nil. The Hub keeps the data
// until it is written: the caller must not change it.
//
// Unlike Push one at a time, the fds are looked up one worker at a time and
// the connections are handed to their flushers a chunk at a time (see
// flushBatch): the same answers, fewer locks and wake-ups.
func (h *Hub) PushBatch(msgs []BatchMessage, ok []bool) (int, error) {
	if len(ok) < len(msgs) {
		clear(ok)
		return 0, fmt.Errorf("push batch: %d results for %d messages", len(ok), len(msgs))
	}
	s := getScratch()
	defer s.put()
	s.fds = grow(s.fds, len(msgs))
	for i := range msgs {
		s.fds[i] = msgs[i].FD
	}
	conns := h.lookupAll(s, s.fds)
	fb := &s.fb
	defer fb.flush()
	var notOpen uint64
	defer func() { h.notOpen.Add(notOpen) }()
	// stop ends the batch at message i: it and those after are not sent.
	stop := func(i int, err error) (int, error) {
		clear(ok[i:len(msgs)])
		return i, fmt.Errorf("push to fd %d: %w", msgs[i].FD, err)
	}
	since := 0 // messages since fb's oldest connection was collected
	for i := range msgs {
		// Hand the collected connections over when a chunk is full, and
		// also when the oldest has waited flushChunk messages: a batch
		// that names few connections (or many fds that collect none)
		// does not hold its first connection until its end.
		if len(fb.conns) > 0 {
			if since++; since >= flushChunk || fb.full() {
				fb.flush()
				since = 0
			}
		}
		m := &msgs[i]
		ok[i] = false
		kind, err := h.checkPush(m.FD, m.Data, m.Op, m.Finish)
		if err != nil {
			return stop(i, err)
		}
		validText := m.Op != OpText || !m.Finish || utf8.Valid(m.Data)
		c := conns[i]
		if c == nil {
			if !validText {
				return stop(i, ErrInvalidUTF8)
			}
			notOpen++
			h.tracePushNotOpen(m.FD, m.Op, m.Data, m.Finish)
			continue
		}
		err = c.enqueueVia(item{kind: kind, op: m.Op, finish: m.Finish, validText: validText, data: m.Data, size: len(m.Data)}, true, fb)
		switch {
		case err == nil:
			ok[i] = true
			c.worker.pushed.Add(1)
		case errors.Is(err, ErrUnknownFD):
			notOpen++
		case errors.Is(err, ErrQueueFull):
		default:
			return stop(i, err)
		}
	}
	return len(msgs), nil
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Layout of an fd (see docs/PROTOCOL.md):
//
//	bit 63..53  always 0 (fds stay below 2^53, exact in PHP, JSON and JavaScript)
//	bit 52..43  node id (NodeBits bits)
//	bit 42..0   sequence number (SeqBits bits), from Config.Sequence
//
// The sequence only grows, also across restarts of a node (ClockSequence
// by default, a block sequence reserved in Redis in cluster mode), so an fd
// is never reused: a stale fd stored by PHP never reaches a newer client.
const (
	// NodeBits is the number of bits of an fd that carry the node id.
	NodeBits = 10
	// SeqBits is the number of bits of an fd that carry the sequence number.
	SeqBits = 43
	// MaxNodeID is the largest node id.
	MaxNodeID = 1<<NodeBits - 1
	// MaxFD is the largest fd any node can hand out: 2^53-1.
	MaxFD = 1<<(NodeBits+SeqBits) - 1
	// MaxSeq is the largest sequence number: 2^43-1.
	MaxSeq  = 1<<SeqBits - 1
	seqMask = MaxSeq
)

// NodeOf returns the node id encoded in fd.
func NodeOf(fd int64) int { return int(fd >> SeqBits) }

// ValidFD reports whether fd is in the range any node can hand out.
func ValidFD(fd int64) bool { return fd > 0 && fd <= MaxFD && fd&seqMask != 0 }

// Sequence hands out the sequence part of a node's fds (Config.Sequence).
//
// Next returns a number in 1..MaxSeq greater than every number it returned
// before: in this run and, for every Sequence but CounterSequence, in every
// earlier run of the same node id. It is called on every handshake, before
// the upgrade, and must be safe for concurrent use and fast (not wait on a
// network). An error refuses the handshake with HTTP 503, counted as
// RefusedFDUnavailable (ErrFDSpaceExhausted: past MaxSeq).
//
// A Sequence may also implement Settler.
type Sequence interface {
	Next() (int64, error)
}

// Settler is implemented by a Sequence that has something to do before
// the process may exit for its promise to hold across a restart.
// Hub.Shutdown calls Settle once every connection is closed; an error is
// logged.
type Settler interface {
	Settle(ctx context.Context) error
}

// ErrFDUnavailable: the Sequence cannot hand out a number now (cluster
// mode: its reserved block is used up and Redis is out of reach). The
// handshake is refused with 503; no number is ever reused instead.
var ErrFDUnavailable = errors.New("bridge: no fd available now")

// CounterSequence counts from 1 in each run, as Swoole's fds do: fds repeat
// across restarts of a node. For tests that want small predictable fds;
// never the default.
type CounterSequence struct{ n atomic.Int64 }

// Next returns 1, 2, 3, ...
func (c *CounterSequence) Next() (int64, error) {
	s := c.n.Add(1)
	if s > MaxSeq {
		c.n.Store(MaxSeq) // stay saturated instead of wrapping
		return 0, ErrFDSpaceExhausted
	}
	return s, nil
}

// The clock of ClockSequence: milliseconds since SeqEpochUnixMilli
// (2025-01-01T00:00:00Z). 2^43 ms is 278.7 years: the sequence reaches
// MaxSeq in the year 2303.
const (
	SeqEpochUnixMilli = 1735689600000
	SeqUnit           = time.Millisecond
)

// DefaultMaxSettle bounds ClockSequence.Settle.
const DefaultMaxSettle = 5 * time.Second

// ClockSequence is the standalone default: a hybrid clock. Each number is
// max(last+1, milliseconds since SeqEpochUnixMilli), so the sequence keeps growing
// across restarts without Redis and without a state file, as long as the
// wall clock does.
//
// It could repeat a number only when a node handed out numbers faster than
// one per millisecond (the sequence then runs ahead of the clock), and
// restarted before the clock caught up with its last number; or when the
// wall clock is set back between two runs by more than the time between
// them. Settle (called by Hub.Shutdown) closes the first window: it waits,
// at most MaxSettle, until the clock has passed the last number. A node
// killed without a graceful shutdown right after a burst of more than
// 1000 connections a second keeps the window open for the length of the
// lead (a burst of 10,000 connections: at most 10 s).
type ClockSequence struct {
	last atomic.Int64
	// MaxSettle bounds Settle. Zero: DefaultMaxSettle.
	MaxSettle time.Duration
	now       func() time.Time // time.Now; replaced in tests
}

// NewClockSequence returns a ClockSequence on the wall clock.
func NewClockSequence() *ClockSequence { return &ClockSequence{now: time.Now} }

// ClockUnits returns t in milliseconds since SeqEpochUnixMilli (0 before
// it).
func ClockUnits(t time.Time) int64 { return max(0, t.UnixMilli()-SeqEpochUnixMilli) }

func (c *ClockSequence) clock() int64 {
	if c.now == nil {
		return ClockUnits(time.Now())
	}
	return ClockUnits(c.now())
}

// Next returns max(last+1, the clock): lock-free.
func (c *ClockSequence) Next() (int64, error) {
	now := c.clock()
	for {
		last := c.last.Load()
		n := max(last+1, now)
		if n > MaxSeq {
			return 0, ErrFDSpaceExhausted
		}
		if c.last.CompareAndSwap(last, n) {
			return n, nil
		}
	}
}

// Last returns the last number handed out (0 before the first).
func (c *ClockSequence) Last() int64 { return c.last.Load() }

// Settle waits until the clock has passed the last number handed out, so
// that a restart cannot repeat it; it waits at most MaxSettle (and not past
// ctx) and says so when that was not enough.
func (c *ClockSequence) Settle(ctx context.Context) error {
	limit := c.MaxSettle
	if limit <= 0 {
		limit = DefaultMaxSettle
	}
	lead := time.Duration(c.last.Load()-c.clock()+1) * SeqUnit
	if lead <= 0 {
		return nil
	}
	if lead > limit {
		return fmt.Errorf("bridge: the fd sequence is %v ahead of the clock (more than %v): a restart within %v may repeat fds", lead, limit, lead)
	}
	t := time.NewTimer(lead)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bridge: the fd sequence is ahead of the clock, shutdown did not wait %v: %w", lead, ctx.Err())
	}
}

// fdAllocator hands out fds for one node: never the same one twice.
type fdAllocator struct {
	node int64
	seq  Sequence
}

func newFDAllocator(node int, seq Sequence) (*fdAllocator, error) {
	if node < 0 || node > MaxNodeID {
		return nil, fmt.Errorf("node id %d out of range 0..%d", node, MaxNodeID)
	}
	return &fdAllocator{node: int64(node) << SeqBits, seq: seq}, nil
}

func (a *fdAllocator) next() (int64, error) {
	s, err := a.seq.Next()
	if err != nil {
		return 0, err
	}
	if s < 1 || s > MaxSeq {
		return 0, fmt.Errorf("%w: the sequence gave %d", ErrFDSpaceExhausted, s)
	}
	return a.node | s, nil
}

package bridge

import (
	"fmt"
	"sync/atomic"
)

// Layout of an fd (see docs/PROTOCOL.md):
//
//	bit 63..53  always 0 (fds stay below 2^53, exact in PHP, JSON and JavaScript)
//	bit 52..43  node id (NodeBits bits)
//	bit 42..0   sequence number within the node's run, starting at 1
//
// With node id 0 the first fd is 1, as in Swoole. Sequence numbers only grow,
// so an fd is never reused while a node runs.
const (
	// NodeBits is the number of bits of an fd that carry the node id.
	NodeBits = 10
	// SeqBits is the number of bits of an fd that carry the sequence number.
	SeqBits = 43
	// MaxNodeID is the largest node id.
	MaxNodeID = 1<<NodeBits - 1
	// MaxFD is the largest fd any node can hand out: 2^53-1.
	MaxFD   = 1<<(NodeBits+SeqBits) - 1
	seqMask = 1<<SeqBits - 1
)

// NodeOf returns the node id encoded in fd.
func NodeOf(fd int64) int { return int(fd >> SeqBits) }

// ValidFD reports whether fd is in the range any node can hand out.
func ValidFD(fd int64) bool { return fd > 0 && fd <= MaxFD && fd&seqMask != 0 }

// fdAllocator hands out fds for one node: never the same one twice.
type fdAllocator struct {
	node int64
	seq  atomic.Int64
}

func newFDAllocator(node int) (*fdAllocator, error) {
	if node < 0 || node > MaxNodeID {
		return nil, fmt.Errorf("node id %d out of range 0..%d", node, MaxNodeID)
	}
	return &fdAllocator{node: int64(node) << SeqBits}, nil
}

func (a *fdAllocator) next() (int64, error) {
	s := a.seq.Add(1)
	if s > seqMask {
		a.seq.Store(seqMask) // stay saturated instead of wrapping
		return 0, ErrFDSpaceExhausted
	}
	return a.node | s, nil
}

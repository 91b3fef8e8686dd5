package bridge

import (
	"errors"
	"testing"
)

var fdLayoutTests = []struct {
	node  int
	seq   int64
	fd    int64
	valid bool
}{
	{0, 1, 1, true},
	{1, 1, 1<<SeqBits | 1, true},
	{MaxNodeID, seqMask, MaxFD, true},
	{0, 0, 0, false},
	{3, 0, 3 << SeqBits, false}, // sequence 0 is never handed out
}

func TestFDLayout(t *testing.T) {
	if MaxFD != 1<<53-1 {
		t.Fatalf("MaxFD = %d, want 2^53-1", int64(MaxFD))
	}
	for _, tt := range fdLayoutTests {
		fd := int64(tt.node)<<SeqBits | tt.seq
		if fd != tt.fd {
			t.Errorf("node %d seq %d: fd %d, want %d", tt.node, tt.seq, fd, tt.fd)
		}
		if ValidFD(fd) != tt.valid {
			t.Errorf("ValidFD(%d) = %v, want %v", fd, ValidFD(fd), tt.valid)
		}
		if tt.valid && NodeOf(fd) != tt.node {
			t.Errorf("NodeOf(%d) = %d, want %d", fd, NodeOf(fd), tt.node)
		}
	}
	for _, fd := range []int64{-1, -(1 << 62), MaxFD + 1, 1 << 62} {
		if ValidFD(fd) {
			t.Errorf("ValidFD(%d) = true", fd)
		}
	}
}

func TestFDAllocatorExhaustion(t *testing.T) {
	a, err := newFDAllocator(7)
	if err != nil {
		t.Fatal(err)
	}
	if fd, _ := a.next(); fd != 7<<SeqBits|1 {
		t.Fatalf("first fd of node 7: %d", fd)
	}
	a.seq.Store(seqMask - 1)
	if fd, err := a.next(); err != nil || fd != 7<<SeqBits|seqMask {
		t.Fatalf("last fd: %d, %v", fd, err)
	}
	for range 3 { // stays exhausted: never wraps to a used fd
		if _, err := a.next(); !errors.Is(err, ErrFDSpaceExhausted) {
			t.Fatalf("after the last fd: %v", err)
		}
	}
	if _, err := newFDAllocator(MaxNodeID + 1); err == nil {
		t.Fatal("node id past MaxNodeID accepted")
	}
}

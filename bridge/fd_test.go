package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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
	seq := &CounterSequence{}
	a, err := newFDAllocator(7, seq)
	if err != nil {
		t.Fatal(err)
	}
	if fd, _ := a.next(); fd != 7<<SeqBits|1 {
		t.Fatalf("first fd of node 7: %d", fd)
	}
	seq.n.Store(seqMask - 1)
	if fd, err := a.next(); err != nil || fd != 7<<SeqBits|seqMask {
		t.Fatalf("last fd: %d, %v", fd, err)
	}
	for range 3 { // stays exhausted: never wraps to a used fd
		if _, err := a.next(); !errors.Is(err, ErrFDSpaceExhausted) {
			t.Fatalf("after the last fd: %v", err)
		}
	}
	if _, err := newFDAllocator(MaxNodeID+1, seq); err == nil {
		t.Fatal("node id past MaxNodeID accepted")
	}
}

// fakeClock is a wall clock the test moves by hand.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func TestClockSequenceLayout(t *testing.T) {
	// 43 bits of milliseconds from 2025 last until 2303.
	end := time.UnixMilli(SeqEpochUnixMilli + MaxSeq).UTC()
	if end.Year() != 2303 {
		t.Fatalf("the clock sequence ends in %v, want the year 2303", end)
	}
	if got := ClockUnits(time.UnixMilli(SeqEpochUnixMilli - 5)); got != 0 {
		t.Fatalf("ClockUnits before the epoch = %d", got)
	}
	if got := ClockUnits(time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC)); got != 1000 {
		t.Fatalf("ClockUnits one second after the epoch = %d, want 1000", got)
	}
	// Today's fds are far below 2^53 and far above a Swoole-style 1.
	fd := int64(MaxNodeID)<<SeqBits | ClockUnits(time.Now())
	if !ValidFD(fd) || fd < 1<<40 {
		t.Fatalf("an fd of node %d today: %d", MaxNodeID, fd)
	}
}

// The standalone sequence grows across two runs of a node: the second
// run's first number is above every number of the first run, a burst
// faster than the clock included, when the first run settled.
func TestClockSequenceGrowsAcrossRuns(t *testing.T) {
	clk := &fakeClock{}
	clk.ms.Store(SeqEpochUnixMilli + 1_000_000)
	run1 := &ClockSequence{now: clk.now}
	var last int64
	for i := range 5000 { // a burst: 5000 numbers within one millisecond
		n, err := run1.Next()
		if err != nil || n <= last {
			t.Fatalf("number %d: %d after %d, %v", i, n, last, err)
		}
		last = n
	}
	if lead := last - ClockUnits(clk.now()); lead != 4999 {
		t.Fatalf("lead after the burst: %d ms, want 4999", lead)
	}
	// Settle waits until the clock has passed the last number; here the
	// clock does not move, so the wait ends with the context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := run1.Settle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Settle with a stopped clock: %v", err)
	}
	// A lead past MaxSettle is reported at once.
	run1.MaxSettle = time.Second
	if err := run1.Settle(context.Background()); err == nil || !strings.Contains(err.Error(), "may repeat") {
		t.Fatalf("Settle with a 5 s lead and MaxSettle 1s: %v", err)
	}
	clk.ms.Add(5000) // the clock catches up: what Settle waits for
	if err := run1.Settle(context.Background()); err != nil {
		t.Fatalf("Settle once the clock passed: %v", err)
	}
	run2 := &ClockSequence{now: clk.now}
	if n, _ := run2.Next(); n <= last {
		t.Fatalf("second run's first number %d, first run's last %d", n, last)
	}
	// With the real clock: two runs, the second above the first.
	a := NewClockSequence()
	first, _ := a.Next()
	second, _ := a.Next()
	if err := a.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := NewClockSequence()
	if n, _ := b.Next(); n <= second || second <= first {
		t.Fatalf("run 1: %d, %d; run 2: %d", first, second, n)
	}
}

func TestClockSequenceConcurrent(t *testing.T) {
	seq := NewClockSequence()
	const goroutines, each = 4, 2000
	got := make([][]int64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				n, err := seq.Next()
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], n)
			}
		})
	}
	wg.Wait()
	seen := make(map[int64]bool, goroutines*each)
	for _, ns := range got {
		for i, n := range ns {
			if seen[n] || (i > 0 && n <= ns[i-1]) {
				t.Fatalf("number %d repeated or out of order", n)
			}
			seen[n] = true
		}
	}
}

func BenchmarkClockSequence(b *testing.B) {
	seq := NewClockSequence()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := seq.Next(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A sequence that hands out no number refuses the handshake with 503 and
// Retry-After, counted as fd_unavailable, before any upgrade; the hub
// keeps serving.
func TestNoFDRefusesTheHandshake(t *testing.T) {
	seq := &CounterSequence{}
	h, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sequence: seq})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer func() { srv.Close(); _ = h.Shutdown(context.Background()) }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	seq.n.Store(MaxSeq)
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("with the sequence exhausted: %v, %+v; want 503 with Retry-After", err, resp)
	}
	if got := h.Stats().Refused.FDUnavailable; got != 1 {
		t.Fatalf("Refused.FDUnavailable = %d, want 1", got)
	}
}

package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/redistest"
)

func newSeq(t testing.TB, url string, k Keys, node int, block int64) *BlockSequence {
	t.Helper()
	s, err := NewBlockSequence(ctxT(t), BlockSequenceConfig{Client: client(t, url), Keys: k, NodeID: node, BlockSize: block, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Three runs of node 3 on a Redis Cluster: each run's numbers are above
// every number of the runs before, across many blocks, and above the
// clock.
func TestBlockSequenceGrowsAcrossRestarts(t *testing.T) {
	cl := redistest.StartCluster(t)
	k := keys(t)
	floor := bridge.ClockUnits(time.Now())
	high := int64(0)
	for run := range 3 {
		s := newSeq(t, cl.URL(), k, 3, 8)
		for i := range 50 {
			var n int64
			var err error
			waitFor(t, "a number", func() bool { n, err = s.Next(); return err == nil }) // the spare may be on its way
			if n <= high || n < floor {
				t.Fatalf("run %d, number %d: %d after %d (floor %d)", run, i, n, high, floor)
			}
			high = n
		}
		s.Close()
	}
	// Another node id has its own counter.
	other := newSeq(t, cl.URL(), k, 4, 8)
	if n, err := other.Next(); err != nil || n < floor {
		t.Fatalf("node 4: %d, %v", n, err)
	}
}

func TestBlockSequenceConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	s := newSeq(t, srv.URL(), keys(t), 1, 64)
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for got := 0; got < 2000; {
				n, err := s.Next()
				if errors.Is(err, bridge.ErrFDUnavailable) {
					time.Sleep(time.Millisecond) // the refill is a Redis round trip away
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got++
				mu.Lock()
				if seen[n] {
					t.Errorf("%d handed out twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Blocks < 8000/64 {
		t.Fatalf("stats %+v", st)
	}
}

// With Redis away, a hub on a BlockSequence accepts connections while its
// reserved numbers last, then refuses handshakes with 503 (counted) and
// never reuses a number; with Redis back (empty: the counter is gone) the
// numbers go on above the old ones.
func TestBlockSequenceWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	s := newSeq(t, srv.URL(), keys(t), 2, 4)
	waitFor(t, "the spare block", func() bool { return s.spare.Load() != nil })
	hub, err := bridge.New(bridge.Config{NodeID: 2, Sequence: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ws := httptest.NewServer(hub)
	defer func() { ws.Close(); _ = hub.Shutdown(context.Background()) }()
	url := "ws" + strings.TrimPrefix(ws.URL, "http")
	srv.Stop()
	high := int64(0)
	accepted := 0
	for {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("handshake %d: %v, %+v; want 503", accepted+1, err, resp)
			}
			break
		}
		c.Close()
		accepted++
		if accepted > 8 {
			t.Fatal("more connections than the two reserved blocks hold")
		}
	}
	if accepted != 8 || hub.Stats().Refused.FDUnavailable != 1 || s.Stats().Unavailable == 0 {
		t.Fatalf("accepted %d, refused %+v, sequence %+v", accepted, hub.Stats().Refused, s.Stats())
	}
	// What the hub handed out: the two blocks, at most.
	high = int64(2)<<bridge.SeqBits | s.cur.Load().end
	if err := srv.StartAgain(); err != nil {
		t.Fatal(err)
	}
	var n int64
	waitFor(t, "a number once Redis is back", func() bool { n, err = s.Next(); return err == nil })
	if fd := int64(2)<<bridge.SeqBits | n; fd <= high {
		t.Fatalf("after the restart: fd %d, not above %d", fd, high)
	}
}

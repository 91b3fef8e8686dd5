package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

// Batches, single pushes and PushMany race on the same fds while the
// clients read, and some clients go away midway (after their first 20
// messages). Each reading client gets every message of each kind, the
// batches' and the single pushes' each in their own order; every push to a
// reading client is accepted; nothing hangs; the Hub's queued bytes return
// to 0.
func TestPushBatchRacesPushAndClose(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 2, Flushers: 2, QueueSize: 100000, QueueBytes: 64 << 20})
	const (
		n       = 20
		batches = 20
		perConn = 50 // messages to each connection per batch
		pushes  = 1000
		many    = 500
	)
	cs, fds := batchClients(t, th, n)
	leaves := func(i int) bool { return i%5 == 4 }
	readErrs := make([]error, n)
	var rwg sync.WaitGroup
	for i, c := range cs {
		rwg.Go(func() {
			var b, p, m int
			for k := 0; ; k++ {
				if leaves(i) && k == 20 {
					c.Close() // goes away midway
					return
				}
				if !leaves(i) && b == batches*perConn && p == pushes && m == many {
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(wait))
				_, data, err := c.ReadMessage()
				if err != nil {
					if !leaves(i) {
						readErrs[i] = fmt.Errorf("conn %d after %d batch, %d single, %d PushMany messages: %w", i, b, p, m, err)
					}
					return
				}
				kind, num, _ := strings.Cut(string(data), ":")
				seq, _ := strconv.Atoi(num)
				switch kind {
				case "b":
					if seq != b {
						readErrs[i] = fmt.Errorf("conn %d: batch message %d, want %d", i, seq, b)
						return
					}
					b++
				case "p":
					if seq != p {
						readErrs[i] = fmt.Errorf("conn %d: single push %d, want %d", i, seq, p)
						return
					}
					p++
				case "m":
					m++
				}
			}
		})
	}
	// Each pusher reports through its own error; they are read once all are
	// done (on the timeout path the test ends while they may still run).
	var batchErr, pushErr, manyErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		seq := 0
		for range batches {
			var msgs []bridge.BatchMessage
			for range perConn {
				for i := range n {
					msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: fmt.Appendf(nil, "b:%d", seq), Op: bridge.OpText, Finish: true})
				}
				seq++
			}
			ok := make([]bool, len(msgs))
			if _, err := th.PushBatch(msgs, ok); err != nil {
				batchErr = err
				return
			}
			for k, m := range msgs {
				if i := k % n; !ok[k] && !leaves(i) {
					batchErr = fmt.Errorf("batch message %d to the reading client of fd %d refused", k, m.FD)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for k := range pushes {
			for i := range n {
				err := th.Push(fds[i], fmt.Appendf(nil, "p:%d", k), bridge.OpText, true)
				if err != nil && !leaves(i) {
					pushErr = fmt.Errorf("push %d to the reading client of fd %d: %w", k, fds[i], err)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for range many {
			if _, err := th.PushMany(fds, []byte("m:"), bridge.OpText); err != nil {
				manyErr = err
				return
			}
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * wait):
		t.Fatal("the pushes hang")
	}
	if err := errors.Join(batchErr, pushErr, manyErr); err != nil {
		t.Fatal(err)
	}
	rwg.Wait()
	if err := errors.Join(readErrs...); err != nil {
		t.Fatal(err)
	}
	waitQueuedBytesZero(t, th)
}

// waitQueuedBytesZero waits until the Hub holds no queued bytes.
func waitQueuedBytesZero(t *testing.T, th *testHub) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for th.Stats().QueuedBytes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("QueuedBytes = %d, want 0", th.Stats().QueuedBytes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Shutdown while batches (and PushMany) to 150 connections of two workers
// run: it returns, and so do the batches, and no queued byte is left.
func TestPushBatchDuringShutdown(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 2, Flushers: 1})
	const n = 150
	cs, fds := batchClients(t, th, n)
	var rwg sync.WaitGroup
	for _, c := range cs {
		rwg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(3 * wait))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return // closed by the Shutdown
				}
			}
		})
	}
	stop := make(chan struct{})
	started := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		msgs := make([]bridge.BatchMessage, 0, 3*n)
		for k := range 3 {
			for i := range n {
				msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: fmt.Appendf(nil, "%d", k), Op: bridge.OpText, Finish: true})
			}
		}
		ok := make([]bool, len(msgs))
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = th.PushBatch(msgs, ok)
			_, _ = th.PushMany(fds, []byte("x"), bridge.OpText)
			if round == 0 {
				close(started)
			}
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	close(stop)
	select {
	case <-ended:
	case <-time.After(wait):
		t.Fatal("the batches hang after Shutdown")
	}
	if q := th.Stats().QueuedBytes; q != 0 {
		t.Fatalf("QueuedBytes = %d after Shutdown", q)
	}
	rwg.Wait()
}

// Fragments, a large message, a ping, compressed and WriteDelay
// connections in one batch that names more connections than a flusher
// chunk: each connection gets its messages whole and in order.
func TestPushBatchMixedFrames(t *testing.T) {
	for _, cfg := range []bridge.Config{
		{Workers: 2, Flushers: 1},
		{Workers: 2, Flushers: 1, WriteDelay: 5 * time.Millisecond},
		{Workers: 2, Flushers: 1, Compression: true},
		{Workers: 2, Flushers: 1, FragmentSize: 200},
	} {
		th := startHub(t, cfg)
		const n = 140
		cs := make([]*websocket.Conn, n)
		fds := make([]int64, n)
		for i := range n {
			cs[i], fds[i] = th.dialWith(t, &websocket.Dialer{EnableCompression: i%2 == 0, HandshakeTimeout: wait}, fmt.Sprint("c", i))
		}
		big := strings.Repeat("x", 100<<10)
		var msgs []bridge.BatchMessage
		for i := range n {
			msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: []byte("a"), Op: bridge.OpText, Finish: true})
		}
		for i := range n {
			msgs = append(msgs, bridge.BatchMessage{FD: fds[i], Data: []byte("f1-"), Op: bridge.OpText, Finish: false})
		}
		for i := range n {
			msgs = append(msgs,
				bridge.BatchMessage{FD: fds[i], Data: []byte("f2"), Op: bridge.OpContinuation, Finish: true},
				bridge.BatchMessage{FD: fds[i], Data: []byte(big), Op: bridge.OpText, Finish: true},
				bridge.BatchMessage{FD: fds[i], Data: []byte("p"), Op: bridge.OpPing, Finish: true},
				bridge.BatchMessage{FD: fds[i], Data: []byte("z"), Op: bridge.OpText, Finish: true})
		}
		ok := make([]bool, len(msgs))
		if k, err := th.PushBatch(msgs, ok); err != nil || k != len(msgs) {
			t.Fatalf("%+v: PushBatch = %d, %v", cfg, k, err)
		}
		for i, b := range ok {
			if !b {
				t.Fatalf("%+v: ok[%d] false", cfg, i)
			}
		}
		for _, c := range cs {
			readText(t, c, "a")
			readText(t, c, "f1-f2")
			readText(t, c, big)
			readText(t, c, "z")
		}
	}
}

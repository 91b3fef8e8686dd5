package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

func directCounts(h *bridge.Hub) (direct, partial uint64) {
	for _, w := range h.Stats().Workers {
		direct += w.DirectWrites
		partial += w.DirectPartial
	}
	return direct, partial
}

// payload is a message of size bytes that starts with tag and is checked
// whole on arrival.
func payload(tag string, size int) []byte {
	return []byte(tag + strings.Repeat(".", size-len(tag)-1) + "!")
}

// waitDirect waits until want messages were written directly (counted
// just after the write, so maybe after the client has read them).
func waitDirect(t *testing.T, h *bridge.Hub, want uint64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		direct, _ := directCounts(h)
		if direct == want {
			return
		}
		if direct > want || time.Now().After(deadline) {
			t.Fatalf("%d messages written directly, want %d", direct, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitQueuedBytes(t *testing.T, h *bridge.Hub, want int64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for h.Stats().QueuedBytes != want {
		if time.Now().After(deadline) {
			t.Fatalf("QueuedBytes = %d, want %d", h.Stats().QueuedBytes, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A broadcast to an idle connection is written by the broadcasting
// goroutine itself. To a client that does not read, broadcasts are written
// directly until its socket's buffer is full; the one that fits only in
// part leaves the rest owed, written by a writer goroutine before anything
// else. Broadcasts and pushes sent after it queue behind, and the client
// gets every message whole, in exactly the order they were sent, with the
// budget given back at the end.
func TestDirectWritePartialKeepsOrder(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 1000, QueueBytes: 256 << 20, MaxQueuedBytes: 1 << 30, MaxPushSize: 60000, WriteTimeout: wait, Workers: 2})
	slow, slowFD := th.dialWith(t, stalledDialer, "slow")
	fast, _ := th.dial(t, "fast")

	var want []string
	var broadcasts [][]byte
	var mu sync.Mutex
	got := make(chan int, 1) // broadcasts the fast client has read, when it is done
	more := make(chan struct{}, 1<<12)
	go func() {
		fast.SetReadDeadline(time.Now().Add(wait))
		i := 0
		for range more {
			_, data, err := fast.ReadMessage()
			mu.Lock()
			w := broadcasts[i]
			mu.Unlock()
			if err != nil || !bytes.Equal(data, w) {
				t.Errorf("fast client, message %d: %q, %v", i, trunc(data), err)
				break
			}
			i++
		}
		got <- i
	}()
	broadcast := func(tag string) {
		t.Helper()
		b := payload(tag, 60000)
		mu.Lock()
		broadcasts = append(broadcasts, b)
		mu.Unlock()
		if n, err := th.Broadcast(b, bridge.OpText, nil); err != nil || n != 2 {
			t.Fatalf("broadcast %s: %d, %v", tag, n, err)
		}
		more <- struct{}{}
		want = append(want, string(b))
	}
	// Fill the slow client's socket with direct writes, one broadcast at
	// a time, until one fits only in part.
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("120 MB written to a client that does not read, and no write was partial")
		}
		broadcast(fmt.Sprintf("f%04d", i))
		deadline := time.Now().Add(wait)
		for th.Stats().QueuedBytes != 0 {
			if _, partial := directCounts(th.Hub); partial > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if _, partial := directCounts(th.Hub); partial > 0 {
			break
		}
		if th.Stats().QueuedBytes != 0 {
			t.Fatal("the socket filled without a partial write (EAGAIN at a frame boundary): run again")
		}
	}
	if _, partial := directCounts(th.Hub); partial != 1 {
		t.Fatalf("%d broadcasts written in part, want 1: the one that filled the socket", partial)
	}
	for i := range 20 {
		broadcast(fmt.Sprintf("b%02d", i))
		p := payload(fmt.Sprintf("p%02d", i), 1000+i)
		if err := th.Push(slowFD, p, bridge.OpText, true); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		want = append(want, string(p))
	}
	slow.SetReadDeadline(time.Now().Add(wait))
	for i, w := range want {
		_, data, err := slow.ReadMessage()
		if err != nil || string(data) != w {
			t.Fatalf("slow client, message %d of %d: got %q (%d bytes), %v; want %q (%d bytes)", i, len(want), trunc(data), len(data), err, trunc([]byte(w)), len(w))
		}
	}
	close(more)
	if n := <-got; n != len(broadcasts) {
		t.Errorf("the fast client read %d broadcasts of %d", n, len(broadcasts))
	}
	waitQueuedBytes(t, th.Hub, 0)
}

// Broadcasts from several goroutines and pushes to the same connections
// race for the direct path and the queue: each client receives every
// message whole, each sender's messages in the order it sent them.
func TestDirectWritesRacingPushes(t *testing.T) {
	th := startHub(t, bridge.Config{QueueSize: 10000, QueueBytes: 64 << 20, WriteTimeout: wait, Workers: 2})
	const clients, senders, each = 8, 3, 200
	conns := make([]*websocket.Conn, clients)
	fds := make([]int64, clients)
	for i := range conns {
		conns[i], fds[i] = th.dial(t, fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if _, err := th.Broadcast([]byte(fmt.Sprintf("b%d/%d", s, k)), bridge.OpText, nil); err != nil {
					t.Errorf("broadcast: %v", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range each {
			for i, fd := range fds {
				if err := th.Push(fd, []byte(fmt.Sprintf("p%d/%d", i, k)), bridge.OpText, true); err != nil {
					t.Errorf("push: %v", err)
					return
				}
			}
		}
	}()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := map[string]int{}
			c.SetReadDeadline(time.Now().Add(wait))
			for range senders*each + each {
				_, data, err := c.ReadMessage()
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				var src string
				var k int
				if _, err := fmt.Sscanf(strings.Replace(string(data), "/", " ", 1), "%s %d", &src, &k); err != nil {
					t.Errorf("client %d: message %q", i, data)
					return
				}
				if src[0] == 'p' && src != fmt.Sprintf("p%d", i) {
					t.Errorf("client %d got another's push %q", i, data)
				}
				if k != next[src] {
					t.Errorf("client %d: %q after %d of %s", i, data, next[src], src)
					return
				}
				next[src]++
			}
		}()
	}
	wg.Wait()
	if direct, _ := directCounts(th.Hub); direct == 0 {
		t.Error("no broadcast was written directly")
	}
	waitQueuedBytes(t, th.Hub, 0)
}

// A connection that negotiated compression gets broadcasts from its
// writer, compressed; the others directly.
func TestDirectWriteSkipsCompressedConnections(t *testing.T) {
	th := startHub(t, bridge.Config{Compression: true})
	zc, _ := th.dialWith(t, &websocket.Dialer{HandshakeTimeout: wait, EnableCompression: true}, "deflate")
	pc, _ := th.dial(t, "plain")
	msg := strings.Repeat("compressible ", 100)
	if n, err := th.Broadcast([]byte(msg), bridge.OpText, nil); err != nil || n != 2 {
		t.Fatalf("broadcast: %d, %v", n, err)
	}
	readText(t, zc, msg)
	readText(t, pc, msg)
	waitDirect(t, th.Hub, 1) // the uncompressed connection's

}

// With a write delay, the first broadcast to a quiet connection is written
// at once, directly; the ones that follow within the delay wait for it,
// then go out together, with a push queued among them and a Disconnect's
// close frame after them, all in order.
func TestWriteDelayGathersABurst(t *testing.T) {
	th := startHub(t, bridge.Config{WriteDelay: time.Second, Workers: 1})
	c, fd := th.dial(t, "a")
	if _, err := th.Broadcast([]byte("first"), bridge.OpText, nil); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "first")
	waitDirect(t, th.Hub, 1)
	var want []string
	for i := range 10 {
		m := fmt.Sprintf("b%d", i)
		if n, err := th.Broadcast([]byte(m), bridge.OpText, nil); err != nil || n != 1 {
			t.Fatalf("broadcast %d: %d, %v", i, n, err)
		}
		want = append(want, m)
		if i == 5 {
			if err := th.Push(fd, []byte("push"), bridge.OpText, true); err != nil {
				t.Fatal(err)
			}
			want = append(want, "push")
		}
	}
	if err := th.Disconnect(fd, 4000, "bye"); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		readText(t, c, w)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 4000) {
		t.Fatalf("after the messages: %v, want close 4000", err)
	}
	direct, _ := directCounts(th.Hub)
	var delayed uint64
	for _, w := range th.Stats().Workers {
		delayed += w.Delayed
	}
	// The first broadcast went out at once; the burst waited for the
	// delay once, then the flusher wrote b0..b9 and the push with one
	// system call, and a writer goroutine the close frame.
	if direct != 12 || delayed != 1 {
		t.Errorf("direct writes %d, delayed %d; want 12 (the first broadcast, then the 11 messages of the burst together) and 1", direct, delayed)
	}
}

// A Hub shut down while writers wait for their delay ends them all: every
// client gets what was queued and the close, and no goroutine is left
// (goleak in TestMain).
func TestWriteDelayShutdown(t *testing.T) {
	th := startHub(t, bridge.Config{WriteDelay: 200 * time.Millisecond})
	conns := make([]*websocket.Conn, 4)
	for i := range conns {
		conns[i], _ = th.dial(t, fmt.Sprint(i))
	}
	for i := range 3 {
		if _, err := th.Broadcast([]byte(fmt.Sprint(i)), bridge.OpText, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		for i := range 3 {
			readText(t, c, fmt.Sprint(i))
		}
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("after the broadcasts: %v, want close 1001", err)
		}
	}
}

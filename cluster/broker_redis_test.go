package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/internal/redistest"
)

func newBroker(t testing.TB, url string, in *inbox) *RedisBroker {
	t.Helper()
	b, err := NewRedisBroker(RedisBrokerConfig{Client: client(t, url), Handler: in.handle, HealthInterval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Two nodes on one Redis and on a 3-master Redis Cluster: what one
// publishes reaches the other's subscribed channels, in order, and stops
// at Unsubscribe.
func TestBrokerPublishSubscribe(t *testing.T) {
	for _, mode := range []string{"single", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var url string
			if mode == "single" {
				url = redistest.Start(t).URL()
			} else {
				url = redistest.StartCluster(t).URL()
			}
			k := keys(t)
			inA, inB := newInbox(), newInbox()
			a, b := newBroker(t, url, inA), newBroker(t, url, inB)
			// Enough channels to land on all three masters of the cluster.
			var chans []string
			for i := range 20 {
				chans = append(chans, k.GroupChannel("g"+strconv.Itoa(i)))
			}
			chans = append(chans, k.NodeChannel(1), k.BroadcastChannel())
			if err := b.Subscribe(ctxT(t), chans...); err != nil {
				t.Fatal(err)
			}
			if err := b.Subscribe(ctxT(t), chans[0]); err != nil { // again: nothing changes
				t.Fatal(err)
			}
			if h := b.Health(); !h.Up || h.Channels != len(chans) {
				t.Fatalf("health %+v, want up with %d channels", h, len(chans))
			}
			for i := range 5 {
				for _, ch := range chans {
					if n, err := a.Publish(ctxT(t), ch, []byte(ch+"#"+strconv.Itoa(i))); err != nil || n != 1 {
						t.Fatalf("Publish = %d, %v; want 1 receiver", n, err)
					}
				}
			}
			for _, ch := range chans {
				want := []string{ch + "#0", ch + "#1", ch + "#2", ch + "#3", ch + "#4"}
				waitFor(t, "5 messages on "+ch, func() bool { return len(inB.get(ch)) >= 5 })
				if got := inB.get(ch); !slices.Equal(got, want) {
					t.Fatalf("%s: %q, want %q", ch, got, want)
				}
			}
			if n := len(inA.msgs); n != 0 {
				t.Fatalf("the publisher received on %d channels", n)
			}
			// Binary payloads pass unchanged.
			bin := []byte{0, 0xff, '\r', '\n', 0x80}
			if _, err := a.Publish(ctxT(t), chans[0], bin); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the binary message", func() bool { return len(inB.get(chans[0])) == 6 })
			if got := inB.get(chans[0])[5]; got != string(bin) {
				t.Fatalf("binary payload %q", got)
			}
			// Unsubscribed: nothing more arrives there; the others still do.
			if err := b.Unsubscribe(ctxT(t), chans[1:]...); err != nil {
				t.Fatal(err)
			}
			if n, err := a.Publish(ctxT(t), chans[1], []byte("late")); err != nil || n != 0 {
				t.Fatalf("Publish to an unsubscribed channel = %d, %v; want 0 receivers", n, err)
			}
			if _, err := a.Publish(ctxT(t), chans[0], []byte("last")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the last message", func() bool { return len(inB.get(chans[0])) == 7 })
			if got := inB.get(chans[1]); len(got) != 5 {
				t.Fatalf("after Unsubscribe: %q", got)
			}
			if st := b.Stats(); st.Received != uint64(5*len(chans)+2) {
				t.Fatalf("received %d, want %d", st.Received, 5*len(chans)+2)
			}
		})
	}
}

// Redis restarted: the broker finds out, comes back by itself, counts the
// reconnect and subscribes its channels again.
func TestBrokerResubscribesAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	k := keys(t)
	in := newInbox()
	pub, sub := newBroker(t, srv.URL(), newInbox()), newBroker(t, srv.URL(), in)
	ch := k.NodeChannel(7)
	if err := sub.Subscribe(ctxT(t), ch); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	waitFor(t, "the broker to see Redis down", func() bool { return !sub.Health().Up })
	if h := sub.Health(); h.Reason == "" {
		t.Fatalf("down without a reason: %+v", h)
	}
	if err := srv.StartAgain(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both brokers up again", func() bool { return sub.Health().Up && pub.Health().Up })
	if h := sub.Health(); h.Reconnects != 1 || h.Channels != 1 {
		t.Fatalf("health after the restart %+v, want 1 reconnect and 1 channel", h)
	}
	// The resubscription happens within the backoff; publish until it has.
	waitFor(t, "a message after the restart", func() bool {
		_, _ = pub.Publish(ctxT(t), ch, []byte("again"))
		return len(in.get(ch)) > 0
	})
}

// While Redis is away: Publish fails at once with ErrUnavailable, and the
// number of goroutines stays put however long it lasts.
func TestBrokerWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	k := keys(t)
	b := newBroker(t, srv.URL(), newInbox())
	var chans []string
	for i := range 100 {
		chans = append(chans, k.GroupChannel(fmt.Sprint(i)))
	}
	if err := b.Subscribe(ctxT(t), chans...); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	waitFor(t, "Redis seen down", func() bool { return !b.Health().Up })
	time.Sleep(500 * time.Millisecond) // the subscriptions are in their backoff
	before := runtime.NumGoroutine()
	for range 200 {
		// Refused from the broker's state, without a try at Redis (whose
		// failures read "publish: ...").
		_, err := b.Publish(context.Background(), chans[0], []byte("x"))
		if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "publish:") {
			t.Fatalf("publish while down: %v, want ErrUnavailable from the broker's state", err)
		}
	}
	// Subscribe while down registers the channel and says Redis is away.
	if err := b.Subscribe(ctxT(t), k.GroupChannel("new")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("subscribe while down: %v", err)
	}
	time.Sleep(3 * time.Second) // past the longest backoff, a few times over
	after := runtime.NumGoroutine()
	if after > before+2 { // the new channel's goroutine, and slack for one dial in flight
		t.Fatalf("goroutines grew while Redis was down: %d → %d", before, after)
	}
	if h := b.Health(); h.Up || h.Channels != 101 {
		t.Fatalf("health %+v", h)
	}
	if st := b.Stats(); st.PublishErrors < 200 {
		t.Fatalf("publish errors counted: %d", st.PublishErrors)
	}
	// Unsubscribe while down returns at once.
	if err := b.Unsubscribe(ctxT(t), chans...); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPublishRoundTrip: one publish from one broker to a subscriber
// on another client, waiting for each message before the next (the
// latency of one Redis pub/sub hop), and with 8 publishers (auto-
// pipelining).
func BenchmarkPublishRoundTrip(b *testing.B) {
	srv := redistest.Start(b)
	k := keys(b)
	got := make(chan struct{}, 1024)
	sub, err := NewRedisBroker(RedisBrokerConfig{Client: client(b, srv.URL()), Handler: func(string, []byte) { got <- struct{}{} }, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	pub, err := NewRedisBroker(RedisBrokerConfig{Client: client(b, srv.URL()), Handler: func(string, []byte) {}, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	ch := k.NodeChannel(1)
	if err := sub.Subscribe(context.Background(), ch); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			if _, err := pub.Publish(context.Background(), ch, payload); err != nil {
				b.Fatal(err)
			}
			<-got
		}
	})
	b.Run("8-publishers", func(b *testing.B) {
		b.SetParallelism(4) // 2 cores × 4
		done := make(chan struct{})
		go func() {
			for range b.N {
				<-got
			}
			close(done)
		}()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := pub.Publish(context.Background(), ch, payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
		<-done
	})
}

// TestBrokerCallerGaveUp: a publish whose caller's context has ended
// fails without taking Redis for down; its own timeout is what says
// Redis hangs (TestRedisHangs).
func TestBrokerCallerGaveUp(t *testing.T) {
	b := newBroker(t, redistest.Start(t).URL(), newInbox())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Publish(ctx, keys(t).NodeChannel(1), []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with an ended context: %v", err)
	}
	if h := b.Health(); !h.Up {
		t.Fatalf("Redis taken for down after a caller gave up: %+v", h)
	}
}

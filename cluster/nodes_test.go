package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsbridge/wsbridge/internal/redistest"
)

// join claims id on the Redis c for a node at addr, with a short TTL, and
// releases it at the end of the test.
func join(t testing.TB, c rueidis.Client, k Keys, id int, addr string, mod func(*RegistryConfig)) (*Registry, error) {
	t.Helper()
	cfg := RegistryConfig{Client: c, Keys: k, NodeID: id, Address: addr, TTL: 600 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	r, err := Join(ctxT(t), cfg)
	if err == nil {
		t.Cleanup(func() { _ = r.Close(context.Background()) })
	}
	return r, err
}

func TestNodeIDs(t *testing.T) {
	for _, mode := range []string{"single", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var url string
			if mode == "single" {
				url = redistest.Start(t).URL()
			} else {
				url = redistest.StartCluster(t).URL()
			}
			c := client(t, url)
			t.Run("explicit conflict names the holder", func(t *testing.T) {
				k := keys(t)
				a, err := join(t, c, k, 3, "10.0.0.1:6001", nil)
				if err != nil || a.ID() != 3 {
					t.Fatalf("first claim of 3: %v", err)
				}
				_, err = join(t, c, k, 3, "10.0.0.2:6001", nil)
				var taken *IDTakenError
				if !errors.Is(err, ErrIDTaken) || !errors.As(err, &taken) || taken.Holder.Address != "10.0.0.1:6001" ||
					!strings.Contains(err.Error(), "10.0.0.1:6001") {
					t.Fatalf("second claim of 3: %v; want ErrIDTaken naming 10.0.0.1:6001", err)
				}
				// Released on Close: the id is free again, and no one
				// takes the node for lost.
				if err := a.Close(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				b, err := join(t, c, k, 3, "10.0.0.2:6001", nil)
				if err != nil || b.Self().Gen <= a.Self().Gen {
					t.Fatalf("claim after release: %v (gens %d, %d)", err, a.Self().Gen, b.Self().Gen)
				}
			})
			t.Run("5 auto claims at once are distinct", func(t *testing.T) {
				k := keys(t)
				var (
					mu  sync.Mutex
					ids []int
					wg  sync.WaitGroup
				)
				for i := range 5 {
					wg.Go(func() {
						r, err := join(t, c, k, AutoNodeID, fmt.Sprintf("10.0.0.%d:6001", i), nil)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						ids = append(ids, r.ID())
						mu.Unlock()
					})
				}
				wg.Wait()
				slices.Sort(ids)
				if !slices.Equal(ids, []int{0, 1, 2, 3, 4}) {
					t.Fatalf("auto ids %v, want 0..4", ids)
				}
				nodes, err := ListNodes(ctxT(t), c, k)
				if err != nil || len(nodes) != 5 {
					t.Fatalf("List: %v, %v", nodes, err)
				}
				for i, n := range nodes {
					if n.ID != i || !strings.HasPrefix(n.Address, "10.0.0.") || n.Expired || n.HeartbeatAge < 0 || n.HeartbeatAge > time.Second {
						t.Fatalf("node %d: %+v", i, n)
					}
				}
			})
		})
	}
}

// A node that dies without releasing its id is handled by exactly one of
// the two survivors, once; the listing shows the heartbeat's age and
// connection counts meanwhile.
func TestNodeLostOnceAcrossSurvivors(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.URL())
	k := keys(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	watch := func(name string) func(*RegistryConfig) {
		return func(cfg *RegistryConfig) {
			cfg.OnNodeLost = func(ctx context.Context, lost Node) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, fmt.Sprintf("%s saw %d at %s", name, lost.ID, lost.Address))
				return nil
			}
		}
	}
	if _, err := join(t, c, k, 0, "a:1", watch("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := join(t, c, k, 1, "b:1", watch("b")); err != nil {
		t.Fatal(err)
	}
	doomed, err := join(t, c, k, 7, "doomed:1", func(cfg *RegistryConfig) { cfg.Connections = func() int64 { return 42 } })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the doomed node's connection count", func() bool {
		nodes, _ := ListNodes(ctxT(t), c, k)
		return len(nodes) == 3 && nodes[2].ID == 7 && nodes[2].Connections == 42
	})
	doomed.halt() // SIGKILL: no release
	waitFor(t, "the lost node handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) > 0 })
	time.Sleep(time.Second) // several more sweeps by both survivors
	mu.Lock()
	if len(seen) != 1 || !strings.HasSuffix(seen[0], "saw 7 at doomed:1") {
		t.Fatalf("lost-node callbacks: %q, want one for node 7", seen)
	}
	mu.Unlock()
	nodes, _ := ListNodes(ctxT(t), c, k)
	if len(nodes) != 2 {
		t.Fatalf("after the loss the registry lists %+v", nodes)
	}
	// The id is free again.
	if _, err := join(t, c, k, 7, "new:1", nil); err != nil {
		t.Fatal(err)
	}
}

// A failed cleanup is taken on again at a later sweep, by either survivor.
func TestNodeLostRetriedAfterAnError(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.URL())
	k := keys(t)
	var mu sync.Mutex
	calls := 0
	if _, err := join(t, c, k, 0, "a:1", func(cfg *RegistryConfig) {
		cfg.OnNodeLost = func(context.Context, Node) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return errors.New("the application is down")
			}
			return nil
		}
	}); err != nil {
		t.Fatal(err)
	}
	doomed, err := join(t, c, k, 5, "doomed:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	doomed.halt()
	waitFor(t, "the retried cleanup", func() bool { mu.Lock(); defer mu.Unlock(); return calls == 2 })
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d calls, want 2", calls)
	}
}

// A node whose claim expired and was taken by another node finds out at
// its next heartbeat and says so, naming the new holder; one whose claim
// expired and was declared lost by a survivor finds out too.
func TestClaimLost(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.URL())
	k := keys(t)
	lostErr := make(chan error, 1)
	onLost := func(cfg *RegistryConfig) { cfg.OnClaimLost = func(err error) { lostErr <- err } }

	// Another node holds the id now (as if this one had stalled past the
	// TTL and the other claimed the free id): one atomic overwrite, so no
	// heartbeat can come between.
	running, err := join(t, c, k, 4, "running:1", onLost)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI("set", k.Claim(4), `{"id":4,"gen":999999,"address":"usurper:1","ttl_ms":600}`, "px", "60000"); err != nil || out != "OK" {
		t.Fatalf("SET the claim: %q, %v", out, err)
	}
	select {
	case err := <-lostErr:
		if !errors.Is(err, ErrClaimLost) || !strings.Contains(err.Error(), "usurper:1") {
			t.Fatalf("claim lost: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the node did not notice")
	}
	_ = running.Close(ctxT(t)) // releases nothing: the id is not its own
	if out, _ := srv.CLI("get", k.Claim(4)); !strings.Contains(out, "usurper:1") {
		t.Fatalf("the claim after Close: %q", out)
	}

	// Stalled past the TTL, its claim expired, and another node claimed
	// the id through Join.
	stalled, err := join(t, c, k, 6, "stalled:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	stalled.halt()
	waitFor(t, "the claim to expire", func() bool { out, _ := srv.CLI("exists", k.Claim(6)); return out == "0" })
	if _, err := join(t, c, k, 6, "next:1", nil); err != nil {
		t.Fatal(err)
	}
	if err := stalled.renew(); !errors.Is(err, ErrClaimLost) || !strings.Contains(err.Error(), "next:1") {
		t.Fatalf("renewal after the id was taken: %v", err)
	}

	// Declared lost by a survivor while stalled.
	k2 := keys(t)
	if _, err := join(t, c, k2, 0, "survivor:1", nil); err != nil {
		t.Fatal(err)
	}
	stalled2, err := join(t, c, k2, 9, "stalled:2", onLost)
	if err != nil {
		t.Fatal(err)
	}
	stalled2.halt()
	waitFor(t, "the survivor to handle node 9", func() bool {
		out, _ := srv.CLI("exists", k2.deadPrefix()+fmt.Sprintf("9:%d", stalled2.Self().Gen))
		return out == "1"
	})
	// The stalled node wakes up: its renewal is refused.
	if err := stalled2.renew(); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("renewal after being declared lost: %v", err)
	}
}

// Redis restarted empty: each node takes its id back at its next
// heartbeat; no one is declared lost.
func TestRegistryAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.URL())
	k := keys(t)
	lost := make(chan Node, 4)
	claimLost := make(chan error, 4)
	mod := func(cfg *RegistryConfig) {
		cfg.OnNodeLost = func(_ context.Context, n Node) error { lost <- n; return nil }
		cfg.OnClaimLost = func(err error) { claimLost <- err }
	}
	if _, err := join(t, c, k, 1, "a:1", mod); err != nil {
		t.Fatal(err)
	}
	if _, err := join(t, c, k, 2, "b:1", mod); err != nil {
		t.Fatal(err)
	}
	srv.Restart(200 * time.Millisecond)
	waitFor(t, "both ids back in the registry", func() bool {
		nodes, _ := ListNodes(ctxT(t), c, k)
		return len(nodes) == 2
	})
	time.Sleep(time.Second)
	select {
	case n := <-lost:
		t.Fatalf("node %+v declared lost after a Redis restart", n)
	case err := <-claimLost:
		t.Fatalf("claim lost after a Redis restart: %v", err)
	default:
	}
}

// TestOwnSweepSkipsItself: a node that stalled past its TTL (its claim
// expired) and whose sweep runs before its heartbeat does not take itself
// for lost: no cleanup of its own connections, and the heartbeat renews
// the claim.
func TestOwnSweepSkipsItself(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.URL())
	k := keys(t)
	var lost []Node
	var mu sync.Mutex
	r, err := join(t, c, k, 5, "stalled:1", func(cfg *RegistryConfig) {
		cfg.Heartbeat = time.Hour // this test runs the sweep and the heartbeat itself
		cfg.OnNodeLost = func(_ context.Context, n Node) error { mu.Lock(); lost = append(lost, n); mu.Unlock(); return nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI("del", k.Claim(5)); err != nil || out != "1" { // the claim expired
		t.Fatalf("DEL the claim: %q, %v", out, err)
	}
	if err := r.sweep(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lost) != 0 {
		t.Fatalf("the node's own sweep handled %+v as lost", lost)
	}
	if err := r.renew(); err != nil {
		t.Fatalf("the heartbeat after the stall: %v, want the claim renewed", err)
	}
}

package cluster

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/internal/redistest"
)

// Every goroutine of the brokers, registries, sequences and rueidis
// clients the tests start must be gone once they are closed. One
// exception: after a cluster topology refresh replaced connections,
// rueidis closes the old ones from a goroutine that sleeps 5 s first
// (cluster.go, _refresh) and then exits by itself.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}

const wait = 10 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// client connects to the Redis at url and closes the client at the end of
// the test.
func client(t testing.TB, url string) rueidis.Client {
	t.Helper()
	u, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// keys returns a key set with a prefix of the test's own.
func keys(t testing.TB) Keys {
	t.Helper()
	k, err := NewKeys(redistest.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// inbox records the messages a broker's handler receives.
type inbox struct {
	mu   sync.Mutex
	msgs map[string][]string
	ch   chan struct{} // poked on every message
}

func newInbox() *inbox { return &inbox{msgs: map[string][]string{}, ch: make(chan struct{}, 1)} }

func (in *inbox) handle(channel string, payload []byte) {
	in.mu.Lock()
	in.msgs[channel] = append(in.msgs[channel], string(payload))
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

func (in *inbox) get(channel string) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs[channel]...)
}

// waitFor polls cond until it holds or wait has passed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsbridge/wsbridge/bridge"
)

// Transports a fixture serves the hub over.
const (
	// pipe: a MemListener (net.Pipe pairs), no file descriptors, so 10k
	// connections fit in one process. A write to a pipe is a rendezvous with
	// the client's drainer goroutine (two channel operations) instead of a
	// syscall into a socket buffer.
	pipe = "pipe"
	// tcp: real loopback TCP, client and server in this process: two file
	// descriptors per connection, so at most ~9k connections here.
	tcp = "tcp"
)

// fixture is a Hub served over a MemListener (or loopback TCP) with n
// gorilla clients. Client i (0-based) holds fd i+1. Each client has a drainer
// goroutine that reads raw bytes (no frame parsing: that would be client
// work, not hub work) and counts them, so the hub's writers never block and
// the benchmarks can tell when what they queued has been written.
type fixture struct {
	hub    *bridge.Hub
	srv    *http.Server
	ln     net.Listener
	served chan error

	clients  []net.Conn     // client ends of the pipes; clients[i] holds fd i+1
	perConn  []atomic.Int64 // bytes received by each client
	total    atomic.Int64   // bytes received by all clients
	want     atomic.Int64   // waitTotal's target; 0: nobody waits
	reached  chan struct{}  // a drainer got total to want
	drainers sync.WaitGroup
	once     sync.Once
}

// benchConfig is the hub's configuration for the benchmarks: the defaults,
// except that keepalive pings stay off the measurements and nothing is
// logged.
func benchConfig(n int) bridge.Config {
	return bridge.Config{
		MaxConnections: n,
		PingInterval:   time.Hour,
		Logger:         slog.New(slog.DiscardHandler),
		Sequence:       &bridge.CounterSequence{}, // fds 1, 2, 3, ... (see newFixture)
	}
}

// newFixture starts a hub, serves it over transport (pipe or tcp) and
// connects n clients to it, one at a time, so that client i gets fd i+1 (fds
// are handed out from 1 with NodeID 0 and benchConfig's CounterSequence). It registers the teardown with
// tb.Cleanup.
func newFixture(tb testing.TB, transport string, n int, cfg bridge.Config) *fixture {
	tb.Helper()
	hub, err := bridge.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{
		hub:     hub,
		srv:     &http.Server{Handler: hub, ReadHeaderTimeout: 10 * time.Second},
		served:  make(chan error, 1),
		perConn: make([]atomic.Int64, n),
		reached: make(chan struct{}, 1),
	}
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   256, // the clients only read the handshake response
		WriteBufferSize:  256,
	}
	url := "ws://mem/"
	switch transport {
	case pipe:
		ml := NewMemListener()
		f.ln, d.NetDialContext = ml, ml.Dial
	case tcp:
		if f.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			_ = hub.Shutdown(context.Background())
			tb.Fatal(err)
		}
		url = "ws://" + f.ln.Addr().String() + "/"
	default:
		tb.Fatalf("unknown transport %q", transport)
	}
	go func() { f.served <- f.srv.Serve(f.ln) }()
	tb.Cleanup(func() {
		if err := f.close(); err != nil {
			tb.Error(err)
		}
	})

	f.clients = make([]net.Conn, 0, n)
	for i := range n {
		ws, resp, err := d.Dial(url, nil)
		if err != nil {
			tb.Fatalf("dial client %d: %v", i, err)
		}
		_ = resp.Body.Close()
		nc := ws.NetConn()
		f.clients = append(f.clients, nc)
		f.drainers.Add(1)
		go f.drain(i, nc)
		// The 101 response is written before the fd is taken, so wait for
		// fd i+1 before dialing the next client: that pins client i to it.
		fd := int64(i + 1)
		deadline := time.Now().Add(10 * time.Second)
		for !hub.Check(fd) {
			if time.Now().After(deadline) {
				tb.Fatalf("client %d connected but fd %d is not open", i, fd)
			}
			runtime.Gosched()
		}
	}
	if got := hub.Stats().Connections; got != n {
		tb.Fatalf("hub holds %d connections, want %d", got, n)
	}
	if hub.Check(int64(n + 1)) {
		tb.Fatalf("fd %d is open with only %d clients", n+1, n)
	}
	return f
}

func (f *fixture) drain(i int, nc net.Conn) {
	defer f.drainers.Done()
	buf := make([]byte, 512)
	for {
		k, err := nc.Read(buf)
		if k > 0 {
			f.perConn[i].Add(int64(k))
			t := f.total.Add(int64(k))
			if w := f.want.Load(); w > 0 && t >= w && f.want.CompareAndSwap(w, 0) {
				f.reached <- struct{}{}
			}
		}
		if err != nil {
			return
		}
	}
}

// waitTotal blocks until the clients have received at least want bytes.
// It sleeps on a channel that the drainer crossing want signals, instead of
// spinning: a spinning waiter would take one of the 2 cores from the writers.
func (f *fixture) waitTotal(want int64, timeout time.Duration) error {
	f.want.Store(want)
	if f.total.Load() >= want && f.want.CompareAndSwap(want, 0) {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.reached:
		return nil
	case <-t.C:
	}
	if !f.want.CompareAndSwap(want, 0) {
		<-f.reached // a drainer reached want just now
		return nil
	}
	return fmt.Errorf("clients received %d bytes, want %d", f.total.Load(), want)
}

// close drops the clients (each server-side reader sees EOF and ends its
// connection), shuts the hub down, stops the server and waits for every
// goroutine the fixture started.
func (f *fixture) close() error {
	var errs []error
	f.once.Do(func() {
		for _, c := range f.clients {
			_ = c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := f.hub.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("hub shutdown: %w", err))
		}
		_ = f.srv.Close()
		if err := <-f.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
		f.drainers.Wait()
	})
	return errors.Join(errs...)
}

// frameLen is the length on the wire of an unmasked server frame carrying
// a payload of n bytes (RFC 6455 section 5.2).
func frameLen(n int) int64 {
	switch {
	case n <= 125:
		return int64(2 + n)
	case n <= 0xffff:
		return int64(4 + n)
	}
	return int64(10 + n)
}

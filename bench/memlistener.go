// Package bench holds the bridge's benchmarks (hub_bench_test.go) and the
// helpers they share. The idle-memory load tool is bench/idlemem. Figures and
// the commands that reproduce them are in docs/BENCHMARKS.md.
package bench

import (
	"context"
	"net"
	"sync"
)

// MemListener is a net.Listener whose connections are in-memory net.Pipe
// pairs: Dial hands the server end to Accept and returns the client end. It
// lets one process hold tens of thousands of WebSocket connections without a
// file descriptor per end, so benchmarks of the hub are not capped by the
// open-file limit (20,000 per process on the bench machines).
//
// net.Pipe is synchronous: a Write returns once a Read on the other end has
// taken the bytes, so every client end needs a goroutine that reads.
type MemListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewMemListener returns an open MemListener.
func NewMemListener() *MemListener {
	return &MemListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next Dial and returns the server end of its pipe.
func (l *MemListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Dial; pipes already handed out stay open.
func (l *MemListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns a placeholder address.
func (l *MemListener) Addr() net.Addr { return memAddr{} }

// Dial creates a pipe, waits until Accept has taken the server end and
// returns the client end. Its signature fits websocket.Dialer.NetDialContext
// and net/http's Transport.DialContext; network and addr are ignored.
func (l *MemListener) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		err := net.ErrClosed
		_, _ = server.Close(), client.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: err}
	case <-ctx.Done():
		_, _ = server.Close(), client.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: ctx.Err()}
	}
}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

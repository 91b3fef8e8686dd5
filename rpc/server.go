// Package rpc serves the Sender service to PHP (and any goridge v3 client)
// over TCP or a unix socket: Go's net/rpc with goridge's codec, behind a
// guard that refuses frames the service cannot answer.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	netrpc "net/rpc"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wsbridge/wsbridge/internal/config"
	"github.com/wsbridge/wsbridge/sender"
)

// Config configures a Server; zero fields take their documented defaults.
type Config struct {
	// Addr is tcp://host:port or unix:///path/to.sock.
	// Default tcp://127.0.0.1:6001.
	Addr string
	// SocketMode is the file mode of a unix socket. Default 0660.
	SocketMode fs.FileMode
	// MaxFrameSize bounds a request frame's payload. Default 32 MiB.
	MaxFrameSize int
	// MaxConnections bounds concurrent RPC connections; one past it gets an
	// error frame and is closed. Default 1024.
	MaxConnections int
	// MaxInFlight bounds the calls of one connection that are read and not
	// yet answered; past it the server stops reading that connection until
	// a reply is written. Each call in flight is a goroutine holding its
	// arguments and reply. Default 64: the PHP client and Client send one
	// call at a time per connection; goridge's Go client pipelines the
	// calls of concurrent goroutines, and 64 keeps a busy one from waiting.
	MaxInFlight int
	// WriteTimeout bounds each reply's write: a client that does not read
	// its replies (its socket buffers full) is disconnected after it.
	// Default 10s.
	WriteTimeout time.Duration
	// IdleTimeout, when positive, closes a connection whose next request
	// does not arrive whole within it (a second less at most; half of it
	// under two seconds). Default 0: off, since PHP workers keep their
	// connection open while idle for hours, dead peers are found by TCP
	// keepalive (or at once on a unix socket), and MaxConnections bounds
	// the rest; a connection closed while idle makes the next call of its
	// client reconnect.
	IdleTimeout time.Duration
	// ReadTimeout bounds the time a request takes to arrive once its first
	// byte has: a client that stalls or trickles in the middle of a frame
	// (a slowloris) is disconnected after it, whatever IdleTimeout says.
	// The wait between requests is IdleTimeout's alone. Default 10s.
	ReadTimeout time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every call the service answers (for
	// metrics). Default: none.
	Observer Observer
}

// Observer is told of every call the Sender service answers, just before
// the reply is written. method is the name called ("Sender.Push"), or
// MethodUnknown for one the service does not have; outcome is OutcomeOK,
// the code of the Error returned (sender.CodeBadRequest for arguments that do not
// decode), or OutcomeError for an error without a code; d runs from the
// request's header being read to the reply being ready. Frames the server
// refuses before decoding (bad headers, calls during shutdown) are not
// calls. Calls come from many goroutines at once.
type Observer interface {
	ObserveCall(method, outcome string, d time.Duration)
}

// Values of Observer's method and outcome beside the method names and the
// error codes.
const (
	MethodUnknown = "unknown"
	OutcomeOK     = "ok"
	OutcomeError  = "error"
)

// Defaults of Config.
const (
	DefaultAddr           = "tcp://127.0.0.1:6001"
	DefaultSocketMode     = 0o660
	DefaultMaxFrameSize   = 32 << 20
	DefaultMaxConnections = 1024
	DefaultMaxInFlight    = 64
	DefaultWriteTimeout   = 10 * time.Second
	DefaultReadTimeout    = 10 * time.Second
)

// Server serves the Sender service for one Hub.
type Server struct {
	cfg     Config
	log     *slog.Logger
	network string
	address string
	rpc     *netrpc.Server
	ln      net.Listener
	methods map[string]bool // "Sender.Push", ...: the names Observer sees as they are

	counters counters

	mu     sync.Mutex
	conns  map[*guard]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one per connection
}

// ParseAddr splits tcp://host:port or unix:///path into a network and an
// address for net.Listen.
func ParseAddr(addr string) (network, address string, err error) {
	u, err := url.Parse(addr)
	if err != nil {
		return "", "", fmt.Errorf("rpc address %q: %w", addr, err)
	}
	switch u.Scheme {
	case "tcp":
		if u.Host == "" || u.Path != "" {
			return "", "", fmt.Errorf("rpc address %q: want tcp://host:port", addr)
		}
		_, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			return "", "", fmt.Errorf("rpc address %q: %w", addr, err)
		}
		if _, err := net.LookupPort("tcp", port); err != nil {
			return "", "", fmt.Errorf("rpc address %q: bad port %q", addr, port)
		}
		return "tcp", u.Host, nil
	case "unix":
		p := u.Host + u.Path
		if p == "" {
			return "", "", fmt.Errorf("rpc address %q: want unix:///path/to.sock", addr)
		}
		return "unix", p, nil
	}
	return "", "", fmt.Errorf("rpc address %q: the scheme must be tcp:// or unix://", addr)
}

// New returns a Server that carries the calls of the Sender methods to svc;
// Listen binds it.
func New(svc *sender.Service, cfg Config) (*Server, error) {
	config.Default(&cfg.Addr, DefaultAddr)
	config.Default(&cfg.SocketMode, DefaultSocketMode)
	config.Default(&cfg.MaxFrameSize, DefaultMaxFrameSize)
	config.Default(&cfg.MaxConnections, DefaultMaxConnections)
	config.Default(&cfg.MaxInFlight, DefaultMaxInFlight)
	config.Default(&cfg.WriteTimeout, DefaultWriteTimeout)
	config.Default(&cfg.ReadTimeout, DefaultReadTimeout)
	config.Default(&cfg.Logger, slog.Default())
	if cfg.MaxFrameSize < 0 || cfg.MaxFrameSize > 1<<31 || cfg.MaxConnections < 0 || cfg.MaxInFlight < 0 ||
		cfg.WriteTimeout < 0 || cfg.IdleTimeout < 0 || cfg.ReadTimeout < 0 {
		return nil, errors.New("rpc: max frame size must be in 1..2GiB; max connections, max in flight and the timeouts positive")
	}
	network, address, err := ParseAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, network: network, address: address, conns: map[*guard]struct{}{}, methods: map[string]bool{}}
	for _, m := range Methods() {
		s.methods[m] = true
	}
	s.rpc = netrpc.NewServer()
	if err := s.rpc.RegisterName(ServiceName, &receiver{svc: svc, stats: s.connCount}); err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	return s, nil
}

// Listen binds the configured address. A stale unix socket file (nobody
// listening on it) is replaced; any other file at the path is an error.
func (s *Server) Listen() error {
	if s.network == "unix" {
		if err := removeStaleSocket(s.address); err != nil {
			return err
		}
	}
	ln, err := net.Listen(s.network, s.address)
	if err != nil {
		return fmt.Errorf("rpc: listen on %s: %w", s.cfg.Addr, err)
	}
	if s.network == "unix" {
		if err := os.Chmod(s.address, s.cfg.SocketMode); err != nil {
			ln.Close()
			return fmt.Errorf("rpc: chmod %s: %w", s.address, err)
		}
	} else if ip := net.ParseIP(strings.Trim(hostOf(ln.Addr().String()), "[]")); ip == nil || !ip.IsLoopback() {
		s.log.Warn("the RPC service listens beyond loopback: anyone who reaches it can push to every client",
			"addr", ln.Addr().String())
	}
	s.ln = ln
	return nil
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("rpc: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("rpc: %s is in use by another process", path)
	}
	return os.Remove(path)
}

// Addr returns the bound address in the Config's form (tcp://127.0.0.1:6001).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	if s.network == "unix" {
		return "unix://" + s.address
	}
	return "tcp://" + s.ln.Addr().String()
}

// Serve accepts connections until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve() error {
	if s.ln == nil {
		return errors.New("rpc: Serve before Listen")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("rpc accept", "err", err, "retry_in", delay.String())
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.serveConn(conn)
	}
}

func (s *Server) serveConn(conn net.Conn) {
	s.mu.Lock()
	if s.closed || len(s.conns) >= s.cfg.MaxConnections {
		full := !s.closed
		s.mu.Unlock()
		msg := sender.CodeShuttingDown + ": the bridge is shutting down"
		if full {
			s.counters.refusedConns.Add(1)
			msg = fmt.Sprintf("%s: too many RPC connections (limit %d)", sender.CodeBadRequest, s.cfg.MaxConnections)
			s.log.Warn("rpc: connection refused, limit reached", "limit", s.cfg.MaxConnections, "remote", conn.RemoteAddr().String())
		}
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(errorFrame(0x08, 0, "", msg))
		conn.Close()
		return
	}
	lim := limits{maxInFlight: int64(s.cfg.MaxInFlight), writeTimeout: s.cfg.WriteTimeout, idleTimeout: s.cfg.IdleTimeout, readTimeout: s.cfg.ReadTimeout,
		c: &s.counters, log: s.log}
	g := newGuard(conn, uint32(s.cfg.MaxFrameSize), lim, func(remote string, err error) {
		s.log.Warn("rpc: closing connection after a bad frame", "remote", remote, "err", err)
	})
	s.conns[g] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.rpc.ServeCodec(s.newCodec(g)) // returns once the client is gone; closes g
		s.mu.Lock()
		delete(s.conns, g)
		s.mu.Unlock()
	}()
}

// outcomeOf is the Observer's outcome of a reply's error text.
func outcomeOf(errText string) string {
	if errText == "" {
		return OutcomeOK
	}
	code, _, _ := strings.Cut(errText, ": ")
	if sender.IsCode(code) {
		return code
	}
	return OutcomeError
}

// Connections returns the number of open RPC connections.
func (s *Server) Connections() int { return s.connCount() }

// ServerStats are the RPC server's counters since it started.
type ServerStats struct {
	// Connections open, and calls in flight on them (read, not yet
	// answered; at most MaxInFlight per connection).
	Connections int `json:"connections"`
	InFlight    int `json:"in_flight"`
	// ConnectionsRefused: connections closed at once, MaxConnections open.
	ConnectionsRefused uint64 `json:"connections_refused"`
	// FramesRefused: request frames answered with a bad_request error
	// without being decoded (bad header, over MaxFrameSize, codec or flags
	// the service does not take); the fatal ones closed their connection.
	FramesRefused uint64 `json:"frames_refused"`
	// InFlightWaits: times a connection reached MaxInFlight and its
	// reading paused until a reply was written.
	InFlightWaits uint64 `json:"in_flight_waits"`
	// WriteTimeouts, IdleTimeouts and ReadTimeouts: connections closed
	// because a reply could not be written within WriteTimeout, because no
	// request arrived within IdleTimeout, or because a request begun did
	// not arrive whole within ReadTimeout.
	WriteTimeouts uint64 `json:"write_timeouts"`
	IdleTimeouts  uint64 `json:"idle_timeouts"`
	ReadTimeouts  uint64 `json:"read_timeouts"`
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		ConnectionsRefused: s.counters.refusedConns.Load(),
		FramesRefused:      s.counters.refusedFrames.Load(),
		InFlightWaits:      s.counters.inFlightWaits.Load(),
		WriteTimeouts:      s.counters.writeTimeouts.Load(),
		IdleTimeouts:       s.counters.idleTimeouts.Load(),
		ReadTimeouts:       s.counters.readTimeouts.Load(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Connections = len(s.conns)
	for g := range s.conns {
		st.InFlight += int(g.inflight.Load())
	}
	return st
}

func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, refuses new requests on open connections with a
// shutting_down error, lets the requests in flight finish, then closes every
// connection. At ctx's end the connections are closed at once. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close() // a unix listener removes its socket file
	}
	for g := range s.conns {
		g.closing.Store(true)
	}
	s.mu.Unlock()

	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
	for !s.idle() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
			continue
		}
		break
	}
	s.mu.Lock()
	for g := range s.conns {
		g.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// idle reports whether no request is in flight on any connection.
func (s *Server) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for g := range s.conns {
		if g.inflight.Load() > 0 {
			return false
		}
	}
	return true
}

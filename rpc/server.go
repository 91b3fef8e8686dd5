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

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/config"
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
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every call the service answers (for
	// metrics). Default: none.
	Observer Observer
}

// Observer is told of every call the Sender service answers, just before
// the reply is written. method is the name called ("Sender.Push"), or
// MethodUnknown for one the service does not have; outcome is OutcomeOK,
// the code of the Error returned (CodeBadRequest for arguments that do not
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

// New returns a Server for hub; Listen binds it.
func New(hub *bridge.Hub, cfg Config) (*Server, error) {
	config.Default(&cfg.Addr, DefaultAddr)
	config.Default(&cfg.SocketMode, DefaultSocketMode)
	config.Default(&cfg.MaxFrameSize, DefaultMaxFrameSize)
	config.Default(&cfg.MaxConnections, DefaultMaxConnections)
	config.Default(&cfg.Logger, slog.Default())
	if cfg.MaxFrameSize < 0 || cfg.MaxFrameSize > 1<<31 || cfg.MaxConnections < 0 {
		return nil, errors.New("rpc: max frame size must be in 1..2GiB and max connections positive")
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
	if err := s.rpc.RegisterName(ServiceName, &sender{svc: NewService(hub), stats: s.connCount}); err != nil {
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
	g := newGuard(conn, uint32(s.cfg.MaxFrameSize), func(remote string, err error) {
		s.log.Warn("rpc: closing connection after a bad frame", "remote", remote, "err", err)
	})
	s.mu.Lock()
	if s.closed || len(s.conns) >= s.cfg.MaxConnections {
		full := !s.closed
		s.mu.Unlock()
		msg := CodeShuttingDown + ": the bridge is shutting down"
		if full {
			msg = fmt.Sprintf("%s: too many RPC connections (limit %d)", CodeBadRequest, s.cfg.MaxConnections)
			s.log.Warn("rpc: connection refused, limit reached", "limit", s.cfg.MaxConnections, "remote", conn.RemoteAddr().String())
		}
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = g.writeFrame(errorFrame(0x08, 0, "", msg))
		conn.Close()
		return
	}
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
	switch code {
	case CodeBadRequest, CodeInvalidFD, CodeInvalidOpcode, CodeTooLarge, CodeInvalidUTF8, CodeInvalidCloseCode,
		CodeInvalidName, CodeTooManyGroups, CodeShuttingDown, CodeInternal:
		return code
	}
	return OutcomeError
}

// Connections returns the number of open RPC connections.
func (s *Server) Connections() int { return s.connCount() }

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

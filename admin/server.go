package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/config"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// Config configures a Server; zero fields take their documented defaults.
type Config struct {
	// Addr is the listen address, host:port. Default DefaultAddr
	// (loopback only).
	Addr string
	// Token is the bearer token of every route but /healthz and /readyz.
	// Empty: those routes are off (503 token_not_set).
	Token string
	// Pprof serves net/http/pprof under /debug/pprof/ (behind the token).
	Pprof bool
	// MaxBody bounds a request body, in bytes; a larger one is refused
	// with 413 too_large. Default DefaultMaxBody.
	MaxBody int64
	// Gatherer is what GET /metrics exposes. Default: an empty registry.
	Gatherer prometheus.Gatherer
	// ReadyCheck, when set, is asked by GET /readyz once the Server is
	// marked ready; an error makes it answer 503 with the error's text.
	ReadyCheck func(context.Context) error
	// Nodes, when set (cluster mode), lists the cluster's nodes for GET
	// /v1/nodes; unset, the route lists this node alone.
	Nodes func(context.Context) ([]NodeInfo, error)
	// Logger receives the access log and the Server's own logs. Default
	// slog.Default().
	Logger *slog.Logger
	// TLS, when set, makes the Server serve HTTPS with it (its
	// GetCertificate may change the certificate while the Server runs).
	// Nil: plain HTTP.
	TLS *tls.Config
	// Build and Settings are what GET /v1/about (the console's overview)
	// shows of the binary and of its configuration; Settings must hold
	// no secret in clear.
	Build    BuildInfo
	Settings []Setting
	// StreamInterval is the time between two samples of GET /v1/stream.
	// Default DefaultStreamInterval.
	StreamInterval time.Duration
	// MaxViewers bounds the GET /v1/stream responses at once. Default
	// DefaultMaxViewers.
	MaxViewers int
}

// Defaults of Config.
const (
	DefaultAddr    = "127.0.0.1:9503"
	DefaultMaxBody = rpc.DefaultMaxFrameSize // the RPC service's own request bound
)

// Bounds of one admin request on the wire.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 2 * time.Minute // above pprof's default 30 s profile
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	readyCheckTimeout = 5 * time.Second
)

// Readiness states.
const (
	stateStarting int32 = iota
	stateReady
	stateStopping
)

// Server is the admin HTTP server of one Hub.
type Server struct {
	cfg     Config
	log     *slog.Logger
	hub     *bridge.Hub
	svc     *sender.Service
	handler http.Handler
	srv     *http.Server
	state   atomic.Int32
	started time.Time
	ui      fs.FS
	streams streamHub

	mu     sync.Mutex
	ln     net.Listener
	closed bool
}

// New returns a Server for hub; Listen binds it. It is not ready (GET
// /readyz answers 503) until SetReady.
func New(hub *bridge.Hub, svc *sender.Service, cfg Config) (*Server, error) {
	config.Default(&cfg.Addr, DefaultAddr)
	config.Default(&cfg.MaxBody, DefaultMaxBody)
	if cfg.MaxBody < 0 {
		return nil, errors.New("admin: max body must be positive")
	}
	config.Default(&cfg.Logger, slog.Default())
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	config.Default(&cfg.StreamInterval, DefaultStreamInterval)
	config.Default(&cfg.MaxViewers, DefaultMaxViewers)
	if cfg.StreamInterval < 0 || cfg.MaxViewers < 0 {
		return nil, errors.New("admin: stream interval and max viewers must be positive")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hub: hub, svc: svc, started: time.Now(), ui: uiFS()}
	gatherer := cfg.Gatherer
	s.streams = streamHub{interval: cfg.StreamInterval, max: cfg.MaxViewers, sample: func() []byte { return sampleEvent(gatherer) }}
	s.handler = s.routes()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	s.srv.RegisterOnShutdown(s.streams.close) // the streams never end on their own
	return s, nil
}

// Handler returns the Server's routes, for tests and for mounting
// elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// routes builds the router: the probes open, the rest behind the token.
func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(RequestIDMiddleware, AccessLog(s.log), Recoverer(s.log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, sender.CodeNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, sender.CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
	})
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	s.uiRoutes(r)
	r.Group(func(r chi.Router) {
		r.Use(BearerAuth(s.cfg.Token))
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}))
		if s.cfg.Pprof {
			r.Mount("/debug/pprof", pprofRoutes())
		}
		r.Mount("/v1", s.v1())
	})
	return r
}

// pprofRoutes serves net/http/pprof; its handlers read the profile name
// from the full path.
func pprofRoutes() chi.Router {
	r := chi.NewRouter()
	r.Get("/", pprof.Index)
	r.Get("/cmdline", pprof.Cmdline)
	r.Get("/profile", pprof.Profile)
	r.Get("/symbol", pprof.Symbol)
	r.Post("/symbol", pprof.Symbol)
	r.Get("/trace", pprof.Trace)
	r.Get("/{profile}", pprof.Index) // heap, goroutine, allocs, block, mutex, threadcreate
	return r
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	notReady := func(reason string) {
		writeJSON(w, r, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": reason})
	}
	switch s.state.Load() {
	case stateStarting:
		notReady("starting")
		return
	case stateStopping:
		notReady("shutting down")
		return
	}
	if check := s.cfg.ReadyCheck; check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
		defer cancel()
		if err := check(ctx); err != nil {
			notReady(err.Error())
			return
		}
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
}

// isReady is what GET /readyz would answer, for the wsbridge_ready gauge.
func (s *Server) isReady() bool {
	if s.state.Load() != stateReady {
		return false
	}
	if check := s.cfg.ReadyCheck; check != nil {
		ctx, cancel := context.WithTimeout(context.Background(), readyCheckTimeout)
		defer cancel()
		return check(ctx) == nil
	}
	return true
}

// SetReady makes GET /readyz answer 200 (unless the ReadyCheck fails):
// the bridge is listening. It has no effect once SetStopping was called.
func (s *Server) SetReady() { s.state.CompareAndSwap(stateStarting, stateReady) }

// SetStopping makes GET /readyz answer 503 from now on: the bridge is
// shutting down. The other routes keep serving until Shutdown.
func (s *Server) SetStopping() { s.state.Store(stateStopping) }

// Listen binds the configured address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS) // the handshake runs under the read timeouts
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addr returns the bound address (host:port), or the configured one
// before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Serve serves requests until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln, closed := s.ln, s.closed
	s.mu.Unlock()
	if ln == nil {
		return errors.New("admin: Serve before Listen")
	}
	if closed {
		return nil
	}
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Shutdown marks the Server stopping, stops accepting, and waits for the
// requests under way to be answered; at ctx's end it closes the remaining
// connections at once and returns ctx.Err(). Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetStopping()
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	_ = ln.Close() // in case Serve never ran
	return err
}

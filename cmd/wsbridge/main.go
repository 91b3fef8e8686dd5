// Command wsbridge holds the WebSocket connections of a PHP application and
// lets it push to any connection by fd. Run it with no flags for the
// defaults; --help lists every setting and its WSBRIDGE_* variable.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/tlsreload"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit code: 0 after a clean stop,
// 1 on a runtime failure, 2 on invalid configuration.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if code, ok := subcommand(args, lookupEnv, stdout, stderr); ok {
		return code
	}
	cfg, err := parseConfig(args, lookupEnv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge: %v\nRun 'wsbridge --help' for the settings.\n", err)
		return 2
	}
	ctx, stopRun := context.WithCancel(ctx) // a node that lost its cluster id stops
	defer stopRun()
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	slog.SetDefault(log) // net/rpc logs through the standard logger
	cfg.Bridge.Logger = log
	cfg.RPC.Logger = log

	// The certificates load before anything listens: a bad file is a
	// configuration error. From here SIGHUP reloads them (and never stops
	// the process); their files are watched for changes.
	wsCert, adminCert, err := loadCerts(&cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge: %v\nRun 'wsbridge --help' for the settings.\n", err)
		return 2
	}
	var certs []*tlsreload.Reloader
	for _, c := range []*tlsreload.Reloader{wsCert, adminCert} {
		if c != nil {
			certs = append(certs, c)
		}
	}
	stopReload := watchCerts(log, certs)
	defer stopReload()

	// Metrics exist when someone can read them: the admin server is on
	// and has a token. A registry per process, not the global one.
	var metrics *admin.Metrics
	if cfg.adminOn() && cfg.Admin.Token != "" {
		reg := admin.NewRegistry()
		if metrics, err = admin.NewMetrics(reg); err != nil {
			fmt.Fprintf(stderr, "wsbridge: metrics: %v\n", err)
			return 1
		}
		cfg.Admin.Gatherer = reg
		cfg.RPC.Observer = metrics
		cfg.Events.Observer = metrics
		if len(certs) > 0 {
			if err := metrics.WatchCerts(certs...); err != nil {
				log.Error("metrics", "err", err) // a bug: the collector is registered once
			}
		}
	}
	if adminCert != nil {
		cfg.Admin.TLS = adminCert.ServerConfig()
	}

	// In a cluster the node id is claimed first: the events carry it.
	var claimLost atomic.Bool
	member, err := joinCluster(ctx, &cfg, log, func(err error) {
		log.Error("this node lost its cluster node id: stopping", "err", err)
		claimLost.Store(true)
		stopRun()
	})
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge: %v\n", err)
		return 1
	}
	disp, err := startEvents(&cfg, log)
	if err != nil {
		leaveCluster(context.Background(), log, member)
		fmt.Fprintf(stderr, "wsbridge: %v\n", err)
		return 2
	}
	if member != nil {
		var post func(int, []int64) int
		if disp != nil {
			post = disp.PostLost
		}
		cfg.Bridge.Listener = member.UseEvents(cfg.Bridge.Listener, post)
	}
	hub, err := bridge.New(cfg.Bridge)
	if err != nil {
		leaveCluster(context.Background(), log, member)
		stopEvents(context.Background(), log, disp)
		fmt.Fprintf(stderr, "wsbridge: %v\n", err)
		return 2
	}
	if disp != nil {
		disp.SetCloser(hub)
	}
	bc := hub.Config()
	warnFDLimit(log, bc.MaxConnections)
	releaseDone := make(chan struct{})
	go func() {
		defer close(releaseDone)
		releaseAfterBursts(ctx, hub, cfg.ReleaseMemory, freeOSMemory)
	}()
	defer func() { stopRun(); <-releaseDone }()

	// abandon stops what has started, in the shutdown's order, when the
	// rest cannot start (the cluster's node id is released at once).
	abandon := func(ln net.Listener, rpcSrv *rpc.Server) {
		if ln != nil {
			ln.Close()
		}
		if rpcSrv != nil {
			_ = rpcSrv.Shutdown(context.Background())
		}
		_ = hub.Shutdown(context.Background())
		stopEvents(context.Background(), log, disp)
		leaveCluster(context.Background(), log, member)
	}
	ln, err := net.Listen("tcp", cfg.WSAddr)
	if err != nil {
		log.Error("cannot listen for WebSocket connections", "addr", cfg.WSAddr, "err", err)
		abandon(nil, nil)
		return 1
	}
	if wsCert != nil {
		ln = tls.NewListener(ln, wsCert.ServerConfig()) // the handshake runs under the handshake timeout
		if bc.ReadMode == bridge.ReadModePoll {
			log.Warn("read-mode poll over TLS: every wss:// connection is read by a goroutine of its own, as in goroutine mode (counted in poll_fallbacks_total); terminate TLS in front of the bridge for the poll mode")
		}
	}
	svc := sender.NewService(hub) // the Sender API both transports carry
	if member != nil {
		if err := member.Start(ctx, hub, svc); err != nil {
			log.Error("cannot join the cluster's channels", "err", err)
			abandon(ln, nil)
			return 1
		}
		cfg.Admin.ReadyCheck = func(context.Context) error {
			if h := member.Health(); !h.Up {
				return fmt.Errorf("redis unavailable: %s", h.Reason)
			}
			return nil
		}
		cfg.Admin.Nodes = func(ctx context.Context) ([]admin.NodeInfo, error) {
			nodes, err := member.Nodes(ctx)
			out := make([]admin.NodeInfo, len(nodes))
			for i, n := range nodes {
				out[i] = admin.NodeInfo{ID: n.ID, Gen: n.Gen, Address: n.Address, Hostname: n.Hostname, PID: n.PID, Started: n.Started,
					Connections: n.Connections, HeartbeatAgeMillis: n.HeartbeatAge.Milliseconds(), Expired: n.Expired, Self: n.ID == member.ID()}
			}
			return out, err
		}
	}
	var rpcSrv *rpc.Server
	if cfg.rpcOn() {
		if rpcSrv, err = rpc.New(svc, cfg.RPC); err == nil {
			err = rpcSrv.Listen()
		}
		if err != nil {
			log.Error("cannot start the RPC service", "err", err)
			abandon(ln, nil)
			return 1
		}
	} else {
		log.Warn("RPC is off (WSBRIDGE_RPC_ADDR=off): nothing can push")
	}
	adminSrv, err := startAdmin(&cfg, log, hub, svc)
	if err != nil {
		log.Error("cannot start the admin server", "err", err)
		abandon(ln, rpcSrv)
		return 1
	}
	if metrics != nil && adminSrv != nil {
		if err := metrics.Watch(admin.Sources{Hub: hub, Events: disp, RPC: rpcSrv, Cluster: member, Admin: adminSrv}); err != nil {
			log.Error("metrics", "err", err) // a bug: the collector is registered once
		}
	}

	if member != nil {
		addr := "ws://" + ln.Addr().String()
		if rpcSrv != nil {
			addr = rpcSrv.Addr() // what another node's error names
		}
		if err := member.SetAddress(addr); err != nil {
			log.Warn("cannot record this node's address in the cluster", "err", err)
		}
	}
	srv := hub.Server()
	served := make(chan error, 3)
	running := 1
	go func() { served <- srv.Serve(ln) }()
	log.Info("websocket listening", "addr", ln.Addr().String(), "tls", wsCert != nil, "paths", bc.Paths, "node_id", bc.NodeID, "workers", bc.Workers, "read_mode", bc.ReadMode, "max_connections", bc.MaxConnections,
		"max_connections_per_ip", bc.MaxConnectionsPerIP, "max_handshakes", bc.MaxHandshakes, "accept_rate", bc.AcceptRate, "trusted_proxies", len(bc.TrustedProxies))
	if rpcSrv != nil {
		running++
		go func() { served <- rpcSrv.Serve() }()
		log.Info("rpc listening", "addr", rpcSrv.Addr())
	}
	if adminSrv != nil {
		running++
		go func() { served <- adminSrv.Serve() }()
		adminSrv.SetReady() // every listener is bound and served
		log.Info("admin listening", "addr", adminSrv.Addr(), "tls", adminCert != nil, "token_set", cfg.Admin.Token != "", "pprof", cfg.Admin.Pprof)
	}

	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case err := <-served:
		log.Error("a listener stopped", "err", err)
		code = 1
		running--
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	// Turn /readyz not-ready first, so that probes see the shutdown while
	// the admin API still serves. Stop accepting WebSocket connections:
	// the HTTP requests under way on that port (handshakes; anything else
	// is refused anyway) get a small slice of the budget, then their
	// connections are closed, so no idle client can hold the rest. Close
	// every client after its queued messages (RPC pushes in flight are
	// queued by then; later ones answer false); deliver the events still
	// pending, the close events of those clients included; only then stop
	// RPC, so the application's onClose handlers can still call the
	// bridge. All within the one deadline; the admin server stops last.
	if adminSrv != nil {
		adminSrv.SetStopping()
	}
	if claimLost.Load() {
		// The survivors report this node's connections closed (node_lost):
		// its own close events, and whatever else is pending, are dropped,
		// so that the application does not hear of each close twice.
		log.Warn("this node lost its cluster node id: the events of its connections are not delivered; the cluster reports them closed")
		done, cancelNow := context.WithCancel(context.Background())
		cancelNow()
		stopEvents(done, log, disp)
	}
	hctx, hcancel := context.WithTimeout(sctx, httpShutdownSlice(cfg.ShutdownTimeout))
	if err := srv.Shutdown(hctx); err != nil {
		log.Info("http requests still under way on the WebSocket port closed", "err", err)
		_ = srv.Close() // upgraded connections are the hub's: Close leaves them
	}
	hcancel()
	if err := hub.Shutdown(sctx); err != nil {
		log.Warn("shutdown deadline reached, remaining connections closed", "err", err)
	}
	stopEvents(sctx, log, disp)
	leaveCluster(sctx, log, member)
	if rpcSrv != nil {
		if err := rpcSrv.Shutdown(sctx); err != nil {
			log.Warn("rpc shutdown deadline reached, remaining RPC connections closed", "err", err)
		}
	}
	if adminSrv != nil {
		// Admin requests under way get at least adminGrace, even when
		// the deadline has passed: they finish, or get an answer (a push
		// to a closed hub delivers nothing: false or 0).
		actx, acancel := context.WithTimeout(context.Background(), max(time.Until(start.Add(cfg.ShutdownTimeout)), adminGrace))
		if err := adminSrv.Shutdown(actx); err != nil {
			log.Warn("admin shutdown deadline reached, remaining admin connections closed", "err", err)
		}
		acancel()
	}
	for ; running > 0; running-- {
		<-served // the serve loops have returned
	}
	log.Info("stopped", "took", time.Since(start).String())
	if claimLost.Load() {
		code = 1
	}
	return code
}

// joinCluster opens this node's membership of a cluster when
// WSBRIDGE_REDIS_URL is set: it claims the node id and gives the hub's
// config the cluster's fd sequence, Listener (the open-fd set in front of
// the events) and OnIndexChange. Standalone, node id auto is 0 and the
// result is nil.
func joinCluster(ctx context.Context, cfg *config, log *slog.Logger, claimLost func(error)) (*cluster.Member, error) {
	if !cfg.clusterOn() {
		if cfg.Bridge.NodeID == cluster.AutoNodeID {
			cfg.Bridge.NodeID = 0
		}
		return nil, nil
	}
	u, err := cluster.ParseURL(cfg.Cluster.URL)
	if err != nil {
		return nil, err
	}
	cc := cluster.Config{
		URL: u, Prefix: cfg.Cluster.Prefix, NodeID: cfg.Bridge.NodeID, Address: cfg.RPC.Addr,
		Timeout: cfg.Cluster.Timeout, TTL: cfg.Cluster.TTL, OnClaimLost: claimLost, Logger: log,
		BatchHold: cluster.BatchHoldSetting(cfg.Cluster.BatchHold), Link: cfg.Cluster.Link,
	}
	if o, ok := cfg.RPC.Observer.(cluster.Observer); ok {
		cc.Observer = o
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := cluster.Open(jctx, cc)
	if err != nil {
		return nil, fmt.Errorf("cannot join the cluster at %s: %w", u, err)
	}
	cfg.Bridge.NodeID = m.ID()
	cfg.Bridge.Sequence = m.Sequence()
	cfg.Bridge.OnIndexChange = m.OnIndexChange
	log.Info("cluster joined", "redis", u.String(), "prefix", cfg.Cluster.Prefix, "node_id", m.ID())
	return m, nil
}

// leaveCluster leaves the cluster after the hub shut down (nil: standalone).
func leaveCluster(ctx context.Context, log *slog.Logger, m *cluster.Member) {
	if m == nil {
		return
	}
	if err := m.Close(ctx); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
}

// httpShutdownSlice is the part of the shutdown budget given to the HTTP
// requests under way on the WebSocket port: a tenth, at most a second.
// Handshakes take milliseconds; the rest of the budget is the clients'.
func httpShutdownSlice(budget time.Duration) time.Duration {
	return min(budget/10, time.Second)
}

// adminGrace is the least time the admin server has to answer the
// requests under way at shutdown.
const adminGrace = time.Second

// startAdmin creates the admin server and binds its address; it returns
// nil when the admin server is off.
func startAdmin(cfg *config, log *slog.Logger, hub *bridge.Hub, svc *sender.Service) (*admin.Server, error) {
	if !cfg.adminOn() {
		log.Info("the admin server is off (WSBRIDGE_ADMIN_ADDR=off): no health, readiness or metrics endpoints")
		return nil, nil
	}
	ac := cfg.Admin
	ac.Logger = log
	ac.Build = buildInfo()
	ac.Settings = consoleSettings(*cfg) // secrets masked
	srv, err := admin.New(hub, svc, ac)
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		return nil, err
	}
	// Never the token: only whether there is one.
	if ac.Token == "" {
		log.Warn("the admin token is not set (WSBRIDGE_ADMIN_TOKEN): /metrics, /v1 and pprof are off (503 token_not_set); /healthz and /readyz are served")
	} else if ip := net.ParseIP(hostOf(srv.Addr())); ac.TLS == nil && (ip == nil || !ip.IsLoopback()) {
		log.Warn("the admin API listens beyond loopback over plain HTTP: its token travels in clear; keep the port on a private network",
			"addr", srv.Addr())
	}
	return srv, nil
}

// loadCerts loads the certificate of each listener that has one; an error
// names the settings at fault.
func loadCerts(cfg *config, log *slog.Logger) (ws, adm *tlsreload.Reloader, err error) {
	load := func(name string, p tlsPair, flagPrefix string) (*tlsreload.Reloader, error) {
		if !p.on() {
			return nil, nil
		}
		r, err := tlsreload.New(tlsreload.Config{Name: name, CertFile: p.Cert, KeyFile: p.Key, Interval: cfg.TLSReloadInterval, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("invalid -%[1]stls-cert/-%[1]stls-key (%[2]s, %[3]s): %[4]w",
				flagPrefix, envName(flagPrefix+"tls-cert"), envName(flagPrefix+"tls-key"), err)
		}
		return r, nil
	}
	if ws, err = load("websocket", cfg.TLS, ""); err != nil {
		return nil, nil, err
	}
	if cfg.adminOn() {
		if adm, err = load("admin", cfg.AdminTLS, "admin-"); err != nil {
			return nil, nil, err
		}
	}
	return ws, adm, nil
}

// watchCerts reloads every certificate on SIGHUP and when its files
// change, until the returned stop is called. SIGHUP never stops the
// process, with or without certificates.
func watchCerts(log *slog.Logger, certs []*tlsreload.Reloader) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if len(certs) == 0 {
					log.Info("SIGHUP: no TLS certificate to reload")
					continue
				}
				log.Info("SIGHUP: reloading the TLS certificates", "certificates", len(certs))
				for _, c := range certs {
					_ = c.Reload() // a failure is logged and counted; the certificate in use stays
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// startEvents creates the events dispatcher when events or authorization
// are configured, and hooks it into the bridge's configuration. It returns
// nil when both are off.
func startEvents(cfg *config, log *slog.Logger) (*events.Dispatcher, error) {
	if !cfg.eventsOn() {
		return nil, nil
	}
	ec := cfg.Events
	ec.NodeID = cfg.Bridge.NodeID
	ec.Logger = log
	disp, err := events.New(ec)
	if err != nil {
		return nil, err
	}
	if ec.URL != "" {
		cfg.Bridge.Listener = disp
	}
	if ec.AuthURL != "" {
		cfg.Bridge.Authorize = disp.Authorize
	}
	dc := disp.Config()
	// Never the secret: only whether there is one.
	log.Info("events configured", "url", events.RedactURL(dc.URL), "auth_url", events.RedactURL(dc.AuthURL), "signed", dc.Secret != "",
		"concurrency", dc.Concurrency, "batch", dc.BatchSize, "queue_per_fd", dc.QueuePerFD,
		"queue_total", dc.QueueTotal, "queue_bytes", dc.QueueBytes, "overflow", string(dc.Overflow), "retries", dc.Retries)
	if dc.Secret == "" {
		log.Warn("events and authorization requests are not signed: set WSBRIDGE_EVENTS_SECRET so the application can verify they come from the bridge")
	}
	return disp, nil
}

// stopEvents drains the dispatcher (if any) within ctx and logs its counts.
func stopEvents(ctx context.Context, log *slog.Logger, disp *events.Dispatcher) {
	if disp == nil {
		return
	}
	err := disp.Shutdown(ctx)
	s := disp.Stats()
	log.Info("events stopped", "delivered", s.Delivered, "requests", s.Requests, "retries", s.Retries,
		"dropped_queue_fd", s.Dropped.QueueFD, "dropped_queue_total", s.Dropped.QueueTotal,
		"dropped_queue_bytes", s.Dropped.QueueBytes, "dropped_refused", s.Dropped.Refused,
		"dropped_poison", s.Dropped.Poison, "dropped_unopened", s.Dropped.Unopened,
		"dropped_shutdown", s.Dropped.Shutdown, "closed_overflow", s.Closed, "drained", err == nil)
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// warnFDLimit logs a warning when the process may not open enough files for
// the configured connection cap (Go raises the soft limit to the hard one at
// start; what is left is the real limit).
func warnFDLimit(log *slog.Logger, maxConns int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	const reserve = 64 // listeners, log files, RPC and admin sockets
	if rl.Cur < uint64(maxConns)+reserve {
		log.Warn("open file limit is below the connection cap: connections past it will fail to be accepted",
			"nofile_limit", rl.Cur, "max_connections", maxConns,
			"fix", "raise the limit (ulimit -n) or lower WSBRIDGE_MAX_CONNECTIONS")
	}
}

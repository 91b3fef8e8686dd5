package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/tlsreload"
	"github.com/wsbridge/wsbridge/rpc"
)

// config is everything the binary can be told, from flags and WSBRIDGE_*
// environment variables (a flag wins over its variable).
type config struct {
	WSAddr          string
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
	LogFormat       string
	Bridge          bridge.Config
	RPC             rpc.Config
	Events          events.Config
	Admin           admin.Config
	// TLS is the WebSocket listener's certificate (wss://), AdminTLS the
	// admin listener's (https://); empty pairs: plain TCP.
	TLS, AdminTLS     tlsPair
	TLSReloadInterval time.Duration
}

// tlsPair names a PEM certificate chain and its key.
type tlsPair struct{ Cert, Key string }

func (p tlsPair) on() bool { return p.Cert != "" || p.Key != "" }

// envName is the environment variable of a flag: ws-addr → WSBRIDGE_WS_ADDR.
func envName(flagName string) string {
	return "WSBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usageError is a configuration error: the binary exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseConfig reads args and then, for every flag not given, its
// environment variable; an empty variable counts as unset, as deployment
// files that substitute ${VAR} produce them. --help prints the settings to
// out and returns flag.ErrHelp.
func parseConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (config, error) {
	var c config
	b, ev := &c.Bridge, &c.Events
	fs := flag.NewFlagSet("wsbridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	fs.StringVar(&c.WSAddr, "ws-addr", ":9502", "WebSocket listen address (host:port)")
	fs.StringVar(&b.Path, "ws-path", "/", "URL path that accepts WebSocket upgrades")
	fs.Var(intRange(&b.NodeID, 0, 0, bridge.MaxNodeID), "node-id", "node id carried in the high bits of every fd (0..1023)")
	fs.Var(intRange(&b.Workers, 0, 0, 4096), "workers", "worker partitions for connections (0: number of CPUs)")
	fs.Var(intRange(&b.MaxConnections, bridge.DefaultMaxConnections, 1, 1<<30), "max-connections", "open connections cap; past it a handshake gets HTTP 503")
	fs.Var(intRange(&b.QueueSize, bridge.DefaultQueueSize, 1, 1<<20), "queue-size", "per-connection send queue bound, in messages")
	fs.Var(sizeVar(&b.QueueBytes, bridge.DefaultQueueBytes, 1), "queue-bytes", "per-connection send queue bound, in bytes (at least max-push-size)")
	fs.Var(choice((*string)(&b.Overflow), string(bridge.OverflowClose), string(bridge.OverflowClose), string(bridge.OverflowDrop)), "overflow-policy", "full send queue: close (close the client with 1008) or drop (refuse the push)")
	fs.Var(size64Var(&b.MaxMessageSize, bridge.DefaultMaxMessageSize, 1), "max-message-size", "largest message a client may send; larger closes it with 1009")
	fs.Var(sizeVar(&b.MaxPushSize, bridge.DefaultMaxPushSize, 1), "max-push-size", "largest message a push may send; larger is refused")
	fs.Var(sizeVar(&b.FragmentSize, 0, 0), "fragment-size", "send messages larger than this as frames of at most this size (0: one frame per message; else 125..1MiB)")
	fs.Var(durVar(&b.WriteTimeout, bridge.DefaultWriteTimeout), "write-timeout", "deadline for each write to a client")
	fs.Var(durVar(&b.PingInterval, bridge.DefaultPingInterval), "ping-interval", "how often each client is pinged")
	fs.Var(durVar(&b.PongTimeout, bridge.DefaultPongTimeout), "pong-timeout", "a client silent for ping-interval+pong-timeout is closed as dead")
	fs.Var(durVar(&b.HandshakeTimeout, bridge.DefaultHandshake), "handshake-timeout", "deadline for a client to complete the HTTP upgrade")
	fs.Var(durVar(&b.CloseTimeout, bridge.DefaultCloseTimeout), "close-timeout", "wait this long for a client's close frame after sending ours")
	fs.Var(durVar(&c.ShutdownTimeout, 10*time.Second), "shutdown-timeout", "on SIGTERM/SIGINT, flush queued messages and close clients within this time")
	fs.Var(listVar(&b.AllowedOrigins), "allowed-origins", "comma-separated Origin patterns allowed to connect, '*' wildcards (empty: same host only)")
	fs.BoolVar(&b.Compression, "compression", false, "negotiate permessage-deflate with clients that offer it")
	fs.Var(listVar(&b.Subprotocols), "subprotocols", "comma-separated WebSocket subprotocols the server accepts")
	fs.Var(size64Var(&b.MaxQueuedBytes, bridge.DefaultMaxQueuedBytes, 1), "max-queued-bytes", "bytes queued for all clients together (at least queue-bytes); near it the overflow policy applies to the largest queues first")
	fs.Var(durVar(&b.FragmentTimeout, bridge.DefaultFragmentTimeout), "fragment-timeout", "a fragmented message (finish=false) with no push for this long is aborted: the client is closed with 1011")
	fs.Var(intRange(&b.MaxGroupsPerConn, bridge.DefaultMaxGroups, 1, 1<<20), "max-groups-per-connection", "how many groups one connection may join")
	// Admission limits of the WebSocket port (bridge/admission.go).
	fs.Var(intRange(&b.MaxConnectionsPerIP, 0, 0, 1<<30), "max-connections-per-ip", "connections per client address (IPv6: per /64), open or being upgraded; past it a handshake gets HTTP 503 (0: no cap)")
	fs.Var(intRange(&b.MaxHandshakes, bridge.DefaultMaxHandshakes, 1, 1<<30), "max-handshakes", "connections accepted and not yet upgraded; past it a new connection gets HTTP 503 (over TLS: no answer) and is closed")
	fs.Var(rateVar(&b.AcceptRate, 0, 0), "accept-rate", "handshakes admitted per second; past it HTTP 429 with Retry-After (0: no limit)")
	fs.Var(intRange(&b.AcceptBurst, 0, 0, 1<<30), "accept-burst", "burst of accept-rate (0: accept-rate rounded up, at least 1)")
	fs.Var(prefixListVar(&b.TrustedProxies), "trusted-proxies", "comma-separated proxy networks (CIDR or address) whose X-Forwarded-For / X-Real-IP give the client address; empty: none")
	fs.Var(sizeVar(&b.MaxKeptHeaderBytes, bridge.DefaultMaxKeptHeaderBytes, 1), "max-kept-header-bytes", "handshake headers kept per connection for events and info; past it the largest less useful headers are dropped (at most 64KiB)")
	fs.StringVar(&c.RPC.Addr, "rpc-addr", rpc.DefaultAddr, "goridge RPC listen address: tcp://host:port or unix:///path.sock (off: no RPC)")
	fs.Var(modeVar(&c.RPC.SocketMode, rpc.DefaultSocketMode), "rpc-socket-mode", "file mode of the RPC unix socket (octal)")
	fs.Var(sizeVar(&c.RPC.MaxFrameSize, rpc.DefaultMaxFrameSize, 1024), "rpc-max-frame-size", "largest RPC request frame; larger closes that RPC connection")
	fs.Var(intRange(&c.RPC.MaxConnections, rpc.DefaultMaxConnections, 1, 1<<20), "rpc-max-connections", "concurrent RPC connections cap")
	fs.Var(intRange(&c.RPC.MaxInFlight, rpc.DefaultMaxInFlight, 1, 1<<16), "rpc-max-inflight", "calls read and not yet answered per RPC connection; past it the connection is not read until a reply is written")
	fs.Var(durVar(&c.RPC.WriteTimeout, rpc.DefaultWriteTimeout), "rpc-write-timeout", "deadline for each RPC reply's write; an RPC client that does not read its replies is disconnected after it")
	fs.Var(durVar(&c.RPC.ReadTimeout, rpc.DefaultReadTimeout), "rpc-read-timeout", "deadline for an RPC request to arrive whole once its first byte has; a client stalled mid-request is disconnected after it")
	fs.Var(offDurVar(&c.RPC.IdleTimeout), "rpc-idle-timeout", "close an RPC connection whose next request does not arrive within this time (0: never; PHP keeps idle connections open)")
	fs.Var(sizeVar(&b.ReadBufferSize, bridge.DefaultReadBuffer, 256), "read-buffer-size", "per-connection read buffer, 256..1MiB (held by every idle connection)")
	fs.Var(rateVar(&b.ClientMessageRate, bridge.DefaultClientMessageRate, bridge.RateUnlimited), "client-message-rate", "messages per second a client may send on average (0: no limit); past it client-rate-policy applies")
	fs.Var(intRange(&b.ClientMessageBurst, bridge.DefaultClientMessageBurst, 1, 1<<30), "client-message-burst", "messages a client may send at once above client-message-rate")
	fs.Var(rateSizeVar(&b.ClientByteRate, bridge.DefaultClientByteRate), "client-byte-rate", "message bytes (inflated) per second a client may send on average (0: no limit); past it client-rate-policy applies")
	fs.Var(size64Var(&b.ClientByteBurst, 0, 0), "client-byte-burst", "message bytes a client may send at once above client-byte-rate, at least max-message-size (0: the larger of 2MiB and max-message-size)")
	fs.Var(choice((*string)(&b.ClientRatePolicy), string(bridge.RatePolicyClose), string(bridge.RatePolicyClose), string(bridge.RatePolicyDrop)), "client-rate-policy", "a client message over its rate: close (close the client with 1008) or drop (drop the message, counted)")
	fs.StringVar(&ev.URL, "events-url", "", "URL that receives client events (open, message, close) by POST; empty: events off")
	fs.StringVar(&ev.Secret, "events-secret", "", "key of the HMAC-SHA256 signature of every events and auth request (prefer the variable: flags show in ps)")
	fs.StringVar(&ev.AuthURL, "events-auth-url", "", "URL asked by POST to authorize each WebSocket handshake; empty: no authorization")
	fs.Var(durVar(&ev.AuthTimeout, events.DefaultAuthTimeout), "events-auth-timeout", "deadline of an authorization request; past it the handshake gets HTTP 503")
	fs.Var(intRange(&ev.Concurrency, events.DefaultConcurrency, 1, 1024), "events-concurrency", "event requests in flight at once (connections to the events URL)")
	fs.Var(intRange(&ev.BatchSize, events.DefaultBatchSize, 1, 100000), "events-batch", "most events in one request")
	fs.Var(sizeVar(&ev.BatchBytes, events.DefaultBatchBytes, 1024), "events-batch-bytes", "most bytes of events in one request (a larger single event travels alone)")
	fs.Var(durVar(&ev.Timeout, events.DefaultTimeout), "events-timeout", "deadline of an event request; past it the request is retried")
	fs.Var(durVar(&ev.RetryMax, events.DefaultRetryMax), "events-retry-max", "longest pause between retries of an event request (backoff from 100ms, doubling)")
	fs.Var(intRange(&ev.Retries, events.DefaultRetries, 1, 1000), "events-retries", "retries of an event request before it is split (per connection, then per event); an event still failing alone while others succeed is dropped")
	fs.Var(intRange(&ev.QueuePerFD, events.DefaultQueuePerFD, 1, 1<<24), "events-queue-per-fd", "pending events per connection; past it events-overflow applies")
	fs.Var(intRange(&ev.QueueTotal, events.DefaultQueueTotal, 1, 1<<30), "events-queue-total", "pending events of all connections, one close event reserved per open connection included; past it messages follow events-overflow and handshakes get 503")
	fs.Var(sizeVar(&ev.QueueBytes, events.DefaultQueueBytes, 1), "events-queue-bytes", "encoded size of the pending events of all connections, 1KiB reserved per open connection for its close event included; past it messages follow events-overflow and handshakes get 503")
	fs.Var(choice((*string)(&ev.Overflow), string(events.OverflowClose), string(events.OverflowClose), string(events.OverflowDrop)), "events-overflow", "a message event that does not fit: close (drop it, close the client with 1013) or drop (drop it)")
	fs.StringVar(&c.Admin.Addr, "admin-addr", admin.DefaultAddr, "admin HTTP listen address (host:port): health, readiness, metrics, the /v1 API (off: no admin server)")
	fs.StringVar(&c.Admin.Token, "admin-token", "", "bearer token of /metrics, /v1 and pprof; empty: those are off, only /healthz and /readyz answer (prefer the variable: flags show in ps)")
	fs.BoolVar(&c.Admin.Pprof, "admin-pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin address (behind the token)")
	fs.Var(size64Var(&c.Admin.MaxBody, admin.DefaultMaxBody, 1024), "admin-max-body", "largest admin request body; larger is refused with 413")
	fs.StringVar(&c.TLS.Cert, "tls-cert", "", "PEM certificate chain (leaf first) of the WebSocket listener: with -tls-key it serves wss:// (empty: plain ws://)")
	fs.StringVar(&c.TLS.Key, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&c.AdminTLS.Cert, "admin-tls-cert", "", "PEM certificate chain of the admin listener: with -admin-tls-key it serves https:// (empty: plain http://)")
	fs.StringVar(&c.AdminTLS.Key, "admin-tls-key", "", "PEM private key of -admin-tls-cert")
	fs.Var(durVar(&c.TLSReloadInterval, tlsreload.DefaultInterval), "tls-reload-interval", "how often the certificate and key files are checked; a change is loaded once the files stay the same for one interval (SIGHUP: at once)")
	fs.Var(levelVar(&c.LogLevel), "log-level", "log level: debug, info, warn or error")
	fs.Var(choice(&c.LogFormat, "text", "text", "json"), "log-format", "log format: text or json")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, out)
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q (settings are flags or %s variables)", fs.Arg(0), envName("*"))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookupEnv(envName(f.Name)); ok && v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, usageError{err}
	}
	return c, c.check()
}

// check validates what single flags cannot: each error names its setting.
func (c config) check() error {
	var errs []error
	if err := checkHostPort(c.WSAddr); err != nil {
		errs = append(errs, fmt.Errorf("invalid value %q for -ws-addr (%s): %w", c.WSAddr, envName("ws-addr"), err))
	}
	if !strings.HasPrefix(c.Bridge.Path, "/") {
		errs = append(errs, fmt.Errorf("invalid value %q for -ws-path (%s): must start with /", c.Bridge.Path, envName("ws-path")))
	}
	if c.Bridge.QueueBytes < c.Bridge.MaxPushSize {
		errs = append(errs, fmt.Errorf("invalid value %d for -queue-bytes (%s): must be at least -max-push-size (%d)", c.Bridge.QueueBytes, envName("queue-bytes"), c.Bridge.MaxPushSize))
	}
	if b := c.Bridge; b.ClientByteRate > 0 && b.ClientByteBurst != 0 && b.ClientByteBurst < b.MaxMessageSize {
		errs = append(errs, fmt.Errorf("invalid value %d for -client-byte-burst (%s): must be at least -max-message-size (%d), or a message of that size could never pass", b.ClientByteBurst, envName("client-byte-burst"), b.MaxMessageSize))
	}
	if c.Bridge.MaxQueuedBytes < int64(c.Bridge.QueueBytes) {
		errs = append(errs, fmt.Errorf("invalid value %d for -max-queued-bytes (%s): must be at least -queue-bytes (%d)", c.Bridge.MaxQueuedBytes, envName("max-queued-bytes"), c.Bridge.QueueBytes))
	}
	if c.rpcOn() {
		if _, _, err := rpc.ParseAddr(c.RPC.Addr); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for -rpc-addr (%s): %w", c.RPC.Addr, envName("rpc-addr"), rpcAddrReason(c.RPC.Addr, err)))
		}
	}
	if c.RPC.MaxFrameSize > 1<<31 {
		errs = append(errs, fmt.Errorf("invalid value %d for -rpc-max-frame-size (%s): at most 2GiB", c.RPC.MaxFrameSize, envName("rpc-max-frame-size")))
	}
	if f := c.Bridge.FragmentSize; f != 0 && (f < 125 || f > bridge.MaxBufferSize) {
		errs = append(errs, fmt.Errorf("invalid value %d for -fragment-size (%s): must be 0 or 125..%d", f, envName("fragment-size"), bridge.MaxBufferSize))
	}
	if k := c.Bridge.MaxKeptHeaderBytes; k > bridge.MaxHeaderBytes {
		errs = append(errs, fmt.Errorf("invalid value %d for -max-kept-header-bytes (%s): at most %s", k, envName("max-kept-header-bytes"), formatSize(bridge.MaxHeaderBytes)))
	}
	if c.Bridge.AcceptBurst > 0 && c.Bridge.AcceptRate == 0 {
		errs = append(errs, fmt.Errorf("invalid value %d for -accept-burst (%s): needs -accept-rate (%s)", c.Bridge.AcceptBurst, envName("accept-burst"), envName("accept-rate")))
	}
	if r := c.Bridge.ReadBufferSize; r > bridge.MaxBufferSize {
		errs = append(errs, fmt.Errorf("invalid value %d for -read-buffer-size (%s): at most %d", r, envName("read-buffer-size"), bridge.MaxBufferSize))
	}
	for _, u := range []struct{ name, value string }{{"events-url", c.Events.URL}, {"events-auth-url", c.Events.AuthURL}} {
		if u.value == "" {
			continue
		}
		if err := events.CheckURL(u.value); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for -%s (%s): %w (want http:// or https:// with a host)", events.RedactURL(u.value), u.name, envName(u.name), err))
		}
	}
	if c.Events.URL != "" {
		// Each open connection holds room for its close event.
		if c.Events.QueueTotal <= c.Bridge.MaxConnections {
			errs = append(errs, fmt.Errorf("invalid value %d for -events-queue-total (%s): must exceed -max-connections (%d): each open connection reserves one event for its close",
				c.Events.QueueTotal, envName("events-queue-total"), c.Bridge.MaxConnections))
		}
		if c.Events.QueueBytes <= c.Bridge.MaxConnections*events.MaxCloseEventSize {
			errs = append(errs, fmt.Errorf("invalid value %d for -events-queue-bytes (%s): must exceed -max-connections (%d) times %d bytes: each open connection reserves that for its close event",
				c.Events.QueueBytes, envName("events-queue-bytes"), c.Bridge.MaxConnections, events.MaxCloseEventSize))
		}
	}
	if c.adminOn() {
		if err := checkHostPort(c.Admin.Addr); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for -admin-addr (%s): %w", c.Admin.Addr, envName("admin-addr"), err))
		}
	}
	for _, p := range []struct {
		pair      tlsPair
		cert, key string
	}{{c.TLS, "tls-cert", "tls-key"}, {c.AdminTLS, "admin-tls-cert", "admin-tls-key"}} {
		if (p.pair.Cert == "") != (p.pair.Key == "") {
			errs = append(errs, fmt.Errorf("-%s (%s) and -%s (%s) go together: set both or neither", p.cert, envName(p.cert), p.key, envName(p.key)))
		}
	}
	if c.AdminTLS.on() && !c.adminOn() {
		errs = append(errs, fmt.Errorf("-admin-tls-cert (%s) is set but the admin server is off (-admin-addr %q)", envName("admin-tls-cert"), c.Admin.Addr))
	}
	if err := checkToken(c.Admin.Token); err != nil {
		// Never the value: it is a secret.
		errs = append(errs, fmt.Errorf("invalid value for -admin-token (%s): %w", envName("admin-token"), err))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

// rpcAddrReason is the reason of rpc.ParseAddr's error without its
// "rpc address %q: " prefix, which the setting's own message replaces.
// Most of its errors wrap nothing, so errors.Unwrap alone gave nil (and
// the message "%!w(<nil>)").
func rpcAddrReason(addr string, err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("rpc address %q: ", addr)))
}

// adminOn reports whether the admin server is configured ("off" or an
// empty -admin-addr turns it off).
func (c config) adminOn() bool { return c.Admin.Addr != "" && c.Admin.Addr != "off" }

// minTokenLength is the shortest admin token accepted: the token guards
// pushes to every client.
const minTokenLength = 16

// checkToken accepts an empty token (the protected routes are off) or one
// of at least minTokenLength visible ASCII characters (it travels in an
// HTTP header).
func checkToken(token string) error {
	if token == "" {
		return nil
	}
	if len(token) < minTokenLength {
		return fmt.Errorf("too short: at least %d characters", minTokenLength)
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] > '~' {
			return errors.New("only visible ASCII characters, no spaces")
		}
	}
	return nil
}

// eventsOn reports whether the events package is needed: to deliver events,
// to authorize handshakes, or both.
func (c config) eventsOn() bool { return c.Events.URL != "" || c.Events.AuthURL != "" }

// rpcOn reports whether the RPC service is configured ("off" or an empty
// -rpc-addr turns it off).
func (c config) rpcOn() bool { return c.RPC.Addr != "" && c.RPC.Addr != "off" }

// checkHostPort accepts host:port with a port a listener can bind (a number
// in 0..65535 or a service name).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: wsbridge [flags]\n\nEvery flag can also be set by its environment variable; a flag wins.\n\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(out, "  -%s  (%s, default %s)\n      %s\n", f.Name, envName(f.Name), def, f.Usage)
	})
}

// The flag.Value types below validate as they parse, so an error names the
// setting it came from.

type intValue struct {
	p        *int
	min, max int
}

func intRange(p *int, def, min, max int) *intValue {
	*p = def
	return &intValue{p, min, max}
}
func (v *intValue) String() string {
	if v == nil || v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	if n < v.min || n > v.max {
		return fmt.Errorf("out of range %d..%d", v.min, v.max)
	}
	*v.p = n
	return nil
}

type sizeValue struct {
	set func(int64)
	get func() int64
	min int64
}

func sizeVar(p *int, def int, min int64) *sizeValue {
	*p = def
	return &sizeValue{set: func(n int64) { *p = int(n) }, get: func() int64 { return int64(*p) }, min: min}
}

func size64Var(p *int64, def int64, min int64) *sizeValue {
	*p = def
	return &sizeValue{set: func(n int64) { *p = n }, get: func() int64 { return *p }, min: min}
}

func (v *sizeValue) String() string {
	if v == nil || v.get == nil {
		return "0"
	}
	return formatSize(v.get())
}
func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n < v.min {
		return fmt.Errorf("must be at least %d", v.min)
	}
	v.set(n)
	return nil
}

// maxSize keeps sizes within what an int holds on every platform we build.
const maxSize = 1 << 40

// parseSize reads a byte count: a plain integer, or one with a binary
// suffix (KiB, MiB, GiB; K, M, G and KB, MB, GB mean the same).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("not a size (bytes, or with KiB, MiB, GiB)")
	}
	if n > maxSize/mult {
		return 0, fmt.Errorf("too large (at most %s)", formatSize(maxSize))
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// rateSizeVar is a byte rate: a size, 0 for no limit (bridge.RateUnlimited).
func rateSizeVar(p *int64, def int64) *sizeValue {
	*p = def
	return &sizeValue{
		set: func(n int64) {
			*p = n
			if n == 0 {
				*p = bridge.RateUnlimited
			}
		},
		get: func() int64 { return max(*p, 0) },
	}
}

// rateValue is a rate per second: a number from 0 to MaxInt32, 0 for no
// limit, stored as off (0, or bridge.RateUnlimited where 0 means the
// default).
type rateValue struct {
	p   *float64
	off float64
}

func rateVar(p *float64, def, off float64) *rateValue {
	*p = def
	return &rateValue{p, off}
}
func (v *rateValue) String() string {
	if v == nil || v.p == nil || *v.p < 0 {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}
func (v *rateValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number (per second, like 50 or 0.5; 0: no limit)")
	}
	if f < 0 || f > math.MaxInt32 {
		return fmt.Errorf("out of range 0..%d", math.MaxInt32)
	}
	*v.p = f
	if f == 0 {
		*v.p = v.off
	}
	return nil
}

type modeValue struct{ p *fs.FileMode }

func modeVar(p *fs.FileMode, def fs.FileMode) *modeValue {
	*p = def
	return &modeValue{p}
}
func (v *modeValue) String() string {
	if v == nil || v.p == nil {
		return "0"
	}
	return fmt.Sprintf("%#o", uint32(*v.p))
}
func (v *modeValue) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	if err != nil || n == 0 || n > 0o777 {
		return errors.New("not a file mode (octal, like 0660)")
	}
	*v.p = fs.FileMode(n)
	return nil
}

type durValue struct {
	p      *time.Duration
	zeroOK bool // 0 means off
}

func durVar(p *time.Duration, def time.Duration) *durValue {
	*p = def
	return &durValue{p: p}
}

// offDurVar is a duration whose default, 0, means off.
func offDurVar(p *time.Duration) *durValue {
	*p = 0
	return &durValue{p: p, zeroOK: true}
}
func (v *durValue) String() string {
	if v == nil || v.p == nil {
		return "0s"
	}
	return v.p.String()
}
func (v *durValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration (like 500ms, 10s, 1m)")
	}
	if d < 0 || d == 0 && !v.zeroOK {
		if v.zeroOK {
			return errors.New("must be positive, or 0 for off")
		}
		return errors.New("must be positive")
	}
	*v.p = d
	return nil
}

type choiceValue struct {
	p       *string
	choices []string
}

func choice(p *string, def string, choices ...string) *choiceValue {
	*p = def
	return &choiceValue{p, choices}
}
func (v *choiceValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}
func (v *choiceValue) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(v.choices, ", "))
}

type listValue struct{ p *[]string }

func listVar(p *[]string) *listValue { return &listValue{p} }
func (v *listValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}
func (v *listValue) Set(s string) error {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	*v.p = out
	return nil
}

// prefixListValue is a comma-separated list of networks: CIDRs, or single
// addresses (a /32 or /128).
type prefixListValue struct{ p *[]netip.Prefix }

func prefixListVar(p *[]netip.Prefix) *prefixListValue { return &prefixListValue{p} }
func (v *prefixListValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	parts := make([]string, len(*v.p))
	for i, p := range *v.p {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}
func (v *prefixListValue) Set(s string) error {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			if p.Addr().Zone() != "" {
				return fmt.Errorf("%q: a network has no zone", part)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("%q is not a network (CIDR like 10.0.0.0/8) or an address", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	*v.p = out
	return nil
}

type levelValue struct{ p *slog.Level }

func levelVar(p *slog.Level) *levelValue { return &levelValue{p} }
func (v *levelValue) String() string {
	if v == nil || v.p == nil {
		return "info"
	}
	return strings.ToLower(v.p.String())
}
func (v *levelValue) Set(s string) error {
	var l slog.Level
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return errors.New("must be one of debug, info, warn, error")
	}
	*v.p = l
	return nil
}

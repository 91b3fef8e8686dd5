package main

import (
	"io/fs"
	"log/slog"
	"net/netip"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/tlsreload"
	"github.com/wsbridge/wsbridge/rpc"
)

// A setting is one row of the settings table: everything the binary knows
// about one flag. Its variable is derived (envName).
type setting struct {
	name    string // flag name, like ws-addr; the variable is WSBRIDGE_WS_ADDR
	group   string // section of --help and the README
	help    string
	kind    binder // the field it sets, its parser, default and single-setting rule
	secret  bool   // masked in the effective config, never quoted in errors
	example string // a valid value other than the default: the config tests set it
}

// Sections of --help and the README, in the order they are printed.
const (
	groupListener = "WebSocket listener"
	groupTimeouts = "Client timeouts and shutdown"
	groupQueues   = "Send queues and pushes"
	groupAdmit    = "Admission (the WebSocket port's limits)"
	groupRates    = "Client message rates"
	groupRPC      = "RPC (PHP pushes over goridge)"
	groupEvents   = "Events to the PHP application"
	groupAdmin    = "Admin HTTP server"
	groupTLS      = "TLS"
	groupCluster  = "Cluster (several nodes through Redis)"
	groupLog      = "Logging"
)

// settings is the one table of the binary's settings. Flag registration,
// the WSBRIDGE_* lookup, --help, the README table, the effective config
// (effectiveSettings) and the config tests are all derived from it.
//
// Adding a setting is one entry here plus its field in config (or in a
// package's Config). The kind names the field and gives the default:
//
//	{name: "redis-prefix", group: groupCluster, example: "app1",
//		help: "prefix of every Redis key and channel",
//		kind: str(func(c *config) *string { return &c.Cluster.Prefix }, "wsbridge")},
//
// A string that is off when unset is str with the default "" and a rule
// that accepts "" (events-url); an int that may also be the word auto is
// intOr (kinds.go). Another syntax is a new kind: a parse and a format
// function. A rule about this setting alone goes on its kind
// (.rule(check, refused values...)); a rule between settings goes into
// crossChecks (config.go). The example and the refused values are what
// TestSettingsTable sets; the README block is regenerated with
// WSBRIDGE_UPDATE_README=1 go test ./cmd/wsbridge -run TestREADMESettings.
var settings = []setting{
	{name: "ws-addr", group: groupListener, example: "127.0.0.1:9000",
		help: "WebSocket listen address (host:port)",
		kind: str(func(c *config) *string { return &c.WSAddr }, ":9502").rule(checkHostPort, "nope", "127.0.0.1", "127.0.0.1:99999")},
	{name: "ws-path", group: groupListener, example: "/ws,/chat",
		help: "comma-separated URL paths that accept WebSocket upgrades (each may have a controller of its own in the application: its events carry the path)",
		kind: list(func(c *config) *[]string { return &c.Bridge.Paths }).withDefault([]string{"/"}).rule(checkPaths, "ws", "/a,b")},
	{name: "workers", group: groupListener, example: "3",
		help: "worker partitions for connections (0: number of CPUs)",
		kind: intIn(func(c *config) *int { return &c.Bridge.Workers }, 0, 0, 4096)},
	{name: "flushers", group: groupListener, example: "2",
		help: "goroutines that write broadcasts and pushes, each for a share of the workers; fewer gather more messages per write (0: half the CPUs, at least 1)",
		kind: intIn(func(c *config) *int { return &c.Bridge.Flushers }, 0, 0, 4096)},
	{name: "read-mode", group: groupListener, example: "poll",
		help: "how connections are read: goroutine (a reader goroutine each) or poll (idle connections hold no goroutine: epoll wakes a pool of poll-workers; Linux; over tls-cert each connection falls back to a goroutine); docs/DESIGN.md",
		kind: choice(func(c *config) *bridge.ReadMode { return &c.Bridge.ReadMode }, bridge.ReadModeGoroutine, bridge.ReadModeGoroutine, bridge.ReadModePoll)},
	{name: "poll-workers", group: groupListener, example: "8",
		help: "goroutines of the poll mode's pool (0: 4 x GOMAXPROCS, at least 4)",
		kind: intIn(func(c *config) *int { return &c.Bridge.PollWorkers }, 0, 0, 4096)},
	{name: "poll-read-timeout", group: groupListener, example: "2s",
		help: "poll mode: a message (all its frames) must arrive within this once the pool began reading it, else the client is closed with 1008; a frame up to 8KiB is read only once whole, so a client sending part of a larger frame (or half a fragmented message) holds a pool goroutine this long; at most ping-interval + pong-timeout (0: 5s, or ping-interval + pong-timeout when shorter)",
		kind: autoDur(func(c *config) *time.Duration { return &c.Bridge.PollReadTimeout })},
	{name: "max-connections", group: groupListener, example: "50",
		help: "open connections cap; past it a handshake gets HTTP 503",
		kind: intIn(func(c *config) *int { return &c.Bridge.MaxConnections }, bridge.DefaultMaxConnections, 1, 1<<30)},
	{name: "allowed-origins", group: groupListener, example: "https://a.example, https://*.b.example",
		help: "comma-separated Origin patterns allowed to connect, '*' wildcards (empty: same host only)",
		kind: list(func(c *config) *[]string { return &c.Bridge.AllowedOrigins })},
	{name: "compression", group: groupListener, example: "true",
		help: "negotiate permessage-deflate with clients that offer it",
		kind: boolean(func(c *config) *bool { return &c.Bridge.Compression }, false)},
	{name: "subprotocols", group: groupListener, example: "v1,v2",
		help: "comma-separated WebSocket subprotocols the server accepts",
		kind: list(func(c *config) *[]string { return &c.Bridge.Subprotocols })},
	{name: "max-message-size", group: groupListener, example: "2MiB",
		help: "largest message a client may send; larger closes it with 1009",
		kind: size64(func(c *config) *int64 { return &c.Bridge.MaxMessageSize }, bridge.DefaultMaxMessageSize, 1)},
	{name: "read-buffer-size", group: groupListener, example: "8192",
		help: "per-connection read buffer, 256..1MiB (held by every idle connection)",
		kind: sizeOf(func(c *config) *int { return &c.Bridge.ReadBufferSize }, bridge.DefaultReadBuffer, 256).rule(checkReadBuffer, "1025KiB")},
	{name: "max-groups-per-connection", group: groupListener, example: "5",
		help: "how many groups one connection may join",
		kind: intIn(func(c *config) *int { return &c.Bridge.MaxGroupsPerConn }, bridge.DefaultMaxGroups, 1, 1<<20)},
	{name: "max-kept-header-bytes", group: groupListener, example: "4KiB",
		help: "handshake headers kept per connection for events and info; past it the largest less useful headers are dropped (at most 64KiB)",
		kind: sizeOf(func(c *config) *int { return &c.Bridge.MaxKeptHeaderBytes }, bridge.DefaultMaxKeptHeaderBytes, 1).rule(checkKeptHeaders, "65KiB")},

	{name: "write-timeout", group: groupTimeouts, example: "3s",
		help: "deadline for each write to a client",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.WriteTimeout }, bridge.DefaultWriteTimeout)},
	{name: "ping-interval", group: groupTimeouts, example: "5s",
		help: "how often each client is pinged",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.PingInterval }, bridge.DefaultPingInterval)},
	{name: "pong-timeout", group: groupTimeouts, example: "2s",
		help: "a client silent for ping-interval+pong-timeout is closed as dead",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.PongTimeout }, bridge.DefaultPongTimeout)},
	{name: "handshake-timeout", group: groupTimeouts, example: "4s",
		help: "deadline for a client to complete the HTTP upgrade",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.HandshakeTimeout }, bridge.DefaultHandshake)},
	{name: "close-timeout", group: groupTimeouts, example: "500ms",
		help: "wait this long for a client's close frame after sending ours",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.CloseTimeout }, bridge.DefaultCloseTimeout)},
	{name: "shutdown-timeout", group: groupTimeouts, example: "1m",
		help: "on SIGTERM/SIGINT, flush queued messages and close clients within this time",
		kind: dur(func(c *config) *time.Duration { return &c.ShutdownTimeout }, 10*time.Second)},
	{name: "release-memory", group: groupTimeouts, example: "10s",
		help: "after 1000 or more connections opened or closed and then none for this long, return the freed memory to the OS (one GC; 0: off)",
		kind: durKind(func(c *config) *time.Duration { return &c.ReleaseMemory }, 2*time.Second, "off")},

	{name: "queue-size", group: groupQueues, example: "10",
		help: "per-connection send queue bound, in messages",
		kind: intIn(func(c *config) *int { return &c.Bridge.QueueSize }, bridge.DefaultQueueSize, 1, 1<<20)},
	{name: "queue-bytes", group: groupQueues, example: "32MiB",
		help: "per-connection send queue bound, in bytes (at least max-push-size)",
		kind: sizeOf(func(c *config) *int { return &c.Bridge.QueueBytes }, bridge.DefaultQueueBytes, 1)},
	{name: "max-queued-bytes", group: groupQueues, example: "512MiB",
		help: "bytes queued for all clients together (at least queue-bytes); near it the overflow policy applies to the largest queues first",
		kind: size64(func(c *config) *int64 { return &c.Bridge.MaxQueuedBytes }, bridge.DefaultMaxQueuedBytes, 1)},
	{name: "overflow-policy", group: groupQueues, example: "drop",
		help: "full send queue: close (close the client with 1008) or drop (refuse the push)",
		kind: choice(func(c *config) *bridge.OverflowPolicy { return &c.Bridge.Overflow }, bridge.OverflowClose, bridge.OverflowClose, bridge.OverflowDrop)},
	{name: "max-push-size", group: groupQueues, example: "4MiB",
		help: "largest message a push may send; larger is refused",
		kind: sizeOf(func(c *config) *int { return &c.Bridge.MaxPushSize }, bridge.DefaultMaxPushSize, 1)},
	{name: "fragment-size", group: groupQueues, example: "4KiB",
		help: "send messages larger than this as frames of at most this size (0: one frame per message; else 125..1MiB)",
		kind: sizeOf(func(c *config) *int { return &c.Bridge.FragmentSize }, 0, 0).rule(checkFragmentSize, "1", "124", "1025KiB")},
	{name: "fragment-timeout", group: groupQueues, example: "5s",
		help: "a fragmented message (finish=false) with no push for this long is aborted: the client is closed with 1011",
		kind: dur(func(c *config) *time.Duration { return &c.Bridge.FragmentTimeout }, bridge.DefaultFragmentTimeout)},
	{name: "write-delay", group: groupQueues, example: "5ms",
		help: "gather the messages to a client that gets more than one per this delay into one write, each waiting at most this long: fewer system calls, more latency (0: off; at most 1s)",
		kind: offDur(func(c *config) *time.Duration { return &c.Bridge.WriteDelay }).rule(checkWriteDelay, "2s")},

	{name: "max-connections-per-ip", group: groupAdmit, example: "20",
		help: "connections per client address (IPv6: per /64), open or being upgraded; past it a handshake gets HTTP 503 (0: no cap)",
		kind: intIn(func(c *config) *int { return &c.Bridge.MaxConnectionsPerIP }, 0, 0, 1<<30)},
	{name: "max-handshakes", group: groupAdmit, example: "300",
		help: "connections accepted and not yet upgraded; past it a new connection gets HTTP 503 (over TLS: no answer) and is closed",
		kind: intIn(func(c *config) *int { return &c.Bridge.MaxHandshakes }, bridge.DefaultMaxHandshakes, 1, 1<<30)},
	{name: "accept-rate", group: groupAdmit, example: "12.5",
		help: "handshakes admitted per second; past it HTTP 429 with Retry-After (0: no limit)",
		kind: rate(func(c *config) *float64 { return &c.Bridge.AcceptRate }, 0, 0)},
	{name: "accept-burst", group: groupAdmit, example: "40",
		help: "burst of accept-rate (0: accept-rate rounded up, at least 1)",
		kind: intIn(func(c *config) *int { return &c.Bridge.AcceptBurst }, 0, 0, 1<<30)},
	{name: "trusted-proxies", group: groupAdmit, example: "10.0.0.0/8, 192.168.1.7, fd00::/8",
		help: "comma-separated proxy networks (CIDR or address) whose X-Forwarded-For / X-Real-IP give the client address; empty: none",
		kind: prefixList(func(c *config) *[]netip.Prefix { return &c.Bridge.TrustedProxies })},

	{name: "client-message-rate", group: groupRates, example: "0.5",
		help: "messages per second a client may send on average (0: no limit); past it client-rate-policy applies",
		kind: rate(func(c *config) *float64 { return &c.Bridge.ClientMessageRate }, bridge.DefaultClientMessageRate, bridge.RateUnlimited)},
	{name: "client-message-burst", group: groupRates, example: "7",
		help: "messages a client may send at once above client-message-rate",
		kind: intIn(func(c *config) *int { return &c.Bridge.ClientMessageBurst }, bridge.DefaultClientMessageBurst, 1, 1<<30)},
	{name: "client-byte-rate", group: groupRates, example: "64KiB",
		help: "message bytes (inflated) per second a client may send on average (0: no limit); past it client-rate-policy applies",
		kind: byteRate(func(c *config) *int64 { return &c.Bridge.ClientByteRate }, bridge.DefaultClientByteRate)},
	{name: "client-byte-burst", group: groupRates, example: "4MiB",
		help: "message bytes a client may send at once above client-byte-rate, at least max-message-size (0: the larger of 2MiB and max-message-size)",
		kind: size64(func(c *config) *int64 { return &c.Bridge.ClientByteBurst }, 0, 0)},
	{name: "client-rate-policy", group: groupRates, example: "drop",
		help: "a client message over its rate: close (close the client with 1008) or drop (drop the message, counted)",
		kind: choice(func(c *config) *bridge.RatePolicy { return &c.Bridge.ClientRatePolicy }, bridge.RatePolicyClose, bridge.RatePolicyClose, bridge.RatePolicyDrop)},

	{name: "rpc-addr", group: groupRPC, example: "unix:///run/wsbridge/rpc.sock",
		help: "goridge RPC listen address: tcp://host:port or unix:///path.sock (off: no RPC)",
		kind: str(func(c *config) *string { return &c.RPC.Addr }, rpc.DefaultAddr).rule(checkRPCAddr, "127.0.0.1:6001", "unix://", "http://127.0.0.1:6001")},
	{name: "rpc-socket-mode", group: groupRPC, example: "0600",
		help: "file mode of the RPC unix socket (octal)",
		kind: fileMode(func(c *config) *fs.FileMode { return &c.RPC.SocketMode }, rpc.DefaultSocketMode)},
	{name: "rpc-max-frame-size", group: groupRPC, example: "1MiB",
		help: "largest RPC request frame; larger closes that RPC connection",
		kind: sizeOf(func(c *config) *int { return &c.RPC.MaxFrameSize }, rpc.DefaultMaxFrameSize, 1024).rule(checkFrameSize, "3GiB")},
	{name: "rpc-max-connections", group: groupRPC, example: "8",
		help: "concurrent RPC connections cap",
		kind: intIn(func(c *config) *int { return &c.RPC.MaxConnections }, rpc.DefaultMaxConnections, 1, 1<<20)},
	{name: "rpc-max-inflight", group: groupRPC, example: "4",
		help: "calls read and not yet answered per RPC connection; past it the connection is not read until a reply is written",
		kind: intIn(func(c *config) *int { return &c.RPC.MaxInFlight }, rpc.DefaultMaxInFlight, 1, 1<<16)},
	{name: "rpc-write-timeout", group: groupRPC, example: "2s",
		help: "deadline for each RPC reply's write; an RPC client that does not read its replies is disconnected after it",
		kind: dur(func(c *config) *time.Duration { return &c.RPC.WriteTimeout }, rpc.DefaultWriteTimeout)},
	{name: "rpc-read-timeout", group: groupRPC, example: "3s",
		help: "deadline for an RPC request to arrive whole once its first byte has; a client stalled mid-request is disconnected after it",
		kind: dur(func(c *config) *time.Duration { return &c.RPC.ReadTimeout }, rpc.DefaultReadTimeout)},
	{name: "rpc-idle-timeout", group: groupRPC, example: "5m",
		help: "close an RPC connection whose next request does not arrive within this time (0: never; PHP keeps idle connections open)",
		kind: offDur(func(c *config) *time.Duration { return &c.RPC.IdleTimeout })},

	{name: "events-url", group: groupEvents, example: "http://127.0.0.1:9501/wsbridge/events",
		help: "URL that receives client events (open, message, close) by POST; empty: events off",
		kind: str(func(c *config) *string { return &c.Events.URL }, "").rule(checkEventsURL, "php:9501/events", "ftp://php/events", "http:///events").shown(events.RedactURL)},
	{name: "events-secret", group: groupEvents, example: "s3cret-of-the-app", secret: true,
		help: "key of the HMAC-SHA256 signature of every events and auth request (prefer the variable: flags show in ps)",
		kind: str(func(c *config) *string { return &c.Events.Secret }, "")},
	{name: "events-auth-url", group: groupEvents, example: "https://app.internal/wsbridge/auth",
		help: "URL asked by POST to authorize each WebSocket handshake; empty: no authorization",
		kind: str(func(c *config) *string { return &c.Events.AuthURL }, "").rule(checkEventsURL, "tcp://127.0.0.1:1", "/auth").shown(events.RedactURL)},
	{name: "events-auth-timeout", group: groupEvents, example: "1500ms",
		help: "deadline of an authorization request; past it the handshake gets HTTP 503",
		kind: dur(func(c *config) *time.Duration { return &c.Events.AuthTimeout }, events.DefaultAuthTimeout)},
	{name: "events-concurrency", group: groupEvents, example: "16",
		help: "event requests in flight at once (connections to the events URL)",
		kind: intIn(func(c *config) *int { return &c.Events.Concurrency }, events.DefaultConcurrency, 1, 1024)},
	{name: "events-batch", group: groupEvents, example: "50",
		help: "most events in one request",
		kind: intIn(func(c *config) *int { return &c.Events.BatchSize }, events.DefaultBatchSize, 1, 100000)},
	{name: "events-batch-bytes", group: groupEvents, example: "256KiB",
		help: "most bytes of events in one request (a larger single event travels alone)",
		kind: sizeOf(func(c *config) *int { return &c.Events.BatchBytes }, events.DefaultBatchBytes, 1024)},
	{name: "events-timeout", group: groupEvents, example: "2s",
		help: "deadline of an event request; past it the request is retried",
		kind: dur(func(c *config) *time.Duration { return &c.Events.Timeout }, events.DefaultTimeout)},
	{name: "events-retry-max", group: groupEvents, example: "30s",
		help: "longest pause between retries of an event request (backoff from 100ms, doubling)",
		kind: dur(func(c *config) *time.Duration { return &c.Events.RetryMax }, events.DefaultRetryMax)},
	{name: "events-retries", group: groupEvents, example: "3",
		help: "retries of an event request before it is split (per connection, then per event); an event still failing alone while others succeed is dropped",
		kind: intIn(func(c *config) *int { return &c.Events.Retries }, events.DefaultRetries, 1, 1000)},
	{name: "events-queue-per-fd", group: groupEvents, example: "10",
		help: "pending events per connection; past it events-overflow applies",
		kind: intIn(func(c *config) *int { return &c.Events.QueuePerFD }, events.DefaultQueuePerFD, 1, 1<<24)},
	{name: "events-queue-total", group: groupEvents, example: "500",
		help: "pending events of all connections, one close event reserved per open connection included; past it messages follow events-overflow and handshakes get 503",
		kind: intIn(func(c *config) *int { return &c.Events.QueueTotal }, events.DefaultQueueTotal, 1, 1<<30)},
	{name: "events-queue-bytes", group: groupEvents, example: "8MiB",
		help: "encoded size of the pending events of all connections, 1KiB reserved per open connection for its close event included; past it messages follow events-overflow and handshakes get 503",
		kind: sizeOf(func(c *config) *int { return &c.Events.QueueBytes }, events.DefaultQueueBytes, 1)},
	{name: "events-overflow", group: groupEvents, example: "drop",
		help: "a message event that does not fit: close (drop it, close the client with 1013) or drop (drop it)",
		kind: choice(func(c *config) *events.Overflow { return &c.Events.Overflow }, events.OverflowClose, events.OverflowClose, events.OverflowDrop)},

	{name: "admin-addr", group: groupAdmin, example: "0.0.0.0:9600",
		help: "admin HTTP listen address (host:port): health, readiness, metrics, the /v1 API (off: no admin server)",
		kind: str(func(c *config) *string { return &c.Admin.Addr }, admin.DefaultAddr).rule(checkAdminAddr, "127.0.0.1", "localhost", "127.0.0.1:99999", "http://127.0.0.1:9503")},
	{name: "admin-token", group: groupAdmin, example: "0123456789abcdef-admin", secret: true,
		help: "bearer token of /metrics, /v1 and pprof; empty: those are off, only /healthz and /readyz answer (prefer the variable: flags show in ps)",
		kind: str(func(c *config) *string { return &c.Admin.Token }, "").rule(checkToken, "tiny-secret", "0123456789 abcdef", "0123456789abcdefü")},
	{name: "admin-pprof", group: groupAdmin, example: "true",
		help: "serve net/http/pprof under /debug/pprof/ on the admin address (behind the token)",
		kind: boolean(func(c *config) *bool { return &c.Admin.Pprof }, false)},
	{name: "admin-max-body", group: groupAdmin, example: "1MiB",
		help: "largest admin request body; larger is refused with 413",
		kind: size64(func(c *config) *int64 { return &c.Admin.MaxBody }, admin.DefaultMaxBody, 1024)},

	{name: "tls-cert", group: groupTLS, example: "/etc/wsbridge/tls/tls.crt",
		help: "PEM certificate chain (leaf first) of the WebSocket listener: with -tls-key it serves wss:// (empty: plain ws://)",
		kind: str(func(c *config) *string { return &c.TLS.Cert }, "")},
	{name: "tls-key", group: groupTLS, example: "/etc/wsbridge/tls/tls.key",
		help: "PEM private key of -tls-cert",
		kind: str(func(c *config) *string { return &c.TLS.Key }, "")},
	{name: "admin-tls-cert", group: groupTLS, example: "/etc/wsbridge/admin/tls.crt",
		help: "PEM certificate chain of the admin listener: with -admin-tls-key it serves https:// (empty: plain http://)",
		kind: str(func(c *config) *string { return &c.AdminTLS.Cert }, "")},
	{name: "admin-tls-key", group: groupTLS, example: "/etc/wsbridge/admin/tls.key",
		help: "PEM private key of -admin-tls-cert",
		kind: str(func(c *config) *string { return &c.AdminTLS.Key }, "")},
	{name: "tls-reload-interval", group: groupTLS, example: "1m",
		help: "how often the certificate and key files are checked; a change is loaded once the files stay the same for one interval (SIGHUP: at once)",
		kind: dur(func(c *config) *time.Duration { return &c.TLSReloadInterval }, tlsreload.DefaultInterval)},

	{name: "redis-url", group: groupCluster, example: "redis://:pw@127.0.0.1:6379/0",
		help: "Redis of a cluster of nodes: redis://[user:password@]host:port[/db], rediss:// (TLS), ?addr=host:port&addr=... (several nodes of a Redis Cluster), &master_set=name (Sentinel); empty: standalone",
		kind: str(func(c *config) *string { return &c.Cluster.URL }, "").rule(checkRedisURL, "http://redis:6379", "redis://", "redis://h:6379?nope=1").shown(cluster.RedactURL)},
	{name: "redis-prefix", group: groupCluster, example: "app1",
		help: "prefix of every Redis key and channel of the cluster (one Redis can serve several clusters)",
		kind: str(func(c *config) *string { return &c.Cluster.Prefix }, cluster.DefaultPrefix).rule(checkRedisPrefix, "{app}", "a b", ":app")},
	{name: "node-id", group: groupCluster, example: "7",
		help: "node id carried in the high bits of every fd (0..1023); auto: 0 standalone, a free id claimed in Redis with redis-url",
		kind: intOr(func(c *config) *int { return &c.Bridge.NodeID }, cluster.AutoNodeID, 0, bridge.MaxNodeID, "auto", cluster.AutoNodeID)},
	{name: "cluster-timeout", group: groupCluster, example: "500ms",
		help: "how long a call for another node's fd, group, user or everyone waits for the answers; past it node_unreachable (or the nodes counted as not answering)",
		kind: dur(func(c *config) *time.Duration { return &c.Cluster.Timeout }, cluster.DefaultCallTimeout)},
	{name: "cluster-batch-hold", group: groupCluster, example: "0",
		help: "how long a call for another node's fd may wait for more calls to that node to fill its frame (fewer, fuller Redis publishes under load), and only while more calls to that node are in flight than are waiting; a lone call never waits; at most 100ms; 0: never",
		kind: durKind(func(c *config) *time.Duration { return &c.Cluster.BatchHold }, cluster.DefaultBatchHold, "never").rule(checkBatchHold, "1s")},
	{name: "cluster-link", group: groupCluster, example: ":7401",
		help: "address to listen on for direct links from the other nodes, which then send the calls for this node's fds there instead of through Redis (no Redis work per call; authenticated with a secret kept in Redis); host:port, or :port to be dialed at this machine's address on its route to Redis; empty: calls come through Redis",
		kind: str(func(c *config) *string { return &c.Cluster.Link }, "").rule(checkListenAddr, "7401", "host", "h:p:q")},
	{name: "node-ttl", group: groupCluster, example: "30s",
		help: "a node whose heartbeat is older is lost: a survivor reports its connections closed to the application (heartbeat: a third of it)",
		kind: dur(func(c *config) *time.Duration { return &c.Cluster.TTL }, cluster.DefaultNodeTTL).rule(checkNodeTTL, "100ms")},
	{name: "log-level", group: groupLog, example: "debug",
		help: "log level: debug, info, warn or error",
		kind: level(func(c *config) *slog.Level { return &c.LogLevel }, slog.LevelInfo)},
	{name: "log-format", group: groupLog, example: "json",
		help: "log format: text or json",
		kind: choice(func(c *config) *string { return &c.LogFormat }, "text", "text", "json")},
}

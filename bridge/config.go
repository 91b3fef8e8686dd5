package bridge

import (
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/wsbridge/wsbridge/internal/config"
)

// OverflowPolicy says what happens to a push that finds the connection's send
// queue at its bound.
type OverflowPolicy string

const (
	// OverflowClose refuses the push, drops what is queued and closes the
	// slow connection with CloseSlowConsumer. The default: a client that
	// cannot keep up would otherwise see a stream with holes in it.
	OverflowClose OverflowPolicy = "close"
	// OverflowDrop refuses the push (ErrQueueFull) and keeps the connection.
	OverflowDrop OverflowPolicy = "drop"
)

// Close codes the bridge itself sends.
const (
	// CloseSlowConsumer is sent to a connection closed by OverflowClose.
	CloseSlowConsumer = 1008
	// CloseGoingAway is sent to every connection on shutdown.
	CloseGoingAway = 1001
	// CloseInternalError is sent when a panic is recovered in a connection's
	// code path.
	CloseInternalError = 1011
	// CloseInvalidPayload is sent for a text message that is not UTF-8.
	CloseInvalidPayload = 1007
)

// Listener receives a connection's events. Calls for one connection come
// from that connection's reader goroutine, in order: OnOpen, then OnMessage
// for each message, then OnClose exactly once. A Listener must not block for
// long: while it runs, that connection reads nothing. A panic in a Listener
// is recovered and closes only that connection.
type Listener interface {
	OnOpen(info ConnInfo)
	OnMessage(fd int64, op Opcode, data []byte)
	OnClose(fd int64, ev CloseEvent)
}

// MaxPathLength bounds a configured path: the events of a connection carry
// it, its close event within the room reserved for it.
const MaxPathLength = 128

// IndexKind names the index Config.OnIndexChange speaks of.
type IndexKind uint8

// The indexes of a Hub.
const (
	GroupIndex IndexKind = iota // groups and their members
	UserIndex                   // user ids and their bound fds
)

// CloseEvent describes how a connection ended.
type CloseEvent struct {
	Code     int    // close code; 1006 when no close frame was exchanged
	Reason   string // close reason, if any
	ByServer bool   // true when the bridge sent the first close frame
}

// Config configures a Hub. The zero value of every field means its
// documented default; Config is passed by value.
type Config struct {
	// NodeID goes into the high bits of every fd (0..MaxNodeID). Default 0.
	NodeID int
	// Sequence hands out the low bits of every fd (see Sequence). Default
	// NewClockSequence(): fds keep growing across restarts. Cluster mode
	// passes a sequence reserved in Redis; CounterSequence (1, 2, 3, ...
	// in each run) is for tests only.
	Sequence Sequence
	// Paths are the URL paths that accept upgrades (exact matches; the
	// application may route each to its own controller: its events carry
	// the path). Default ["/"].
	Paths []string
	// Workers is the number of partitions the connections are spread over.
	// Default runtime.NumCPU().
	Workers int
	// MaxConnections caps open connections; past it a handshake gets HTTP
	// 503 before any upgrade. Default 10000.
	MaxConnections int
	// QueueSize bounds each connection's send queue in messages. Default 256.
	QueueSize int
	// QueueBytes bounds each connection's send queue in bytes. Default 16 MiB;
	// it must be at least MaxPushSize.
	QueueBytes int
	// Overflow is the policy for a push that finds the queue full.
	// Default OverflowClose.
	Overflow OverflowPolicy
	// MaxMessageSize is the largest message a client may send; a larger one
	// closes the connection with 1009. Default 1 MiB.
	MaxMessageSize int64
	// MaxPushSize is the largest message a push may send; a larger push is
	// refused with ErrTooLarge. Default 8 MiB.
	MaxPushSize int
	// FragmentSize, when positive (125..MaxBufferSize), sends outgoing
	// messages larger than it as several frames of at most FragmentSize
	// payload bytes. 0: every complete message goes out as one frame.
	// Default 0.
	FragmentSize int
	// ReadBufferSize is the per-connection read buffer (at most
	// MaxBufferSize). Default 512 bytes: an idle connection holds it for its
	// whole life, and a larger message is read past it, not through it.
	ReadBufferSize int
	// WriteTimeout bounds each write to a client. Default 10s.
	WriteTimeout time.Duration
	// Flushers is the number of goroutines that write the frames of
	// broadcasts and pushes to connections with nothing else to write
	// (direct.go), each for a share of the workers. Fewer flushers
	// gather more messages into each write while the others' cores take
	// the calls and the clients: on 2 cores one flusher wrote broadcasts
	// with a third of the CPU time of two (docs/BENCHMARKS.md). Default
	// half the number of CPUs, at least 1; at most Workers.
	Flushers int
	// WriteDelay, when positive, gathers the messages to a connection
	// that receives more than one per WriteDelay into one write, each
	// waiting at most WriteDelay: fewer system calls for busy connections
	// at the cost of that much latency; a connection quiet for WriteDelay
	// gets its next message at once (delay.go). Default 0: off, every
	// message is written as soon as possible. At most 1s.
	WriteDelay time.Duration
	// PingInterval is how often the bridge pings a client. Default 25s.
	PingInterval time.Duration
	// PongTimeout: a client that sends nothing (no pong, no message) for
	// PingInterval+PongTimeout is closed as dead. Default 10s.
	PongTimeout time.Duration
	// HandshakeTimeout bounds a handshake on Server: its headers and body
	// must arrive within it, and the request's context (which Authorize
	// may use) ends when it has passed; it also bounds the upgrade
	// response write and an idle keep-alive connection. Default 10s.
	HandshakeTimeout time.Duration
	// CloseTimeout: after the bridge sends a close frame it waits this long
	// for the client's close frame before closing the socket. Default 1s.
	CloseTimeout time.Duration
	// AllowedOrigins lists the Origin values allowed to connect, with '*'
	// wildcards ("https://*.example.com"; "*" allows any). Empty: only
	// requests without an Origin header or with a same-host Origin.
	AllowedOrigins []string
	// MaxGroupsPerConn bounds how many groups one connection may join.
	// Default 256.
	MaxGroupsPerConn int
	// Compression negotiates permessage-deflate with clients that offer it.
	Compression bool
	// Subprotocols the server accepts, in order of preference.
	Subprotocols []string
	// Logger receives the Hub's logs. Default slog.Default().
	Logger *slog.Logger
	// Listener receives connection events. Default: none.
	Listener Listener
	// OnIndexChange, when set, is told of a group that gained its first
	// member on this node or lost its last, and of a user id likewise
	// (the cluster subscribes to their channels only while they have
	// connections here). It is called after the change, outside the
	// Hub's index locks but possibly under a connection's, so it must not
	// block and must not call the Hub; calls for one name may arrive out
	// of order, so it reads the present state (HasGroup, HasUser) later
	// rather than trust the order. Default: none.
	OnIndexChange func(kind IndexKind, name string)
	// Authorize, when set, is asked before each upgrade, after the path,
	// the limits, the Listener's Admit and the origin check pass. A panic
	// in it is recovered and answers 500. It sees r.RemoteAddr and
	// r.Header as ConnInfo will have them (the client's address behind
	// TrustedProxies; Host among the headers). A refusal answers the
	// handshake with its HTTP status; an acceptance may bind the new
	// connection to a user and groups before its open event. It runs on
	// the handshake's goroutine and should bound its own time.
	Authorize func(r *http.Request) Authorization

	// Admission: the limits a public endpoint needs (admission.go).

	// MaxConnectionsPerIP caps the connections of one client address, open
	// or being upgraded (IPv6 addresses count by their /64); past it a
	// handshake gets 503. The address is the TCP peer's, or the one
	// TrustedProxies vouch for. The same cap applies, on Server, to the
	// connections from one peer (not a trusted proxy) not yet upgraded:
	// past it a new one is refused before its request is read. 0: no cap. Default 0: behind a proxy that
	// is not in TrustedProxies, or a carrier's NAT, every client shares one
	// address, and a default cap would refuse them all.
	MaxConnectionsPerIP int
	// MaxHandshakes caps the connections accepted by Server that are not
	// upgraded yet (headers still arriving, handshake under way); past it
	// a new connection is answered 503 and closed before its request is
	// read (over TLS: closed). Default DefaultMaxHandshakes.
	MaxHandshakes int
	// AcceptRate limits the handshakes admitted per second (after the
	// connection caps, before Admit, Authorize and the upgrade), with
	// bursts of AcceptBurst; past it a handshake gets 429 with Retry-After.
	// 0: no limit. Default 0.
	AcceptRate float64
	// AcceptBurst is the burst of AcceptRate. Default: AcceptRate rounded
	// up (one second's worth), at least 1.
	AcceptBurst int
	// TrustedProxies are the networks of the proxies in front of the
	// bridge. From a peer in one of them, the client's address is the
	// right-most X-Forwarded-For entry that is not itself in one of them
	// (X-Real-IP when there is no X-Forwarded-For): it is what the per-IP
	// cap counts and what ConnInfo.RemoteAddr reports ("ip:0"). From any
	// other peer the headers are ignored. Default: none.
	TrustedProxies []netip.Prefix
	// MaxKeptHeaderBytes bounds the handshake headers kept with each
	// connection for ConnInfo (events, Info), counted as on the wire. Past
	// it, headers are kept whole in this order until the bound: Host,
	// Origin, Authorization, Sec-WebSocket-Protocol, X-Forwarded-For,
	// X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host, User-Agent,
	// Accept-Language, Cookie, then the others smallest first; the
	// largest others are dropped first. Default DefaultMaxKeptHeaderBytes;
	// at most the 64 KiB a handshake's headers may have.
	MaxKeptHeaderBytes int

	// Client rate limits (read path): token buckets per connection,
	// refilled as messages arrive. A message over them is refused as
	// ClientRatePolicy says.

	// ClientMessageRate is how many messages per second a client may send
	// on average. Default 100; negative (RateUnlimited): no limit.
	ClientMessageRate float64
	// ClientMessageBurst is how many messages a client may send at once
	// above the rate. Default 1000.
	ClientMessageBurst int
	// ClientByteRate is how many message bytes (inflated) per second a
	// client may send on average. Default 1 MiB; negative (RateUnlimited):
	// no limit.
	ClientByteRate int64
	// ClientByteBurst is how many bytes a client may send at once above
	// the rate; at least MaxMessageSize. Default the larger of 2 MiB and
	// MaxMessageSize.
	ClientByteBurst int64
	// ClientRatePolicy: RatePolicyClose (the default) or RatePolicyDrop.
	ClientRatePolicy RatePolicy

	// Send queues across connections and open fragmented messages.

	// MaxQueuedBytes bounds the bytes queued for all connections together
	// (a broadcast's payload counts once, however many queues hold it).
	// From three quarters of it, under OverflowDrop, the room each queue
	// may still fill shrinks from QueueBytes to nothing, so the largest
	// queues are refused first; at the bound, OverflowClose closes the
	// connections with the largest queues (1008) until the push fits, and
	// OverflowDrop refuses every push that would pass it. Default 1 GiB; it
	// must be at least QueueBytes.
	MaxQueuedBytes int64
	// FragmentTimeout: a fragmented message (a push with finish=false)
	// that receives no push for this long is aborted: the connection is
	// closed with 1011. Default 30s.
	FragmentTimeout time.Duration

	// Read mode (poll.go).

	// ReadMode is how connections are read: ReadModeGoroutine (the
	// default: a reader goroutine per connection) or ReadModePoll (idle
	// connections hold no goroutine: epoll readiness wakes a pool of
	// PollWorkers goroutines; Linux only: elsewhere New refuses it, "poll
	// read mode needs Linux"). Over TLS a connection is read by
	// a goroutine of its own in either mode.
	ReadMode ReadMode
	// PollWorkers is the size of the poll mode's pool. Default 4 ×
	// GOMAXPROCS (at least 4).
	PollWorkers int
	// PollReadTimeout bounds, in poll mode, how long a message may take to
	// arrive once a pool goroutine began reading it; past it the connection
	// is closed with 1008 ("message not received in time"). A message's
	// first frame of at most 8 KiB is read only once it has arrived whole
	// (meanwhile the connection holds no goroutine); a client that sends
	// part of a larger frame, or half a fragmented message, holds a pool
	// goroutine that long. Default 5s, or PingInterval+PongTimeout when that is shorter;
	// at most PingInterval+PongTimeout (a message under way is a sign of
	// life the keepalive does not see until it is read).
	PollReadTimeout time.Duration
}

// ReadMode is how a Hub reads its connections.
type ReadMode string

const (
	// ReadModeGoroutine reads each connection in a goroutine of its own.
	ReadModeGoroutine ReadMode = "goroutine"
	// ReadModePoll reads connections from a bounded pool woken by epoll.
	ReadModePoll ReadMode = "poll"
)

// DefaultPollReadTimeout is Config.PollReadTimeout's default.
const DefaultPollReadTimeout = 5 * time.Second

// Authorization is the answer of Config.Authorize.
type Authorization struct {
	Allow   bool
	Status  int    // HTTP status of a refusal; 0 means 403
	Message string // body of a refusal
	User    string // bind the connection to this user id ("" for none)
	Groups  []string
}

// Defaults of Config; exported so the binary's flags show the same values.
const (
	DefaultMaxConnections = 10000
	DefaultQueueSize      = 256
	DefaultQueueBytes     = 16 << 20
	DefaultMaxMessageSize = 1 << 20
	DefaultMaxPushSize    = 8 << 20
	DefaultWriteTimeout   = 10 * time.Second
	DefaultPingInterval   = 25 * time.Second
	DefaultPongTimeout    = 10 * time.Second
	DefaultHandshake      = 10 * time.Second
	DefaultCloseTimeout   = time.Second
	DefaultMaxGroups      = 256
	DefaultReadBuffer     = 512
	// DefaultMaxHandshakes: a handshake takes milliseconds, so a thousand
	// at once is a reconnect storm, not the steady state; each holds at
	// most 64 KiB of headers (64 MiB in all).
	DefaultMaxHandshakes = 1000
	// DefaultMaxKeptHeaderBytes: a browser's handshake headers take about
	// 1 KiB; 8 KiB leaves room for large cookies and bounds 10 000
	// connections' headers to 80 MiB instead of 640.
	DefaultMaxKeptHeaderBytes = 8 << 10
	// MaxHeaderBytes bounds a handshake's request headers (431 past it).
	MaxHeaderBytes         = maxHeaderBytes
	DefaultMaxQueuedBytes  = 1 << 30
	DefaultFragmentTimeout = 30 * time.Second
	// MaxBufferSize bounds FragmentSize and ReadBufferSize: each is a
	// buffer per connection (the write buffer while a write is under way).
	MaxBufferSize = 1 << 20
)

// withDefaults returns c with every zero field set to its default and
// reports every invalid field.
func (c Config) withDefaults() (Config, error) {
	if len(c.Paths) == 0 {
		c.Paths = []string{"/"}
	}
	config.Default(&c.Workers, runtime.NumCPU())
	config.Default(&c.Flushers, max(1, runtime.NumCPU()/2))
	c.Flushers = min(c.Flushers, c.Workers)
	config.Default(&c.MaxConnections, DefaultMaxConnections)
	config.Default(&c.QueueSize, DefaultQueueSize)
	config.Default(&c.QueueBytes, DefaultQueueBytes)
	config.Default(&c.MaxPushSize, DefaultMaxPushSize)
	config.Default(&c.MaxGroupsPerConn, DefaultMaxGroups)
	config.Default(&c.ReadBufferSize, DefaultReadBuffer)
	config.Default(&c.MaxMessageSize, DefaultMaxMessageSize)
	config.Default(&c.Overflow, OverflowClose)
	config.Default(&c.WriteTimeout, DefaultWriteTimeout)
	config.Default(&c.PingInterval, DefaultPingInterval)
	config.Default(&c.PongTimeout, DefaultPongTimeout)
	config.Default(&c.HandshakeTimeout, DefaultHandshake)
	config.Default(&c.CloseTimeout, DefaultCloseTimeout)
	if c.Sequence == nil {
		c.Sequence = NewClockSequence()
	}
	config.Default(&c.Logger, slog.Default())
	config.Default(&c.MaxHandshakes, DefaultMaxHandshakes)
	config.Default(&c.MaxKeptHeaderBytes, DefaultMaxKeptHeaderBytes)
	if c.AcceptRate > 0 && c.AcceptRate <= math.MaxInt32 {
		config.Default(&c.AcceptBurst, max(1, int(math.Ceil(c.AcceptRate))))
	}
	c.readDefaults()
	config.Default(&c.MaxQueuedBytes, DefaultMaxQueuedBytes)
	config.Default(&c.FragmentTimeout, DefaultFragmentTimeout)
	config.Default(&c.ReadMode, ReadModeGoroutine)
	config.Default(&c.PollWorkers, max(4, 4*runtime.GOMAXPROCS(0)))
	config.Default(&c.PollReadTimeout, min(DefaultPollReadTimeout, c.PingInterval+c.PongTimeout))
	return c, c.validate()
}

func (c Config) validate() error {
	var checks config.Checks
	check := checks.Check
	check(c.NodeID >= 0 && c.NodeID <= MaxNodeID, "node id: %d is out of range 0..%d", c.NodeID, MaxNodeID)
	for _, p := range c.Paths {
		check(len(p) > 0 && p[0] == '/' && len(p) <= MaxPathLength, "path: %q must start with / and be at most %d bytes", p, MaxPathLength)
	}
	check(c.Workers > 0 && c.Workers <= 4096, "workers: %d is out of range 1..4096", c.Workers)
	check(c.Flushers > 0, "flushers: %d must be positive", c.Flushers)
	check(c.MaxConnections > 0, "max connections: %d must be positive", c.MaxConnections)
	check(c.QueueSize > 0, "queue size: %d must be positive", c.QueueSize)
	check(c.MaxPushSize > 0, "max push size: %d must be positive", c.MaxPushSize)
	check(c.QueueBytes >= c.MaxPushSize, "queue bytes: %d must be at least max push size %d", c.QueueBytes, c.MaxPushSize)
	check(c.MaxQueuedBytes >= int64(c.QueueBytes), "max queued bytes: %d must be at least queue bytes %d", c.MaxQueuedBytes, c.QueueBytes)
	check(c.MaxGroupsPerConn > 0, "max groups per connection: %d must be positive", c.MaxGroupsPerConn)
	check(c.MaxMessageSize > 0, "max message size: %d must be positive", c.MaxMessageSize)
	check(c.FragmentSize >= 0, "fragment size: %d must not be negative", c.FragmentSize)
	check(c.FragmentSize == 0 || (c.FragmentSize >= 125 && c.FragmentSize <= MaxBufferSize), "fragment size: %d must be 0 (off) or 125..%d", c.FragmentSize, MaxBufferSize)
	check(c.ReadBufferSize >= 256 && c.ReadBufferSize <= MaxBufferSize, "read buffer size: %d must be 256..%d", c.ReadBufferSize, MaxBufferSize)
	check(c.MaxConnectionsPerIP >= 0, "max connections per ip: %d must not be negative", c.MaxConnectionsPerIP)
	check(c.MaxHandshakes > 0, "max handshakes: %d must be positive", c.MaxHandshakes)
	check(c.AcceptRate >= 0 && c.AcceptRate <= math.MaxInt32, "accept rate: %v must be 0 (off) or positive, at most %d", c.AcceptRate, math.MaxInt32)
	check(c.AcceptBurst >= 0 && c.AcceptBurst <= math.MaxInt32, "accept burst: %d must be 0..%d", c.AcceptBurst, math.MaxInt32)
	check(c.MaxKeptHeaderBytes > 0 && c.MaxKeptHeaderBytes <= MaxHeaderBytes, "max kept header bytes: %d must be 1..%d", c.MaxKeptHeaderBytes, MaxHeaderBytes)
	for _, p := range c.TrustedProxies {
		check(p.IsValid(), "trusted proxies: %v is not a network", p)
	}
	check(c.WriteDelay >= 0 && c.WriteDelay <= time.Second, "write delay: %s must be 0 (off) to 1s", c.WriteDelay)
	check(c.ReadMode == ReadModeGoroutine || c.ReadMode == ReadModePoll, "read mode: %q must be %q or %q", c.ReadMode, ReadModeGoroutine, ReadModePoll)
	check(c.ReadMode != ReadModePoll || pollSupported, "read mode: %v", errPollNeedsLinux)
	check(c.PollWorkers > 0 && c.PollWorkers <= 4096, "poll workers: %d is out of range 1..4096", c.PollWorkers)
	check(c.ReadMode != ReadModePoll || c.PollReadTimeout <= c.PingInterval+c.PongTimeout,
		"poll read timeout: %s must be at most ping interval + pong timeout (%s): a message under way is a sign of life", c.PollReadTimeout, c.PingInterval+c.PongTimeout)
	check(c.Overflow == OverflowClose || c.Overflow == OverflowDrop, "overflow policy: %q must be %q or %q", c.Overflow, OverflowClose, OverflowDrop)
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"write timeout", c.WriteTimeout}, {"ping interval", c.PingInterval}, {"pong timeout", c.PongTimeout},
		{"handshake timeout", c.HandshakeTimeout}, {"close timeout", c.CloseTimeout},
		{"fragment timeout", c.FragmentTimeout}, {"poll read timeout", c.PollReadTimeout},
	} {
		check(d.d > 0, "%s: %s must be positive", d.name, d.d)
	}
	c.validateRead(check)
	return checks.Err()
}

package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Hub holds the connections of one node.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	fds      *fdAllocator
	workers  []*worker
	upgrader websocket.Upgrader
	groups   *index // group name → members
	users    *index // user id → bound fds

	notOpen atomic.Uint64 // pushes that found no open connection

	mu      sync.Mutex // guards closed, count, readers.Add and adm's maps
	closed  bool
	count   int            // connections open or being upgraded
	readers sync.WaitGroup // one per connection handed to its reader goroutine

	adm      admission
	admitter Admitter // cfg.Listener, when it implements Admitter

	stop      chan struct{}
	stopOnce  sync.Once
	keepalive sync.WaitGroup
	writers   writers
	budget    budget // queued bytes of all connections
	traces    traceSet
	flushers  []*flushList // direct.go
	poll      *poller      // poll mode (poll.go); nil in goroutine mode
}

// New returns a Hub that accepts connections once it is served; it starts
// one keepalive goroutine per worker, which Shutdown stops.
func New(cfg Config) (*Hub, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("bridge: invalid config: %w", err)
	}
	fds, err := newFDAllocator(cfg.NodeID, cfg.Sequence)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	h := &Hub{
		cfg:     cfg,
		log:     cfg.Logger,
		fds:     fds,
		stop:    make(chan struct{}),
		groups:  newIndex(),
		users:   newIndex(),
		writers: newWriters(),
		budget:  newBudget(&cfg),
	}
	if f := cfg.OnIndexChange; f != nil {
		h.groups.changed = func(name string) { f(GroupIndex, name) }
		h.users.changed = func(name string) { f(UserIndex, name) }
	}
	h.adm.perIP = make(map[netip.Addr]int)
	h.adm.pendingIP = make(map[netip.Addr]int)
	h.adm.bucket = newTokenBucket(cfg.AcceptRate, cfg.AcceptBurst)
	h.admitter, _ = cfg.Listener.(Admitter)
	writeBuf := cfg.FragmentSize // gorilla cuts buffered frames at its write buffer size
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout:  cfg.HandshakeTimeout,
		ReadBufferSize:    0, // gorilla takes the one the hijacker makes, of cfg.ReadBufferSize (bufconn.go)
		WriteBufferSize:   writeBuf,
		WriteBufferPool:   &sync.Pool{}, // a write buffer only while a write is under way
		Subprotocols:      cfg.Subprotocols,
		EnableCompression: cfg.Compression,
		CheckOrigin:       originChecker(cfg.AllowedOrigins),
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, "wsbridge: "+reason.Error(), status)
		},
	}
	h.workers = make([]*worker, cfg.Workers)
	for i := range h.workers {
		h.workers[i] = newWorker(i)
	}
	if cfg.ReadMode == ReadModePoll { // its goroutines look connections up in the workers
		if h.poll, err = newPoller(h); err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
	}
	for i := range h.workers {
		h.keepalive.Add(1)
		go func(w *worker) {
			defer h.keepalive.Done()
			w.keepalive(cfg.PingInterval, cfg.PongTimeout, cfg.FragmentTimeout, h.stop)
		}(h.workers[i])
	}
	h.startFlushers()
	return h, nil
}

// Server returns an http.Server that serves the Hub with the limits a
// public WebSocket endpoint needs: a request whose headers, or whose body,
// do not arrive within HandshakeTimeout is disconnected (so no idle request
// holds http.Server.Shutdown), oversized headers are refused, and past
// MaxHandshakes connections not yet upgraded a new one is refused with 503.
// Upgraded connections are hijacked: Shutdown and Close of the http.Server
// leave them to the Hub's Shutdown.
func (h *Hub) Server() *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: h.cfg.HandshakeTimeout,
		ReadTimeout:       h.cfg.HandshakeTimeout,
		IdleTimeout:       h.cfg.HandshakeTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         h.connState,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
}

// maxHeaderBytes bounds a handshake's request headers.
const maxHeaderBytes = 64 << 10

// Config returns the Hub's configuration with defaults applied.
func (h *Hub) Config() Config { return h.cfg }

// workerOf maps an fd to its worker: sequence numbers are handed out in
// order, so connections spread round-robin over the workers.
func (h *Hub) workerOf(fd int64) *worker {
	return h.workers[uint64(fd&seqMask)%uint64(len(h.workers))]
}

// lookup returns the open connection with this fd on this node.
func (h *Hub) lookup(fd int64) *conn {
	if NodeOf(fd) != h.cfg.NodeID {
		return nil
	}
	return h.workerOf(fd).get(fd)
}

func (h *Hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// ServeHTTP upgrades a request on the configured path to a WebSocket
// connection and registers it under a new fd. In order: another path gets
// 404, another method 405, a request that is not a WebSocket upgrade 400;
// then the limits (shutdown, MaxConnections, MaxConnectionsPerIP,
// AcceptRate: 503 or 429 with Retry-After), the Listener's Admit (503),
// the origin (403), Authorize, and the upgrade itself. The slot taken by
// the limits is given back on every path that does not end in a
// connection, a panic included.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(h.cfg.Paths, r.URL.Path) {
		skipBody(w, r)
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		w.Header().Set("Connection", "close")
		skipBody(w, r)
		http.Error(w, "wsbridge: a WebSocket handshake is a GET", http.StatusMethodNotAllowed)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Connection", "close")
		skipBody(w, r)
		http.Error(w, "wsbridge: not a WebSocket handshake (want Connection: Upgrade and Upgrade: websocket)", http.StatusBadRequest)
		return
	}
	remote, client := h.clientAddr(r)
	s, why, retry := h.acquire(client)
	if why != admitted {
		h.refuse(w, r, why, retry)
		return
	}
	r.RemoteAddr = remote // what Authorize sees: the client's address, as ConnInfo reports it
	if _, ok := r.Header["Host"]; !ok && r.Host != "" {
		// net/http moves Host out of the headers; Authorize and the
		// connection's info have it back.
		r.Header["Host"] = []string{r.Host}
	}
	connected := false
	defer func() {
		if !connected {
			h.release(s)
		}
	}()
	if h.admitter != nil {
		var err error
		if !safely(h.log, "Admit", func() { err = h.admitter.Admit() }) {
			h.refuse(w, r, refInternalError, 0)
			return
		}
		if err != nil {
			h.log.Debug("handshake refused by the listener", "remote", remote, "err", err)
			h.refuse(w, r, refEventsBacklog, time.Second)
			return
		}
	}
	var auth Authorization
	if h.cfg.Authorize != nil && h.upgrader.CheckOrigin(r) {
		if !safely(h.log, "Authorize", func() { auth = h.cfg.Authorize(r) }) {
			h.refuse(w, r, refInternalError, 0)
			return
		}
		if !auth.Allow {
			status, msg := auth.Status, auth.Message
			if status < 400 || status > 599 {
				status = http.StatusForbidden
			}
			if msg == "" {
				msg = http.StatusText(status)
			}
			w.Header().Set("Connection", "close")
			skipBody(w, r)
			http.Error(w, msg, status)
			return
		}
	}
	// The fd is taken before the upgrade so that a sequence that cannot
	// hand one out (cluster mode, Redis away) is answered with 503; an fd
	// taken for a failed upgrade is simply never used.
	fd, err := h.fds.next()
	if err != nil {
		h.log.Warn("refusing connection: no fd", "remote", remote, "err", err)
		h.refuse(w, r, refFDUnavailable, time.Second)
		return
	}
	ws, deflate, err := h.upgrade(w, r)
	if err != nil {
		h.log.Debug("upgrade failed", "remote", remote, "err", err)
		return
	}
	if !h.handoff(s) {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	wk := h.workerOf(fd)
	bc, _ := ws.NetConn().(*bufConn)
	c := &conn{
		hub:    h,
		worker: wk,
		fd:     fd,
		ws:     ws,
		bc:     bc,
		slot:   s,
		info: keptInfo{
			path:        h.cfg.Paths[slices.Index(h.cfg.Paths, r.URL.Path)], // the same string, shared
			rawQuery:    strings.Clone(r.URL.RawQuery),
			header:      packHeader(h.keptHeaders(r.Header)),
			remote:      remote,
			subprotocol: ws.Subprotocol(),
			connectedAt: time.Now(),
		},
		pingedAt: time.Now().UnixNano(),
	}
	c.direct = bc != nil && !deflate && bc.raw != nil
	if h.poll != nil {
		c.polled = h.poll.adopt(c)
	}
	if h.cfg.Compression {
		ws.EnableWriteCompression(true)
	}
	connected = true // from here the connection's reader releases the slot
	wk.add(c)
	h.applyAuthorization(fd, auth)
	c.safely("open", c.opened) // before the reader: its events follow
	go c.run()
	if h.isClosed() { // Shutdown ran between handoff and add
		c.close(CloseGoingAway, "server shutting down", true)
	}
}

// applyAuthorization binds a new connection as its authorization says,
// before its open event.
func (h *Hub) applyAuthorization(fd int64, auth Authorization) {
	if auth.User != "" {
		if err := h.Bind(fd, auth.User); err != nil {
			h.log.Warn("authorization: cannot bind the user", "fd", fd, "err", err)
		}
	}
	for _, g := range auth.Groups {
		if err := h.Join(fd, g); err != nil {
			h.log.Warn("authorization: cannot join the group", "fd", fd, "group", g, "err", err)
		}
	}
}

// Push queues data for the connection fd. op is OpText, OpBinary, OpPing,
// OpPong, or OpContinuation while a fragmented message is open. finish=false
// opens (or continues) a fragmented message: the following pushes to this fd
// continue it until one has finish=true; broadcasts meanwhile wait. The
// continuing pushes are bounded by the message (MaxPushSize in all), not by
// the queue; an open message idle for Config.FragmentTimeout is aborted
// (close 1011). The Hub keeps data until it is written: the caller must not
// change it.
//
// Errors: ErrInvalidFD, ErrInvalidOpcode, ErrTooLarge, ErrInvalidUTF8
// (refused before anything is queued; an ErrTooLarge because the open
// fragmented message would pass MaxPushSize also closes the connection with
// 1011), ErrUnknownFD (no open connection), ErrQueueFull (the queue's bound
// or the Hub's MaxQueuedBytes: the overflow policy applied).
func (h *Hub) Push(fd int64, data []byte, op Opcode, finish bool) error {
	kind, err := h.checkPush(fd, data, op, finish)
	if err != nil {
		return fmt.Errorf("push to fd %d: %w", fd, err)
	}
	// A complete text message must be UTF-8. Whether this push completes
	// one or ends a fragmented message (whose fragments may split a
	// character) only the connection knows; the check itself runs here,
	// outside its lock.
	validText := op != OpText || !finish || utf8.Valid(data)
	c := h.lookup(fd)
	if c == nil {
		if !validText {
			return fmt.Errorf("push to fd %d: %w", fd, ErrInvalidUTF8)
		}
		h.notOpen.Add(1)
		h.tracePushNotOpen(fd, op, data, finish)
		return fmt.Errorf("push to fd %d: %w", fd, ErrUnknownFD)
	}
	if err := c.enqueue(item{kind: kind, op: op, finish: finish, validText: validText, data: data, size: len(data)}, true); err != nil {
		if err == ErrUnknownFD {
			h.notOpen.Add(1)
		}
		return fmt.Errorf("push to fd %d: %w", fd, err)
	}
	c.worker.pushed.Add(1)
	return nil
}

// CheckPush reports the errors Push would return whatever the state of fd
// (ErrInvalidFD, ErrInvalidOpcode, ErrTooLarge), so a batch can be refused
// whole before any of it is sent.
func (h *Hub) CheckPush(fd int64, data []byte, op Opcode, finish bool) error {
	_, err := h.checkPush(fd, data, op, finish)
	return err
}

func (h *Hub) checkPush(fd int64, data []byte, op Opcode, finish bool) (itemKind, error) {
	if !ValidFD(fd) {
		return 0, ErrInvalidFD
	}
	switch op {
	case OpText, OpBinary, OpContinuation:
		if len(data) > h.cfg.MaxPushSize {
			return 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), h.cfg.MaxPushSize)
		}
		return itemData, nil
	case OpPing, OpPong:
		if len(data) > maxControlPayload {
			return 0, fmt.Errorf("%w: a %s payload is at most %d bytes", ErrTooLarge, op, maxControlPayload)
		}
		if !finish {
			return 0, fmt.Errorf("%w: a %s cannot be fragmented", ErrInvalidOpcode, op)
		}
		return itemControl, nil
	}
	return 0, fmt.Errorf("%w: %d", ErrInvalidOpcode, int(op))
}

// Broadcast queues data for every open connection except those in except,
// and returns how many connections accepted it. The frame is encoded once
// (a gorilla PreparedMessage), not once per connection. op is OpText or
// OpBinary.
func (h *Hub) Broadcast(data []byte, op Opcode, except []int64) (int, error) {
	it, err := h.prepare(data, op)
	if err != nil {
		return 0, fmt.Errorf("broadcast: %w", err)
	}
	skip := newFDSet(except)
	buf := snapshotPool.Get().(*[]*conn)
	for _, w := range h.workers {
		*buf = w.snapshot(*buf)
	}
	n := h.deliver(*buf, it, skip)
	clear(*buf)
	*buf = (*buf)[:0]
	snapshotPool.Put(buf)
	return n, nil
}

// snapshotPool holds the slices a broadcast copies the connections into.
var snapshotPool = sync.Pool{New: func() any { return new([]*conn) }}

// prepare checks a message for many connections and encodes its frame once.
func (h *Hub) prepare(data []byte, op Opcode) (item, error) {
	if op != OpText && op != OpBinary {
		return item{}, fmt.Errorf("%w: %d (text or binary only)", ErrInvalidOpcode, int(op))
	}
	if len(data) > h.cfg.MaxPushSize {
		return item{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), h.cfg.MaxPushSize)
	}
	if op == OpText && !utf8.Valid(data) {
		return item{}, ErrInvalidUTF8
	}
	if h.isClosed() {
		return item{}, ErrHubClosed
	}
	pm, err := websocket.NewPreparedMessage(int(op), data)
	if err != nil {
		return item{}, err
	}
	ref := new(sharedPayload)
	if len(data)+10 <= directMaxFrame {
		ref.frame = serverFrame(op, data)
	}
	return item{kind: itemPrepared, op: op, finish: true, pm: pm, ref: ref, size: len(data)}, nil
}

// deliver queues a prepared item on each connection not in skip and returns
// how many accepted it.
func (h *Hub) deliver(conns []*conn, it item, skip fdSet) int {
	n := 0
	for _, c := range conns {
		if skip.has(c.fd) {
			continue
		}
		switch c.enqueue(it, false) {
		case nil:
			c.worker.pushed.Add(1)
			n++
		case ErrUnknownFD: // closing since the snapshot
			h.notOpen.Add(1)
		}
	}
	return n
}

// Disconnect sends a close frame with code (0 means 1000) and reason to fd
// after what is already queued for it, then closes the connection. It
// returns ErrUnknownFD when no open connection has this fd.
func (h *Hub) Disconnect(fd int64, code int, reason string) error {
	if !ValidFD(fd) {
		return fmt.Errorf("disconnect fd %d: %w", fd, ErrInvalidFD)
	}
	if code == 0 {
		code = websocket.CloseNormalClosure
	}
	if !validCloseCode(code) {
		return fmt.Errorf("disconnect fd %d: %w: %d", fd, ErrInvalidCloseCode, code)
	}
	if len(reason) > maxControlPayload-2 {
		return fmt.Errorf("disconnect fd %d: %w: a close reason is at most %d bytes", fd, ErrTooLarge, maxControlPayload-2)
	}
	if !utf8.ValidString(reason) {
		return fmt.Errorf("disconnect fd %d: %w", fd, ErrInvalidUTF8)
	}
	c := h.lookup(fd)
	if c == nil || !c.close(code, reason, true) {
		return fmt.Errorf("disconnect fd %d: %w", fd, ErrUnknownFD)
	}
	return nil
}

// Check reports whether fd is an open connection on this node.
func (h *Hub) Check(fd int64) bool {
	if !ValidFD(fd) {
		return false
	}
	c := h.lookup(fd)
	return c != nil && c.isOpen()
}

// Info returns what the bridge kept of fd's handshake.
func (h *Hub) Info(fd int64) (ConnInfo, bool) {
	var info ConnInfo
	err := h.indexed(fd, func(c *conn) error {
		info = c.connInfo()
		info.Groups = c.groupList()
		info.User = c.user
		return nil
	})
	return info, err == nil
}

// Count returns the number of connections open or being upgraded.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// Stats is a snapshot of the Hub's counters.
type Stats struct {
	NodeID      int           `json:"node_id"`
	Connections int           `json:"connections"`
	Workers     []WorkerStats `json:"workers"`
	// NotOpen counts the pushes (to one fd, to many, to groups, users and
	// broadcasts, per connection) that found no open connection.
	NotOpen uint64 `json:"not_open"`
	// Closes counts the connections that ended, by close code and side:
	// the non-zero counts only.
	Closes []CloseCount `json:"closes"`
	// Handshakes is the number of connections accepted by Server and not
	// yet upgraded (headers being read, handshake under way, refusal
	// being answered).
	Handshakes int `json:"handshakes"`
	// Refused counts the handshakes refused by the Hub's limits, by reason.
	Refused RefusedStats `json:"refused"`
	// HeadersTrimmed counts the connections whose kept handshake headers
	// were cut down to Config.MaxKeptHeaderBytes.
	HeadersTrimmed uint64 `json:"headers_trimmed"`
	// QueuedBytes is what the send queues of all connections hold now,
	// bounded by Config.MaxQueuedBytes.
	QueuedBytes int64 `json:"queued_bytes"`
	// BudgetRefused counts the pushes (per connection) refused because
	// QueuedBytes was at its budget; they count in Overflows too.
	BudgetRefused uint64 `json:"budget_refused"`
	// BudgetCloses counts the connections closed (1008) to bring
	// QueuedBytes back under its budget (OverflowClose).
	BudgetCloses uint64 `json:"budget_closes"`
	// Poll holds the poll mode's counters; nil in goroutine mode.
	Poll *PollStats `json:"poll,omitempty"`
}

// WorkerStats are one worker's counters since the Hub started.
type WorkerStats struct {
	ID          int    `json:"id"`
	Connections int    `json:"connections"`
	Opened      uint64 `json:"opened"`
	Closed      uint64 `json:"closed"`
	Pushed      uint64 `json:"pushed"`
	Overflows   uint64 `json:"overflows"`
	MessagesIn  uint64 `json:"messages_in"`
	BytesIn     uint64 `json:"bytes_in"`  // payload bytes of the messages received
	BytesOut    uint64 `json:"bytes_out"` // payload bytes of the messages written to clients
	// Refused counts the client messages not given to the Listener.
	Refused RefusedCounts `json:"refused"`
	// HeldOverflows counts the broadcasts refused because the queue of
	// those held behind an open fragmented message was full (they count
	// in Overflows too).
	HeldOverflows uint64 `json:"held_overflows"`
	// FragmentTimeouts counts the fragmented messages aborted (close 1011)
	// because no push continued them within Config.FragmentTimeout.
	FragmentTimeouts uint64 `json:"fragment_timeouts"`
	// FragmentTooLarge counts the fragmented messages aborted (close 1011)
	// because a push would have taken them past Config.MaxPushSize.
	FragmentTooLarge uint64 `json:"fragment_too_large"`
	// DirectWrites counts the messages written by the worker's flusher
	// (plain frames of broadcasts, group, user, many-fd pushes and whole
	// pushes, several to a system call) instead of a writer goroutine;
	// DirectPartial the flusher's writes that fit the socket only in part
	// (the rest was written by a writer goroutine).
	DirectWrites  uint64 `json:"direct_writes"`
	DirectPartial uint64 `json:"direct_partial"`
	// Delayed counts the times a connection's writer waited for
	// Config.WriteDelay to gather several messages into one write.
	Delayed uint64 `json:"delayed"`
	// Keepalive pings: PingsDirect were written at once by the worker's
	// keepalive goroutine (nothing was queued: no writer goroutine, no
	// buffer), PingsQueued were queued behind what the connection had
	// queued or was writing (or under TLS), PingsSkipped were not sent
	// because the connection's queue was full.
	PingsDirect  uint64 `json:"pings_direct"`
	PingsQueued  uint64 `json:"pings_queued"`
	PingsSkipped uint64 `json:"pings_skipped"`
}

// Stats returns per-worker counters.
func (h *Hub) Stats() Stats {
	s := Stats{NodeID: h.cfg.NodeID, Workers: make([]WorkerStats, len(h.workers)), NotOpen: h.notOpen.Load(), Closes: h.closeCounts(),
		Handshakes: int(h.adm.pending.Load()), Refused: h.adm.stats(), HeadersTrimmed: h.adm.headersTrimmed.Load(),
		QueuedBytes: h.budget.queued.Load(), BudgetRefused: h.budget.refused.Load(), BudgetCloses: h.budget.closed.Load(),
		Poll: h.poll.stats()}
	for i, w := range h.workers {
		ws := WorkerStats{
			ID: w.id, Connections: w.len(), Opened: w.opened.Load(), Closed: w.closed.Load(),
			Pushed: w.pushed.Load(), Overflows: w.overflows.Load(), MessagesIn: w.messagesIn.Load(),
			BytesIn: w.bytesIn.Load(), BytesOut: w.bytesOut.Load(), Refused: w.refusedCounts(),
			HeldOverflows: w.heldOverflows.Load(), FragmentTimeouts: w.fragTimeouts.Load(), FragmentTooLarge: w.fragTooLarge.Load(),
			DirectWrites: w.direct.Load(), DirectPartial: w.directPartial.Load(), Delayed: w.delayedCount(),
			PingsDirect: w.pingsDirect.Load(), PingsQueued: w.pingsQueued.Load(), PingsSkipped: w.pingsSkipped.Load(),
		}
		s.Connections += ws.Connections
		s.Workers[i] = ws
	}
	return s
}

// Shutdown refuses new connections, sends close 1001 to every client after
// what is queued for it, and waits until every connection has ended or ctx
// is done; then it closes the remaining sockets at once. It does not wait
// for handshakes under way (in Authorize, say): one that completes later is
// closed with 1001 at once. It is idempotent and returns ctx.Err() when the
// deadline forced connections closed.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.stopOnce.Do(func() { close(h.stop) })

	h.eachConn(func(c *conn) { c.close(CloseGoingAway, "server shutting down", true) })
	done := make(chan struct{})
	go func() {
		h.readers.Wait()
		h.keepalive.Wait()
		h.stopFlushers() // after the readers: a connection's end waits for its flush
		h.stopWriters()
		if h.poll != nil {
			h.poll.stop() // after the readers: no connection is left to read
		}
		close(done)
	}()
	select {
	case <-done:
		h.settle(ctx)
		return nil
	case <-ctx.Done():
	}
	h.eachConn(func(c *conn) { c.closeSocket() })
	<-done // every reader returns once its socket is closed
	return ctx.Err()
}

// settle lets the Sequence make its promise hold across a restart
// (ClockSequence waits until the clock has passed the last fd).
func (h *Hub) settle(ctx context.Context) {
	st, ok := h.cfg.Sequence.(Settler)
	if !ok {
		return
	}
	if err := st.Settle(ctx); err != nil {
		h.log.Warn("fd sequence not settled", "err", err)
	}
}

func (h *Hub) eachConn(f func(*conn)) {
	var buf []*conn
	for _, w := range h.workers {
		buf = w.snapshot(buf[:0])
		for _, c := range buf {
			f(c)
		}
	}
}

// fdSet is a set of fds: a scan for the short except lists of the common
// case, a map for long ones.
type fdSet struct {
	list []int64
	m    map[int64]struct{}
}

func newFDSet(fds []int64) fdSet {
	if len(fds) <= 16 {
		return fdSet{list: fds}
	}
	m := make(map[int64]struct{}, len(fds))
	for _, fd := range fds {
		m[fd] = struct{}{}
	}
	return fdSet{m: m}
}

func (s fdSet) has(fd int64) bool {
	if s.m != nil {
		_, ok := s.m[fd]
		return ok
	}
	return slices.Contains(s.list, fd)
}

// originChecker allows requests without an Origin header (non-browser
// clients), and browser requests whose Origin matches one of the patterns,
// or, with no patterns, whose Origin host equals the request's Host.
func originChecker(patterns []string) func(*http.Request) bool {
	lower := make([]string, len(patterns))
	for i, p := range patterns {
		lower[i] = strings.ToLower(strings.TrimSpace(p))
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" {
			return true
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			return false
		}
		if len(lower) == 0 {
			return strings.EqualFold(u.Host, r.Host)
		}
		o := strings.ToLower(u.Scheme + "://" + u.Host)
		for _, p := range lower {
			if p == "*" {
				return true
			}
			if ok, _ := path.Match(p, o); ok {
				return true
			}
		}
		return false
	}
}

package bridge

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// A connection's trace: the last frames it read and wrote and the last
// pushes addressed to it, with their outcome, kept in a small ring while an
// operator watches it (the admin console's connection page). A trace is on
// for a bounded time (Hub.Trace; the watcher renews it) and at most
// MaxTraces connections are traced at once. Off, it costs each message one
// atomic load of a nil pointer (connTrace.ring) and the connection's two
// byte counters.
//
// The hooks, each one line in the connection's code: frameIn (reader, after
// a message is read), frameOut (writer, after an item is written), pushed
// (conn.enqueue: every push that reaches the connection, its outcome),
// closed (finish: how the connection ended) and Hub.tracePushNotOpen (a
// push to an fd that is traced but no longer open).

// Bounds of the traces.
const (
	// TraceSize is the number of entries each of a trace's three rings
	// (frames in, frames out, pushes) keeps; older ones are overwritten
	// and counted.
	TraceSize = 64
	// MaxTraces bounds the connections traced at once on a Hub.
	MaxTraces = 32
	// MaxTraceDuration bounds the time one Hub.Trace turns a trace on for.
	MaxTraceDuration = 10 * time.Minute
	// TracePreview is the most payload bytes an entry keeps (binary ones
	// half as many, shown in hex).
	TracePreview = 64
)

// ErrTooManyTraces: MaxTraces connections are traced already.
var ErrTooManyTraces = errors.New("bridge: too many connections traced at once")

// Kinds of TraceEntry.
const (
	TraceIn    = "in"    // a message read from the client (given to the application)
	TraceOut   = "out"   // a frame written to the client
	TracePush  = "push"  // a push that reached the connection (or found it closed)
	TraceClose = "close" // the connection ended
)

// TraceEntry is one event of a trace.
type TraceEntry struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Opcode Opcode    `json:"opcode"`
	Size   int       `json:"size"` // payload bytes
	// Outcome: for a push, "queued", or why not (queue_full, not_open, an
	// error); for a frame out, "written" or the write's error; for a
	// close, its code and reason; empty for a frame in.
	Outcome string `json:"outcome,omitempty"`
	// Broadcast: a push to many connections (group, user, everyone), not
	// to this fd alone.
	Broadcast bool `json:"broadcast,omitempty"`
	Finish    bool `json:"finish"` // false: a fragment of a message that continues
	// Preview is the start of the payload: text as it is (cut at a
	// character), binary in hex; Truncated when there was more.
	Preview   string `json:"preview"`
	Binary    bool   `json:"binary,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Trace is a snapshot of one connection's trace, oldest entries first.
type Trace struct {
	FD     int64     `json:"fd"`
	Active bool      `json:"active"` // still recording
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"` // when it stops unless renewed
	// In, Out and Pushes are the last TraceSize of each; Lost counts the
	// older entries overwritten, by kind.
	In     []TraceEntry `json:"in"`
	Out    []TraceEntry `json:"out"`
	Pushes []TraceEntry `json:"pushes"`
	Closed *TraceEntry  `json:"closed,omitempty"`
	Lost   TraceLost    `json:"lost"`
}

// TraceLost counts the entries a trace's rings have overwritten.
type TraceLost struct {
	In     uint64 `json:"in"`
	Out    uint64 `json:"out"`
	Pushes uint64 `json:"pushes"`
}

// ConnStats is what GET /v1/connections/{fd}/trace says of the connection
// beside its trace: its send queue now and its bytes since it opened.
type ConnStats struct {
	Queued      int    `json:"queued"`       // messages waiting in the send queue
	QueuedBytes int    `json:"queued_bytes"` // their payload bytes
	Held        int    `json:"held"`         // broadcasts held behind an open fragmented message
	BytesIn     uint64 `json:"bytes_in"`     // payload bytes of the messages read
	BytesOut    uint64 `json:"bytes_out"`    // payload bytes of the messages written
}

// connTrace is a connection's byte counters and its trace ring, nil when
// nobody watches.
type connTrace struct {
	ring     atomic.Pointer[traceRing]
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
}

// frameIn notes a message read from the client (the reader's hook).
func (t *connTrace) frameIn(mt int, data []byte) {
	t.bytesIn.Add(uint64(len(data)))
	if r := t.ring.Load(); r != nil {
		r.add(&r.in, entry(TraceIn, Opcode(mt), data, len(data), true))
	}
}

// frameOut notes an item the writer wrote, or failed to (its hook).
func (t *connTrace) frameOut(it *item, err error) {
	if err == nil && (it.kind == itemData || it.kind == itemPrepared) {
		t.bytesOut.Add(uint64(it.size))
	}
	if r := t.ring.Load(); r != nil {
		r.add(&r.out, outEntry(it, err))
	}
}

// closed notes how the connection ended (finish's hook).
func (t *connTrace) closed(ev CloseEvent) {
	if r := t.ring.Load(); r != nil {
		by := "client"
		if ev.ByServer {
			by = "server"
		}
		e := TraceEntry{At: time.Now(), Kind: TraceClose, Outcome: fmt.Sprintf("%d by %s", ev.Code, by), Finish: true}
		if ev.Reason != "" {
			e.Outcome += ": " + ev.Reason
		}
		r.mu.Lock()
		r.closed = &e
		r.mu.Unlock()
	}
}

// pushed notes a push that reached the connection and returns its error
// (conn.enqueue's hook, when a ring is attached). The bridge's own pings
// and pong replies are not pushes: their frames show in Out.
func (r *traceRing) pushed(it *item, directed bool, err error) error {
	if it.kind == itemControl && !directed || it.kind == itemClose {
		return err
	}
	e := entry(TracePush, it.op, it.data, it.size, it.finish)
	e.Broadcast = !directed
	e.Outcome = pushOutcome(err)
	r.add(&r.push, e)
	return err
}

func pushOutcome(err error) string {
	switch {
	case err == nil:
		return "queued"
	case errors.Is(err, ErrQueueFull):
		return "queue_full"
	case errors.Is(err, ErrUnknownFD):
		return "not_open"
	}
	return err.Error()
}

func outEntry(it *item, err error) TraceEntry {
	var e TraceEntry
	switch it.kind {
	case itemClose:
		e = TraceEntry{At: time.Now(), Kind: TraceOut, Opcode: opClose, Size: len(it.data), Finish: true,
			Preview: fmt.Sprintf("%d %s", it.code, it.data)}
	case itemPrepared:
		e = TraceEntry{At: time.Now(), Kind: TraceOut, Opcode: it.op, Size: it.size, Finish: true, Broadcast: true}
	default:
		e = entry(TraceOut, it.op, it.data, it.size, it.finish)
	}
	e.Outcome = "written"
	if err != nil {
		e.Outcome = err.Error()
	}
	return e
}

// entry makes an entry with a preview of data: text as it is, cut at a
// character; binary data (or text that is not UTF-8, a fragment that
// split a character) in hex.
func entry(kind string, op Opcode, data []byte, size int, finish bool) TraceEntry {
	e := TraceEntry{At: time.Now(), Kind: kind, Opcode: op, Size: size, Finish: finish}
	n := min(len(data), TracePreview)
	for n > 0 && n < len(data) && !utf8.RuneStart(data[n]) {
		n--
	}
	if op != OpBinary && utf8.Valid(data[:n]) {
		e.Preview, e.Truncated = string(data[:n]), n < len(data)
		return e
	}
	n = min(len(data), TracePreview/2)
	e.Preview, e.Binary, e.Truncated = hex.EncodeToString(data[:n]), true, n < len(data)
	return e
}

// opClose is the close frame's opcode, for the trace.
const opClose Opcode = 8

// ring is TraceSize entries, the oldest overwritten.
type ring struct {
	e [TraceSize]TraceEntry
	n uint64 // entries ever added
}

func (g *ring) list() []TraceEntry {
	out := make([]TraceEntry, 0, min(g.n, TraceSize))
	for i := g.n - min(g.n, TraceSize); i < g.n; i++ {
		out = append(out, g.e[i%TraceSize])
	}
	return out
}

func (g *ring) lost() uint64 { return g.n - min(g.n, TraceSize) }

// traceRing is one connection's trace.
type traceRing struct {
	fd    int64
	c     *conn // nil once detached
	since time.Time

	mu     sync.Mutex
	in     ring
	out    ring
	push   ring
	closed *TraceEntry
	until  time.Time
	timer  *time.Timer
}

func (r *traceRing) add(g *ring, e TraceEntry) {
	r.mu.Lock()
	g.e[g.n%TraceSize] = e
	g.n++
	r.mu.Unlock()
}

func (r *traceRing) snapshot(now time.Time) Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := Trace{FD: r.fd, Active: now.Before(r.until), Since: r.since, Until: r.until,
		In: r.in.list(), Out: r.out.list(), Pushes: r.push.list(),
		Lost: TraceLost{In: r.in.lost(), Out: r.out.lost(), Pushes: r.push.lost()}}
	if r.closed != nil {
		c := *r.closed
		t.Closed = &c
	}
	return t
}

// traceSet is a Hub's traces by fd. A trace stays readable until its time
// is up, after its connection has ended too.
type traceSet struct {
	mu sync.Mutex
	m  map[int64]*traceRing
	n  atomic.Int32 // len(m): a push to a closed fd looks at m only when some trace is on
}

// Trace turns fd's trace on for d (at most MaxTraceDuration), or renews
// it, and returns when it stops unless renewed. Errors: ErrInvalidFD,
// ErrUnknownFD (not an open connection of this node), ErrTooManyTraces.
func (h *Hub) Trace(fd int64, d time.Duration) (time.Time, error) {
	if !ValidFD(fd) {
		return time.Time{}, fmt.Errorf("trace fd %d: %w", fd, ErrInvalidFD)
	}
	d = min(max(d, time.Second), MaxTraceDuration)
	s := &h.traces
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[fd]
	if r == nil {
		c := h.lookup(fd)
		if c == nil || !c.isOpen() {
			return time.Time{}, fmt.Errorf("trace fd %d: %w", fd, ErrUnknownFD)
		}
		if len(s.m) >= MaxTraces {
			return time.Time{}, fmt.Errorf("trace fd %d: %w (%d)", fd, ErrTooManyTraces, MaxTraces)
		}
		if s.m == nil {
			s.m = make(map[int64]*traceRing)
		}
		r = &traceRing{fd: fd, c: c, since: time.Now()}
		s.m[fd] = r
		s.n.Store(int32(len(s.m)))
		c.tr.ring.Store(r)
	}
	r.mu.Lock()
	r.until = time.Now().Add(d)
	until := r.until
	if r.timer == nil {
		r.timer = time.AfterFunc(d, func() { h.expireTrace(r) })
	} else {
		r.timer.Reset(d)
	}
	r.mu.Unlock()
	return until, nil
}

// StopTrace turns fd's trace off and forgets it; false when it had none.
func (h *Hub) StopTrace(fd int64) bool {
	s := &h.traces
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[fd]
	if r == nil {
		return false
	}
	r.mu.Lock()
	r.timer.Stop()
	r.mu.Unlock()
	s.removeLocked(r)
	return true
}

// expireTrace forgets r once its time is up (its timer's function).
func (h *Hub) expireTrace(r *traceRing) {
	s := &h.traces
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	renewed := time.Now().Before(r.until)
	r.mu.Unlock()
	if !renewed && s.m[r.fd] == r {
		s.removeLocked(r)
	}
}

func (s *traceSet) removeLocked(r *traceRing) {
	delete(s.m, r.fd)
	s.n.Store(int32(len(s.m)))
	r.c.tr.ring.CompareAndSwap(r, nil)
}

// TraceOf returns fd's trace; false when it has none (never turned on,
// or its time is up).
func (h *Hub) TraceOf(fd int64) (Trace, bool) {
	s := &h.traces
	s.mu.Lock()
	r := s.m[fd]
	s.mu.Unlock()
	if r == nil {
		return Trace{}, false
	}
	return r.snapshot(time.Now()), true
}

// Traced lists the fds traced now.
func (h *Hub) Traced() []int64 {
	s := &h.traces
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, 0, len(s.m))
	for fd := range s.m {
		out = append(out, fd)
	}
	return out
}

// tracePushNotOpen notes a push to fd that found no open connection, when
// fd's trace is still kept (Hub.Push's hook).
func (h *Hub) tracePushNotOpen(fd int64, op Opcode, data []byte, finish bool) {
	s := &h.traces
	if s.n.Load() == 0 {
		return
	}
	s.mu.Lock()
	r := s.m[fd]
	s.mu.Unlock()
	if r != nil {
		e := entry(TracePush, op, data, len(data), finish)
		e.Outcome = "not_open"
		r.add(&r.push, e)
	}
}

// ConnStats returns fd's send queue and byte counts; false when fd is not
// an open connection of this node.
func (h *Hub) ConnStats(fd int64) (ConnStats, bool) {
	if !ValidFD(fd) {
		return ConnStats{}, false
	}
	c := h.lookup(fd)
	if c == nil {
		return ConnStats{}, false
	}
	c.mu.Lock()
	st := ConnStats{Queued: c.queuedLocked(), QueuedBytes: c.queuedBytes, Held: len(c.held)}
	open := c.state == stateOpen
	c.mu.Unlock()
	st.BytesIn, st.BytesOut = c.tr.bytesIn.Load(), c.tr.bytesOut.Load()
	return st, open
}

package bridge

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Admitter is implemented by a Listener that may refuse new connections,
// for instance while it cannot keep up with the events it already holds.
// When Config.Listener implements it, every handshake that passes the
// Hub's own limits asks Admit before the upgrade; a non-nil error refuses
// the handshake with HTTP 503 and Retry-After, counted as
// RefusedEventsBacklog. Admit runs on the handshake's goroutine and must
// not block.
type Admitter interface {
	Admit() error
}

// Reasons a handshake is refused, as counted in Stats.Refused and in the
// wsbridge_handshakes_refused_total metric.
const (
	RefusedShuttingDown   = "shutting_down"   // 503: the Hub is shutting down
	RefusedMaxConnections = "max_connections" // 503: Config.MaxConnections reached
	RefusedPerIP          = "per_ip"          // 503: Config.MaxConnectionsPerIP reached for the client's address
	RefusedHandshakes     = "handshakes"      // 503: Config.MaxHandshakes connections not yet upgraded
	RefusedRate           = "rate"            // 429: Config.AcceptRate exceeded
	RefusedEventsBacklog  = "events_backlog"  // 503: the Listener's Admit refused
	RefusedInternalError  = "internal_error"  // 500: a panic in Authorize or Admit
	RefusedFDUnavailable  = "fd_unavailable"  // 503: Config.Sequence handed out no fd (ErrFDUnavailable, ErrFDSpaceExhausted)
)

// RefusedStats counts the handshakes refused, by reason.
type RefusedStats struct {
	ShuttingDown   uint64 `json:"shutting_down"`
	MaxConnections uint64 `json:"max_connections"`
	PerIP          uint64 `json:"per_ip"`
	Handshakes     uint64 `json:"handshakes"`
	Rate           uint64 `json:"rate"`
	EventsBacklog  uint64 `json:"events_backlog"`
	InternalError  uint64 `json:"internal_error"`
	FDUnavailable  uint64 `json:"fd_unavailable"`
}

// refusal is one reason to refuse a handshake.
type refusal uint8

const (
	admitted refusal = iota
	refShuttingDown
	refMaxConnections
	refPerIP
	refHandshakes
	refRate
	refEventsBacklog
	refInternalError
	refFDUnavailable
	numRefusals
)

var refusalInfo = [numRefusals]struct {
	status  int
	message string
}{
	refShuttingDown:   {http.StatusServiceUnavailable, "shutting down"},
	refMaxConnections: {http.StatusServiceUnavailable, "connection limit reached"},
	refPerIP:          {http.StatusServiceUnavailable, "connection limit per client address reached"},
	refHandshakes:     {http.StatusServiceUnavailable, "too many handshakes in progress"},
	refRate:           {http.StatusTooManyRequests, "too many new connections"},
	refEventsBacklog:  {http.StatusServiceUnavailable, "the application is not keeping up"},
	refInternalError:  {http.StatusInternalServerError, "internal error"},
	refFDUnavailable:  {http.StatusServiceUnavailable, "no fd available, try again"},
}

// admission holds what the Hub's handshake limits count; the maps and the
// bucket are guarded by Hub.mu.
type admission struct {
	perIP     map[netip.Addr]int // client address key → connections; entries at 0 are deleted
	pendingIP map[netip.Addr]int // peer address key → connections not yet upgraded (not from trusted proxies)
	bucket    tokenBucket
	pending   atomic.Int64 // accepted connections neither upgraded nor closed (Server's ConnState)
	refused   [numRefusals]atomic.Uint64
	// headersTrimmed counts the connections whose kept headers were cut
	// down to Config.MaxKeptHeaderBytes.
	headersTrimmed atomic.Uint64
}

func (a *admission) stats() RefusedStats {
	return RefusedStats{
		ShuttingDown: a.refused[refShuttingDown].Load(), MaxConnections: a.refused[refMaxConnections].Load(),
		PerIP: a.refused[refPerIP].Load(), Handshakes: a.refused[refHandshakes].Load(), Rate: a.refused[refRate].Load(),
		EventsBacklog: a.refused[refEventsBacklog].Load(), InternalError: a.refused[refInternalError].Load(),
		FDUnavailable: a.refused[refFDUnavailable].Load(),
	}
}

// slot is what one admitted handshake holds until its connection ends.
type slot struct {
	ip     netip.Addr // the per-IP key charged; invalid when none
	reader bool       // counted in Hub.readers (handed to a connection)
	freed  bool
}

// acquire admits a handshake from client (the per-IP key, invalid when
// unknown) or says why not; retry is the Retry-After of a refusal.
func (h *Hub) acquire(client netip.Addr) (s *slot, why refusal, retry time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, refShuttingDown, time.Second
	case h.count >= h.cfg.MaxConnections:
		return nil, refMaxConnections, time.Second
	case h.cfg.MaxConnectionsPerIP > 0 && client.IsValid() && h.adm.perIP[client] >= h.cfg.MaxConnectionsPerIP:
		return nil, refPerIP, time.Second
	}
	if h.cfg.AcceptRate > 0 {
		if ok, wait := h.adm.bucket.take(time.Now()); !ok {
			return nil, refRate, wait
		}
	}
	s = &slot{}
	if h.cfg.MaxConnectionsPerIP > 0 && client.IsValid() {
		h.adm.perIP[client]++
		s.ip = client
	}
	h.count++
	return s, admitted, 0
}

// handoff makes an upgraded handshake's slot a connection's, which
// Shutdown waits for; it reports false when the Hub has shut down
// meanwhile. Shutdown does not wait for handshakes: one still in Authorize
// or the upgrade when it starts is refused here.
func (h *Hub) handoff(s *slot) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.readers.Add(1)
	s.reader = true
	return true
}

// release gives back what acquire took; it is idempotent.
func (h *Hub) release(s *slot) {
	h.mu.Lock()
	if s.freed {
		h.mu.Unlock()
		return
	}
	s.freed = true
	h.count--
	if s.ip.IsValid() {
		if n := h.adm.perIP[s.ip] - 1; n > 0 {
			h.adm.perIP[s.ip] = n
		} else {
			delete(h.adm.perIP, s.ip)
		}
	}
	h.mu.Unlock()
	if s.reader {
		h.readers.Done()
	}
}

// refuse answers a refused handshake, counts it, and closes the HTTP
// connection after the answer (a refused client has nothing more to say).
func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, why refusal, retry time.Duration) {
	skipBody(w, r)
	h.adm.refused[why].Add(1)
	info := refusalInfo[why]
	if info.status != http.StatusInternalServerError {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(retry)))
	}
	w.Header().Set("Connection", "close")
	http.Error(w, "wsbridge: "+info.message, info.status)
}

// skipBody keeps net/http from reading what is left of a refused request's
// body (it would wait up to the read timeout for a body announced and never
// sent): the read deadline passes at once, and the connection is closed
// after the answer.
func skipBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// tokenBucket limits a rate with a burst: tokens refill at rate per second
// up to burst; each admission takes one.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate float64, burst int) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes a token if there is one; otherwise it says how long until
// there is.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// safely runs f and reports a panic as false, logged with its stack.
func safely(log *slog.Logger, what string, f func()) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in "+what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ok = false
		}
	}()
	f()
	return true
}

// clientAddr returns the client's address: the TCP peer, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that
// is not a trusted proxy (X-Real-IP when there is no X-Forwarded-For).
// remote is what ConnInfo.RemoteAddr reports: the peer's "ip:port", or
// "ip:0" for an address taken from a header. key is the per-IP limit's
// key: the address, or its /64 for IPv6; invalid when the address is
// unknown.
func (h *Hub) clientAddr(r *http.Request) (remote string, key netip.Addr) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr, netip.Addr{}
	}
	ip := peer.Addr().Unmap()
	if len(h.cfg.TrustedProxies) > 0 && h.trusted(ip) {
		if fwd, ok := h.forwardedFor(r.Header); ok {
			return netip.AddrPortFrom(fwd, 0).String(), ipKey(fwd)
		}
	}
	return r.RemoteAddr, ipKey(ip)
}

func (h *Hub) trusted(ip netip.Addr) bool {
	return slices.ContainsFunc(h.cfg.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// forwardedFor reads the client's address from the proxy headers: the
// right-most X-Forwarded-For entry that is not a trusted proxy (entries to
// the left of it were written by the client and prove nothing). An entry
// that does not parse stops the walk: the address to its right, which a
// trusted proxy wrote, is the client. Every entry trusted: the left-most.
func (h *Hub) forwardedFor(hdr http.Header) (netip.Addr, bool) {
	values := hdr.Values("X-Forwarded-For")
	if len(values) == 0 {
		if ip, ok := parseForwarded(hdr.Get("X-Real-IP")); ok {
			return ip, true
		}
		return netip.Addr{}, false
	}
	var last netip.Addr // the left-most trusted entry seen so far
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			ip, ok := parseForwarded(parts[j])
			if !ok {
				return last, last.IsValid()
			}
			if !h.trusted(ip) {
				return ip, true
			}
			last = ip
		}
	}
	return last, last.IsValid()
}

// parseForwarded parses one forwarded address: an IP, with or without a
// port ("203.0.113.9", "203.0.113.9:4711", "[2001:db8::1]:4711").
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return ip.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// ipKey is the per-IP limit's key of an address: IPv4 addresses count
// alone, IPv6 ones by their /64 (one subscriber's network).
func ipKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip
	}
	p, _ := ip.Prefix(64)
	return p.Addr()
}

// connState counts the connections accepted by Server that have not been
// upgraded yet, in total and, with Config.MaxConnectionsPerIP, per peer
// address that is not a trusted proxy (a proxy's clients are told apart
// only once their headers are read); a new connection past either cap
// (Config.MaxHandshakes, Config.MaxConnectionsPerIP) is refused.
func (h *Hub) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		n := h.adm.pending.Add(1)
		ipOver := false
		if key, ok := h.pendingKey(c); ok {
			h.mu.Lock()
			m := h.adm.pendingIP[key] + 1
			h.adm.pendingIP[key] = m
			h.mu.Unlock()
			ipOver = m > h.cfg.MaxConnectionsPerIP
		}
		switch {
		case n > int64(h.cfg.MaxHandshakes):
			h.adm.refused[refHandshakes].Add(1)
			refuseRaw(c, handshakesRefusedResponse)
		case ipOver:
			h.adm.refused[refPerIP].Add(1)
			refuseRaw(c, perIPRefusedResponse)
		}
	case http.StateHijacked, http.StateClosed:
		h.adm.pending.Add(-1)
		if key, ok := h.pendingKey(c); ok {
			h.mu.Lock()
			if m := h.adm.pendingIP[key] - 1; m > 0 {
				h.adm.pendingIP[key] = m
			} else {
				delete(h.adm.pendingIP, key)
			}
			h.mu.Unlock()
		}
	}
}

// pendingKey is the per-IP key a connection not yet upgraded is counted
// under: its peer's, unless the per-IP cap is off or the peer is a
// trusted proxy.
func (h *Hub) pendingKey(c net.Conn) (netip.Addr, bool) {
	if h.cfg.MaxConnectionsPerIP == 0 {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	ip := ap.Addr().Unmap()
	if h.trusted(ip) {
		return netip.Addr{}, false
	}
	return ipKey(ip), true
}

// refuseRaw answers a connection refused before its request was read, on
// the accepting goroutine: a plain TCP connection gets a 503 (the write
// goes to an empty socket buffer, bounded by a short deadline anyway);
// anything else (TLS, whose handshake would cost what the refusal saves) is
// closed without an answer.
func refuseRaw(c net.Conn, response []byte) {
	if _, ok := c.(*net.TCPConn); ok {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		_, _ = c.Write(response)
	}
	_ = c.Close()
}

var (
	handshakesRefusedResponse = rawResponse(refHandshakes)
	perIPRefusedResponse      = rawResponse(refPerIP)
)

// rawResponse is the whole HTTP answer of a refusal made before the
// request is read.
func rawResponse(why refusal) []byte {
	info := refusalInfo[why]
	body := "wsbridge: " + info.message + "\n"
	return []byte(fmt.Sprintf("HTTP/1.1 %d %s\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s",
		info.status, http.StatusText(info.status), len(body), body))
}

// keptHeaders returns the handshake headers kept with a connection: all of
// them when they fit in Config.MaxKeptHeaderBytes (counted as on the wire:
// name, ": ", value, CRLF per value), otherwise the ones users need most
// first (keptFirst, in that order), then the others smallest first, each
// whole or not at all.
func (h *Hub) keptHeaders(hdr http.Header) http.Header {
	limit := h.cfg.MaxKeptHeaderBytes
	total := 0
	for name, vs := range hdr {
		total += headerSize(name, vs)
	}
	if total <= limit {
		return hdr
	}
	h.adm.headersTrimmed.Add(1)
	kept := make(http.Header)
	size := 0
	for _, name := range keptFirst {
		if vs, ok := hdr[name]; ok {
			if n := headerSize(name, vs); size+n <= limit {
				kept[name] = vs
				size += n
			}
		}
	}
	others := make([]string, 0, len(hdr))
	for name := range hdr {
		if _, ok := kept[name]; !ok && !slices.Contains(keptFirst, name) {
			others = append(others, name)
		}
	}
	slices.SortFunc(others, func(a, b string) int {
		if d := headerSize(a, hdr[a]) - headerSize(b, hdr[b]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, name := range others {
		n := headerSize(name, hdr[name])
		if size+n > limit {
			break
		}
		kept[name] = hdr[name]
		size += n
	}
	return kept
}

// keptFirst are the headers kept before any other when the handshake's
// headers exceed Config.MaxKeptHeaderBytes (canonical names).
var keptFirst = []string{
	"Host", "Origin", "Authorization", "Sec-Websocket-Protocol", "X-Forwarded-For", "X-Real-Ip",
	"X-Forwarded-Proto", "X-Forwarded-Host", "User-Agent", "Accept-Language", "Cookie",
}

func headerSize(name string, vs []string) int {
	n := 0
	for _, v := range vs {
		n += len(name) + len(v) + 4
	}
	return n
}

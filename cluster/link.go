package cluster

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// A link is a direct TCP connection from one node to another that carries
// the frames of the calls for the other node's fds and their answers,
// instead of a publish to its channel through Redis: two hand-overs
// between processes instead of four, and no Redis work. Redis stays the
// path of everything else (groups, users, broadcast, membership), and of
// these calls whenever no link is up.
//
// A node with WSBRIDGE_CLUSTER_LINK listens and puts the address others
// dial in its registry record; a node that sends frames to it dials it and
// writes (one connection per direction: the answers come back on the
// other node's own link, or through Redis). Both ends prove they hold
// the cluster's link secret, a random value kept in Redis (so the
// trust is the same as for the node channels: whoever can use the
// cluster's Redis can call its nodes), and that they are the node ids
// and generations the registry names:
//
//	dialer   → listener  hello: "WSBL", version 1, from id (uint16), from gen (uint64), to id, to gen, nonce (16 bytes)
//	listener → dialer    "WSBL", 1, id, gen, nonce (16 bytes), HMAC-SHA256(secret, "listener" | hello | its own first 31 bytes)
//	dialer   → listener  HMAC-SHA256(secret, "dialer" | hello | the listener's 31 bytes)
//	listener → dialer    1 (accepted; a refused dialer sees the connection close instead)
//
// then frames, each a big-endian uint32 length and the frame's bytes
// (the format of the channels' messages, message.go), from dialer to
// listener only. A frame whose sender is not the authenticated node is
// dropped and counted.

const (
	linkMagic    = "WSBL"
	linkVersion  = 1
	linkHelloLen = 4 + 1 + 2 + 8 + 2 + 8 + 16 // 41
	linkReplyLen = 4 + 1 + 2 + 8 + 16         // 31, before its MAC
	linkMACLen   = sha256.Size
	linkNonceLen = 16
	// MaxLinkHandshakes bounds the connections to a link listener that
	// have not finished their handshake; more are closed at once.
	MaxLinkHandshakes = 64
	// MaxLinksIn bounds the authenticated links into one node: one per
	// other node, and the older ones of nodes that dialed again, until
	// they are read to their end.
	MaxLinksIn = 2 * (maxNodeID + 1)
	// maxLinksPerNode bounds the links of one node into another (its
	// current one, and older ones still read to their end).
	maxLinksPerNode = 4
	// maxHandshakesPerIP bounds the connections of one address in their
	// handshake, so that one client cannot take every handshake slot.
	maxHandshakesPerIP = 8
	// linkHelloLimit bounds the wait for a dialer's hello (which it sends
	// at once).
	linkHelloLimit = 2 * time.Second
	linkWarnEvery  = 10 * time.Second
	// linkUserTimeout: data unacknowledged for this long breaks a link
	// (linkSocket, Linux).
	linkUserTimeout = 5 * time.Second
)

// linkKeepAlive probes an idle link, both ends: a machine that is gone
// without closing its connections (crashed, cut off) breaks its links in
// about 5 s, before its claim expires and another node may take its id.
var linkKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3}

const (
	linkRedial    = 250 * time.Millisecond // first wait before dialing a node again after a failure
	linkRedialMax = 10 * time.Second
)

// linkHandshakeLimit: a connection that has not proved itself by then is
// closed.
const linkHandshakeLimit = 5 * time.Second

// linkHello is the dialer's first message.
type linkHello struct {
	from, to       int
	fromGen, toGen int64
	nonce          [linkNonceLen]byte
}

func (h *linkHello) encode() []byte {
	b := make([]byte, 0, linkHelloLen)
	b = append(b, linkMagic...)
	b = append(b, linkVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(h.from))
	b = binary.BigEndian.AppendUint64(b, uint64(h.fromGen))
	b = binary.BigEndian.AppendUint16(b, uint16(h.to))
	b = binary.BigEndian.AppendUint64(b, uint64(h.toGen))
	return append(b, h.nonce[:]...)
}

var errLinkHello = errors.New("cluster: not a link hello")

// parseLinkHello decodes a dialer's hello of linkHelloLen bytes.
func parseLinkHello(b []byte) (linkHello, error) {
	var h linkHello
	if len(b) != linkHelloLen || string(b[:4]) != linkMagic {
		return h, errLinkHello
	}
	if b[4] != linkVersion {
		return h, fmt.Errorf("%w: version %d, this node speaks %d", errLinkHello, b[4], linkVersion)
	}
	h.from = int(binary.BigEndian.Uint16(b[5:]))
	h.fromGen = int64(binary.BigEndian.Uint64(b[7:]))
	h.to = int(binary.BigEndian.Uint16(b[15:]))
	h.toGen = int64(binary.BigEndian.Uint64(b[17:]))
	copy(h.nonce[:], b[25:])
	if h.from > maxNodeID || h.to > maxNodeID || h.fromGen <= 0 || h.toGen <= 0 {
		return h, fmt.Errorf("%w: node %d (gen %d) to node %d (gen %d) out of range", errLinkHello, h.from, h.fromGen, h.to, h.toGen)
	}
	return h, nil
}

// linkReply is the listener's answer to a hello: who it is, before its MAC.
func linkReply(id int, gen int64, nonce [linkNonceLen]byte) []byte {
	b := make([]byte, 0, linkReplyLen+linkMACLen)
	b = append(b, linkMagic...)
	b = append(b, linkVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(id))
	b = binary.BigEndian.AppendUint64(b, uint64(gen))
	return append(b, nonce[:]...)
}

// parseLinkReply decodes the listener's reply (without its MAC).
func parseLinkReply(b []byte) (id int, gen int64, err error) {
	if len(b) != linkReplyLen || string(b[:4]) != linkMagic || b[4] != linkVersion {
		return 0, 0, errors.New("cluster: not a link reply")
	}
	return int(binary.BigEndian.Uint16(b[5:])), int64(binary.BigEndian.Uint64(b[7:])), nil
}

// linkMAC is the proof of the secret of one side of a handshake.
func linkMAC(secret []byte, side string, hello, reply []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(side))
	m.Write(hello)
	m.Write(reply)
	return m.Sum(nil)
}

// errLinkFrame is a frame a link cannot carry: out of bounds, or cut
// short; an error without it is the connection's.
var errLinkFrame = errors.New("cluster: a link frame")

// readLinkFrame reads one frame of a link: its length, bounded by
// MaxFrameBytes, then its bytes, into a slice of its own (the decoded
// frame points into it).
func readLinkFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrameBytes {
		return nil, fmt.Errorf("%w of %d bytes (at most %d)", errLinkFrame, n, MaxFrameBytes)
	}
	// Grown as the bytes arrive, not allocated at the length announced.
	b := make([]byte, 0, min(n, 64<<10))
	for uint32(len(b)) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, int(min(n, 2*uint32(cap(b))))-len(b))
		}
		m, err := io.ReadFull(r, b[len(b):min(uint32(cap(b)), n)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, fmt.Errorf("%w cut short: %w", errLinkFrame, err)
		}
	}
	return b, nil
}

// LinkSecret returns the cluster's link secret from Redis, creating it
// when no node did yet.
func LinkSecret(ctx context.Context, c rueidis.Client, k Keys) ([]byte, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	fresh := hex.EncodeToString(raw[:])
	key := k.LinkSecret()
	err := c.Do(ctx, c.B().Set().Key(key).Value(fresh).Nx().Build()).Error()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("cluster: the link secret: %w", err)
	}
	s, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("cluster: the link secret: %w", err)
	}
	if len(s) < 32 {
		return nil, fmt.Errorf("cluster: the link secret in %s is too short (%d bytes)", key, len(s))
	}
	return []byte(s), nil
}

// linkStats count the links' work.
type linkStats struct {
	framesOut, framesIn, dials, dialErrors, lost, refused, busy atomic.Uint64
}

// LinkStats are a node's link counters.
type LinkStats struct {
	// FramesOut and FramesIn count the frames sent and received on
	// links (not through Redis).
	FramesOut, FramesIn uint64
	// Dials counts the links this node opened; DialErrors the dials
	// that failed (the calls went through Redis meanwhile).
	Dials, DialErrors uint64
	// Lost counts links that broke (the other node left or died, or a
	// write failed).
	Lost uint64
	// Refused counts the connections to this node's listener that failed
	// their handshake; Busy those closed at once because MaxLinkHandshakes
	// or MaxLinksIn were reached.
	Refused, Busy uint64
}

// LinkServer is a node's link listener: it authenticates the nodes that
// dial it and hands their frames to the Router.
type LinkServer struct {
	r      *Router
	ln     net.Listener
	secret []byte
	id     int
	gen    int64
	log    *slog.Logger

	limit    atomic.Int64 // the handshake's, in ns: linkHandshakeLimit (shorter in tests)
	lastWarn atomic.Int64 // unix ns of the last refusal logged at Warn
	mu       sync.Mutex
	conns    map[net.Conn]linkIn // every connection, in its handshake or a link
	links    int                 // of them authenticated
	shaking  map[string]int      // connections in their handshake by remote IP
	closed   bool
	wg       sync.WaitGroup
}

// linkIn is a connection to the listener: from ip, in its handshake (peer
// -1) or the link of node peer.
type linkIn struct {
	peer int
	ip   string
}

// ServeLinks serves ln's links for r, as node id of generation gen. Close
// stops it.
func ServeLinks(r *Router, ln net.Listener, secret []byte, id int, gen int64) *LinkServer {
	s := &LinkServer{r: r, ln: ln, secret: secret, id: id, gen: gen, log: r.log, conns: make(map[net.Conn]linkIn), shaking: make(map[string]int)}
	s.limit.Store(int64(linkHandshakeLimit))
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the listener's address.
func (s *LinkServer) Addr() net.Addr { return s.ln.Addr() }

func (s *LinkServer) accept() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() {
				return
			}
			// Out of descriptors, most likely: wait, as net/http does.
			s.log.Warn("cluster: link accept failed", "err", err, "retry", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.track(c) {
			s.r.links.busy.Add(1)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *LinkServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track records a connection in its handshake, so that Close closes it;
// false once closed, or when MaxLinkHandshakes are in their handshake, or
// maxHandshakesPerIP of its address.
func (s *LinkServer) track(c net.Conn) bool {
	ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.shakingLocked() >= MaxLinkHandshakes || s.shaking[ip] >= maxHandshakesPerIP {
		return false
	}
	s.shaking[ip]++
	s.conns[c] = linkIn{peer: -1, ip: ip}
	return true
}

// serve authenticates one connection, then runs its frames.
func (s *LinkServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	defer s.forget(c)
	peer, err := s.handshake(c)
	if err != nil {
		if !s.isClosed() {
			s.r.links.refused.Add(1)
			s.logRefused(c, err)
		}
		s.admit(c, -1) // out of its handshake
		return
	}
	if !s.admit(c, peer) {
		return // the dialer sees its link closed before it was accepted
	}
	if _, err := c.Write([]byte{1}); err != nil {
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		b, err := readLinkFrame(br)
		if err != nil {
			if errors.Is(err, errLinkFrame) {
				s.r.stats.dropped.Add(1)
				s.log.Warn("cluster: link from a node closed", "node", peer, "err", err)
			}
			return
		}
		s.r.links.framesIn.Add(1)
		s.r.handleFrom(peer, b)
	}
}

// logRefused logs a refused connection: at Warn at most once per
// linkWarnEvery (a scan of the port must not flood the log), else at
// Debug; a connection closed before it said anything (a probe of the
// port) at Debug only.
func (s *LinkServer) logRefused(c net.Conn, err error) {
	level := slog.LevelDebug
	if now := time.Now().UnixNano(); !errors.Is(err, io.EOF) {
		if last := s.lastWarn.Load(); now-last >= int64(linkWarnEvery) && s.lastWarn.CompareAndSwap(last, now) {
			level = slog.LevelWarn
		}
	}
	s.log.Log(context.Background(), level, "cluster: link refused", "remote", c.RemoteAddr().String(), "err", err)
}

// handshake proves both ends (see the top of this file) and returns the
// node that dialed.
func (s *LinkServer) handshake(c net.Conn) (int, error) {
	limit := time.Duration(s.limit.Load())
	if err := c.SetDeadline(time.Now().Add(min(limit, linkHelloLimit))); err != nil {
		return 0, err
	}
	hello := make([]byte, linkHelloLen)
	if _, err := io.ReadFull(c, hello); err != nil {
		return 0, fmt.Errorf("cluster: link hello: %w", err)
	}
	if err := c.SetDeadline(time.Now().Add(limit)); err != nil {
		return 0, err
	}
	h, err := parseLinkHello(hello)
	if err != nil {
		return 0, err
	}
	if h.to != s.id || h.toGen != s.gen {
		return 0, fmt.Errorf("cluster: a link for node %d (gen %d) reached node %d (gen %d)", h.to, h.toGen, s.id, s.gen)
	}
	var nonce [linkNonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return 0, err
	}
	reply := linkReply(s.id, s.gen, nonce)
	if _, err := c.Write(append(reply, linkMAC(s.secret, "listener", hello, reply)...)); err != nil {
		return 0, fmt.Errorf("cluster: link reply: %w", err)
	}
	mac := make([]byte, linkMACLen)
	if _, err := io.ReadFull(c, mac); err != nil {
		return 0, fmt.Errorf("cluster: link proof: %w", err)
	}
	if !hmac.Equal(mac, linkMAC(s.secret, "dialer", hello, reply)) {
		return 0, errors.New("cluster: link proof does not match the cluster's link secret")
	}
	// Proved: now worth a look in the registry.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(limit))
	_, gen, err := s.r.cfg.LinkOf(ctx, h.from)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("cluster: a link from node %d: %w", h.from, err)
	}
	if gen != h.fromGen {
		return 0, fmt.Errorf("cluster: a link from node %d of gen %d, which the registry has at gen %d", h.from, h.fromGen, gen)
	}
	return h.from, nil
}

// admit takes a connection out of its handshake and, for a node that
// proved itself (peer >= 0), records its link. A node that dialed again
// keeps its older link until that one is read to its end (it closed its
// side: the frames it wrote there still run).
func (s *LinkServer) admit(c net.Conn, peer int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.conns[c]
	if !ok || in.peer >= 0 {
		return false
	}
	s.doneShaking(in.ip)
	in.ip = ""
	s.conns[c] = in
	if s.closed || peer < 0 {
		return false
	}
	same := 0
	for _, o := range s.conns {
		if o.peer == peer {
			same++
		}
	}
	if s.links >= MaxLinksIn || same >= maxLinksPerNode {
		s.r.links.busy.Add(1)
		return false
	}
	s.conns[c] = linkIn{peer: peer}
	s.links++
	return true
}

// shakingLocked counts the connections in their handshake.
func (s *LinkServer) shakingLocked() int {
	n := 0
	for _, k := range s.shaking {
		n += k
	}
	return n
}

func (s *LinkServer) doneShaking(ip string) {
	if s.shaking[ip]--; s.shaking[ip] <= 0 {
		delete(s.shaking, ip)
	}
}

func (s *LinkServer) forget(c net.Conn) {
	s.mu.Lock()
	if in, ok := s.conns[c]; ok {
		if in.peer >= 0 {
			s.links--
		} else if in.ip != "" {
			s.doneShaking(in.ip)
		}
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// Close stops the listener and closes every connection into this node,
// in its handshake or a link, then waits for their goroutines: the
// dialers see their links close and go through Redis.
func (s *LinkServer) Close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// linkConn is an outbox's link to its node: written by the outbox's
// flusher only, watched by a goroutine that sees the other end close.
type linkConn struct {
	c   net.Conn
	hdr [4]byte
}

// send writes one frame, and says how many bytes went.
func (l *linkConn) send(payload []byte, timeout time.Duration) (int64, error) {
	binary.BigEndian.PutUint32(l.hdr[:], uint32(len(payload)))
	if err := l.c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	bufs := net.Buffers{l.hdr[:], payload}
	return bufs.WriteTo(l.c)
}

// dialLink opens and authenticates a link to node, found in the registry.
func (r *Router) dialLink(ctx context.Context, node int) (*linkConn, error) {
	addr, gen, err := r.cfg.LinkOf(ctx, node)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, errNoLink
	}
	d := net.Dialer{KeepAliveConfig: linkKeepAlive, Control: linkSocket}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := r.linkHandshake(ctx, c, node, gen); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: link to node %d at %s: %w", node, addr, err)
	}
	return &linkConn{c: c}, nil
}

// errNoLink: the node listens for no links; its calls go through Redis.
var errNoLink = errors.New("cluster: the node takes no links")

func (r *Router) linkHandshake(ctx context.Context, c net.Conn, node int, gen int64) error {
	deadline := time.Now().Add(linkHandshakeLimit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })()
	h := linkHello{from: r.cfg.Node, fromGen: r.cfg.Gen, to: node, toGen: gen}
	if _, err := rand.Read(h.nonce[:]); err != nil {
		return err
	}
	hello := h.encode()
	if _, err := c.Write(hello); err != nil {
		return err
	}
	got := make([]byte, linkReplyLen+linkMACLen)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("its reply: %w", err)
	}
	reply, mac := got[:linkReplyLen], got[linkReplyLen:]
	id, g, err := parseLinkReply(reply)
	if err != nil {
		return err
	}
	if id != node || g != gen {
		return fmt.Errorf("node %d (gen %d) answered", id, g)
	}
	if !hmac.Equal(mac, linkMAC(r.cfg.LinkSecret, "listener", hello, reply)) {
		return errors.New("its proof does not match the cluster's link secret")
	}
	if _, err := c.Write(linkMAC(r.cfg.LinkSecret, "dialer", hello, reply)); err != nil {
		return err
	}
	var ok [1]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil || ok[0] != 1 {
		return fmt.Errorf("refused by node %d (its log says why: not the same link secret, or too many links of this node): %v", node, err)
	}
	return c.SetDeadline(time.Time{})
}

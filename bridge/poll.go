//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// Poll mode (Config.ReadMode = ReadModePoll): an idle connection holds no
// reader goroutine. Its socket is in an epoll set, armed for one event
// (EPOLLONESHOT); one goroutine waits in epoll_wait and hands a readable
// connection to a bounded pool, whose goroutine reads it with gorilla, as
// the reader goroutine of the goroutine mode would, until the connection is
// idle again (gorilla's buffer empty and nothing in the socket: a
// non-blocking peek), then arms it again (EPOLL_CTL_MOD) and takes the next
// connection. The readiness is level-triggered, so arming a socket that
// received bytes after the peek reports it at once.
//
// Who reads a connection is its pst, changed by compare-and-swap only:
// pollOwned (run, then a pool goroutine), pollParked (armed, no goroutine),
// pollSolo (a goroutine of its own until the connection ends: it is closing,
// or its reader stopped and finish runs). A connection is taken from
// pollParked by its epoll event or by a kick (it began closing, or the
// keepalive tick found it dead), never by both. The epoll event carries the
// bridge's fd, not the socket's: the fd is never reused, so an event for a
// connection that has ended finds nothing.
//
// Bounds: a pool goroutine reads at most pollBudget messages (or client
// pings and pongs) of one connection per turn, then puts it at the back of the queue. A message's
// first frame of at most pollWindow bytes is read only once it is all
// there (waitWhole: until then the connection waits in the epoll set with
// SO_RCVLOWAT); a larger one, and a fragmented message's later frames,
// must arrive within PollReadTimeout once the pool began reading them, or
// the connection is closed with 1008 (a client that sends part of one
// holds a pool goroutine that long, no longer).

// pollSupported: the configuration accepts ReadModePoll (not where
// poll_other.go builds).
const pollSupported = true

// pollBudget is how many messages, and client pings and pongs, of one
// connection a pool goroutine reads before it serves the others waiting.
const pollBudget = 16

const (
	pollOwned  uint32 = iota // run or a pool goroutine reads it
	pollParked               // armed in the epoll set; nobody reads it
	pollSolo                 // a goroutine of its own reads it until it ends
)

type poller struct {
	h    *Hub
	epfd int
	ep   *os.File        // epfd, non-blocking, in the runtime's own poller
	eprc syscall.RawConn // ep's: the epoll goroutine waits for the set like any socket reader
	ev   *os.File        // an eventfd in the set that stops the epoll goroutine

	stopOnce sync.Once // a second Shutdown must not close the descriptors again: their numbers may be reused
	mu       sync.Mutex
	cond     *sync.Cond
	ready    []*conn // the connections waiting for a pool goroutine; each at most once (owned)
	head     int
	stopped  bool
	wg       sync.WaitGroup // the epoll goroutine and the pool

	busy     atomic.Int64  // pool goroutines reading a connection
	parked   atomic.Int64  // connections armed in the epoll set
	wakeups  atomic.Uint64 // connections taken out of the epoll set to be read
	requeued atomic.Uint64 // turns that ended on pollBudget with more to read
	timeouts atomic.Uint64 // connections closed (1008): a message not received within PollReadTimeout
	partial  atomic.Uint64 // connections parked until the rest of a message arrives (SO_RCVLOWAT)
	fallback atomic.Uint64 // connections read by a goroutine of their own: no descriptor (TLS)
}

func newPoller(h *Hub) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("poll mode: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("poll mode: eventfd: %w", err)
	}
	stopEv := unix.EpollEvent{Events: unix.EPOLLIN} // data 0: no connection has fd 0
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &stopEv); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, fmt.Errorf("poll mode: epoll_ctl: %w", err)
	}
	// The epoll set is itself pollable: the epoll goroutine parks in the
	// runtime's poller until the set has events, as a socket reader would,
	// instead of blocking a thread in epoll_wait (the runtime then hands
	// the goroutine straight to a P when events come).
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(evfd)
		return nil, fmt.Errorf("poll mode: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	ev := os.NewFile(uintptr(evfd), "eventfd")
	eprc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		_ = ev.Close()
		return nil, fmt.Errorf("poll mode: %w", err)
	}
	p := &poller{h: h, epfd: epfd, ep: ep, eprc: eprc, ev: ev}
	p.cond = sync.NewCond(&p.mu)
	n := h.cfg.PollWorkers
	p.wg.Add(1 + n)
	go p.wait()
	for range n {
		go p.work()
	}
	return p, nil
}

// stop ends the epoll goroutine and the pool once no connection is left
// (Shutdown calls it after every connection has ended), once: Shutdown may
// be called again, by when the numbers of the descriptors closed here may
// belong to something else.
func (p *poller) stop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		p.cond.Broadcast()
		p.mu.Unlock()
		one := [8]byte{1} // any count but 0 makes the eventfd readable
		_, _ = p.ev.Write(one[:])
		p.wg.Wait()
		_ = p.ep.Close()
		_ = p.ev.Close()
	})
}

// wait is the epoll goroutine: it hands each readable connection to the pool.
func (p *poller) wait() {
	defer p.wg.Done()
	evs := make([]unix.EpollEvent, 256)
	var n int
	var err error
	collect := func(fd uintptr) bool {
		n, err = unix.EpollWait(int(fd), evs, 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	}
	for {
		if rerr := p.eprc.Read(collect); rerr != nil {
			err = rerr
		}
		if err != nil {
			p.h.log.Error("poll mode: waiting for the epoll set failed; parked connections are no longer read", "err", err)
			return
		}
		now := time.Now().UnixNano()
		for i := range evs[:n] {
			fd := int64(uint32(evs[i].Fd)) | int64(evs[i].Pad)<<32
			if fd == 0 {
				return // stop
			}
			if c := p.h.lookup(fd); c != nil {
				// Bytes came (or the client hung up): a sign of life,
				// though a busy pool may read them late (serve).
				c.seen.Store(now)
				p.wake(c)
			}
		}
	}
}

// wake takes a parked connection out of the epoll set's hands and queues
// it for the pool; a connection that is being read is left to its reader.
func (p *poller) wake(c *conn) {
	if c.pst.CompareAndSwap(pollParked, pollOwned) {
		p.parked.Add(-1)
		p.wakeups.Add(1)
		p.submit(c)
	}
}

func (p *poller) submit(c *conn) {
	p.mu.Lock()
	p.ready = append(p.ready, c)
	p.cond.Signal()
	p.mu.Unlock()
}

// work is a pool goroutine.
func (p *poller) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for p.head == len(p.ready) && !p.stopped {
			p.cond.Wait()
		}
		if p.head == len(p.ready) {
			p.mu.Unlock()
			return
		}
		c := p.ready[p.head]
		p.ready[p.head] = nil
		p.head++
		if p.head == len(p.ready) {
			if cap(p.ready) > 1024 {
				p.ready = nil
			} else {
				p.ready = p.ready[:0]
			}
			p.head = 0
		}
		p.mu.Unlock()
		p.serve(c)
	}
}

// adopt decides whether the pool reads a new connection: one whose socket
// has a descriptor and whose read buffer the bridge sees (not over TLS,
// whose records tls.Conn buffers out of sight), registered in the epoll set.
// Any other is read by a goroutine of its own, as in goroutine mode, and
// counted.
func (p *poller) adopt(c *conn) bool {
	if c.bc == nil || c.bc.raw == nil || c.bc.br == nil {
		p.fallback.Add(1)
		return false
	}
	if err := p.register(c); err != nil {
		p.h.log.Warn("poll mode: cannot register the connection, it gets a reader goroutine", "fd", c.fd, "err", err)
		p.fallback.Add(1)
		return false
	}
	c.seen.Store(time.Now().UnixNano())
	return true
}

// register adds a new connection's socket to the epoll set, not armed yet
// (its first serve arms it). HUP and ERR are reported even so, once
// (EPOLLONESHOT): such an event finds the connection owned and is dropped.
func (p *poller) register(c *conn) error {
	return p.ctl(c, unix.EPOLL_CTL_ADD, unix.EPOLLONESHOT)
}

// arm asks for the connection's next event.
func (p *poller) arm(c *conn) error {
	return p.ctl(c, unix.EPOLL_CTL_MOD, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT)
}

// forget removes the connection's socket from the epoll set. Every
// epoll_ctl runs inside RawConn.Control, which holds the socket open: a
// socket closed meanwhile is never confused with a new one that got its
// number.
func (p *poller) forget(c *conn) {
	_ = p.ctl(c, unix.EPOLL_CTL_DEL, 0)
}

func (p *poller) ctl(c *conn, op int, events uint32) error {
	pc := pollCalls.Get().(*pollCall)
	defer pollCalls.Put(pc)
	pc.epfd, pc.op, pc.err = p.epfd, op, nil
	pc.ev = unix.EpollEvent{Events: events, Fd: int32(uint32(c.fd)), Pad: int32(c.fd >> 32)}
	if err := c.bc.raw.Control(pc.ctl); err != nil {
		return err
	}
	if pc.err != nil {
		return os.NewSyscallError("epoll_ctl", pc.err)
	}
	return nil
}

// pollCall holds the RawConn.Control callbacks of the poll mode and what
// they return, made once per pooled value so that a wake allocates nothing.
type pollCall struct {
	epfd, op  int
	ev        unix.EpollEvent
	err       error
	ready     bool
	ctl, peek func(fd uintptr)

	buf           [pollWindow]byte // waitWhole's: gorilla's buffered bytes, then a peek at the socket
	off, n, lowat int
	peekMore      func(fd uintptr)
	setLowat      func(fd uintptr)
}

var pollCalls = sync.Pool{New: func() any {
	pc := &pollCall{}
	pc.ctl = func(fd uintptr) { pc.err = unix.EpollCtl(pc.epfd, pc.op, int(fd), &pc.ev) }
	pc.peek = func(fd uintptr) { pc.ready = peekReadable(fd) }
	pc.peekMore = func(fd uintptr) {
		for {
			r, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&pc.buf[pc.off])), uintptr(len(pc.buf)-pc.off),
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			if errno == syscall.EINTR {
				continue
			}
			if errno == 0 {
				pc.n = int(r)
			}
			return
		}
	}
	pc.setLowat = func(fd uintptr) { pc.err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, pc.lowat) }
	return pc
}}

// serve reads the connection it owns until it is idle, then parks it;
// or ends it.
func (p *poller) serve(c *conn) {
	p.busy.Add(1)
	defer p.busy.Add(-1)
	for n := 0; ; {
		if c.expired.Load() && !p.stillStale(c) {
			c.expired.Store(false)
		}
		if c.expired.Load() {
			p.end(c, c.readFailed(os.ErrDeadlineExceeded)) // "no pong in time"
			return
		}
		if !c.isOpen() {
			p.solo(c)
			return
		}
		idle, err := c.pollIdle(&n)
		if err != nil {
			p.end(c, c.readFailed(err))
			return
		}
		if idle {
			if p.park(c) {
				return
			}
			continue
		}
		if n >= pollBudget {
			p.requeued.Add(1)
			p.submit(c)
			return
		}
		if !c.unread {
			waiting, err := p.waitWhole(c)
			if err != nil {
				p.end(c, c.readFailed(err))
				return
			}
			if waiting {
				if p.park(c) {
					return
				}
				continue
			}
		}
		if !c.pollDeadline() {
			p.solo(c)
			return
		}
		n++
		c.alive()
		c.resetLowat()
		if err := c.readOne(); err != nil {
			p.end(c, err)
			return
		}
	}
}

// stillStale reports whether a connection the keepalive tick found with no
// sign of life for PingInterval+PongTimeout has none still once the pongs
// (and pings) waiting in its socket are taken: with the pool busy they
// may have waited in the queue, unread, since before the tick.
func (p *poller) stillStale(c *conn) bool {
	n := 0 // a budget of its own: what is left after it is read next
	if _, err := c.pollIdle(&n); err != nil {
		return true // the read that follows fails on it
	}
	cfg := &p.h.cfg
	return time.Now().UnixNano()-c.seen.Load() >= int64(cfg.PingInterval+cfg.PongTimeout)
}

// pollWindow: a message's first frame (most messages' only one) that fits
// in this many bytes is read only once all of it has arrived, so that a
// client sending it slowly (or half of it) holds no pool goroutine
// meanwhile. A larger one, and the later frames of a fragmented message,
// are read as they come, under PollReadTimeout. Well under half of any TCP receive buffer,
// which bounds SO_RCVLOWAT.
const pollWindow = 8 << 10

// waitWhole looks, at a message boundary, whether the next message's first
// frame has arrived whole (gorilla's buffer, then a peek at the socket,
// frame headers walked: messageEnd). When it has not and it fits pollWindow, it sets the socket's
// SO_RCVLOWAT to the bytes still missing, so that epoll reports the socket
// only once they are there, and reports true: the caller parks the
// connection. A wake that finds the same bytes missing came from
// something else (the client closed or failed): gorilla reads then, and
// finds out.
func (p *poller) waitWhole(c *conn) (bool, error) {
	b := c.bc
	nb := b.br.Buffered()
	if nb >= pollWindow || b.in.badRSV1 {
		return false, nil // large, or a frame bufConn.Read holds back: gorilla fails on it now
	}
	pc := pollCalls.Get().(*pollCall)
	defer pollCalls.Put(pc)
	head, _ := b.br.Peek(nb) // buffered: no I/O
	copy(pc.buf[:], head)
	pc.off, pc.n = nb, 0
	if err := b.raw.Control(pc.peekMore); err != nil {
		return false, err
	}
	avail := pc.buf[:nb+pc.n]
	need, textAt, hdr := frameWalk(avail)
	if need <= len(avail) || need > pollWindow {
		return false, nil // there, to be read now, or too large to wait for
	}
	if textAt >= 0 && !validTextSoFar(avail[textAt+hdr-4:textAt+hdr], avail[textAt+hdr:]) {
		return false, nil // gorilla reads it now and the text is refused (1007) before it is whole, as in goroutine mode
	}
	lowat := int32(need - nb) // bytes the socket must hold
	if lowat == c.lowat {
		return false, nil // no progress since the last wake: not data
	}
	pc.lowat = int(lowat)
	if err := b.raw.Control(pc.setLowat); err != nil {
		return false, err
	}
	if pc.err != nil {
		return false, nil // cannot wait for it: read it as it comes
	}
	c.lowat = lowat
	p.partial.Add(1)
	return true, nil
}

// validTextSoFar unmasks (in place) the part of a text frame's payload that
// has arrived and reports whether it can still be UTF-8.
func validTextSoFar(key, payload []byte) bool {
	for i := range payload {
		payload[i] ^= key[i%4]
	}
	var u utf8Stream
	return u.write(payload)
}

// resetLowat gives the socket its SO_RCVLOWAT of 1 back before anything
// reads it (the runtime's poller, too, waits for SO_RCVLOWAT bytes).
func (c *conn) resetLowat() {
	if c.lowat == 0 {
		return
	}
	c.lowat = 0
	pc := pollCalls.Get().(*pollCall)
	pc.lowat = 1
	_ = c.bc.raw.Control(pc.setLowat)
	pollCalls.Put(pc)
}

// messageEnd walks the frame headers at the start of p (a message
// boundary) and returns how many bytes from the start must be there before
// gorilla can read without waiting: the control frames that come first
// and the message's first frame (gorilla reads a fragmented message's
// later frames as they come, under PollReadTimeout, so that it can refuse
// one as soon as a frame shows it too large or not UTF-8). It returns a
// lower bound while a header is incomplete, and 0 when gorilla should read
// now: a header gorilla refuses (unmasked, a reserved bit or opcode, a
// control frame too long or fragmented), which it then fails at once as in
// goroutine mode; more than pollWindow for a frame too large to wait for.
func messageEnd(p []byte) int {
	need, _, _ := frameWalk(p)
	return need
}

// frameWalk is messageEnd; when the message's first frame is a text frame
// that is not all there, it also returns where it starts and the length of
// its header (the masking key included), else -1, 0.
func frameWalk(p []byte) (need, textAt, hdr int) {
	pos := 0
	for {
		if len(p)-pos < 2 {
			return pos + 2, -1, 0
		}
		b0, b1 := p[pos], p[pos+1]
		op := b0 & 0x0f
		switch {
		case b1&0x80 == 0, b0&0x70 != 0, op > websocket.BinaryMessage && op < websocket.CloseMessage, op > websocket.PongMessage:
			return 0, -1, 0 // unmasked, a reserved bit (or compression's), a reserved opcode
		case op >= websocket.CloseMessage && (b0&0x80 == 0 || b1&0x7f > 125):
			return 0, -1, 0 // a fragmented or long control frame
		}
		h := 2 + 4 // with the masking key
		switch b1 & 0x7f {
		case 126:
			h += 2
		case 127:
			h += 8
		}
		if len(p)-pos < h {
			return pos + h, -1, 0
		}
		n := uint64(b1 & 0x7f)
		switch n {
		case 126:
			n = uint64(p[pos+2])<<8 | uint64(p[pos+3])
		case 127:
			n = 0
			for _, x := range p[pos+2 : pos+10] {
				n = n<<8 | uint64(x)
			}
		}
		if n > pollWindow || pos+h+int(n) > pollWindow {
			return pollWindow + 1, -1, 0
		}
		end := pos + h + int(n)
		if end > len(p) && op == websocket.TextMessage {
			return end, pos, h
		}
		if end > len(p) || op < websocket.PingMessage {
			return end, -1, 0 // the frame is not all there, or it is the message's first (a close ends everything)
		}
		pos = end
	}
}

// park arms the connection and gives it up. It reports false when the
// caller must go on with it: it began closing or was found dead while it
// was being armed, and nobody else took it.
func (p *poller) park(c *conn) bool {
	c.pst.Store(pollParked)
	p.parked.Add(1)
	if err := p.arm(c); err != nil {
		if c.pst.CompareAndSwap(pollParked, pollOwned) {
			p.parked.Add(-1)
			p.end(c, c.readFailed(err))
		}
		return true
	}
	// A kick that came before the store above found it owned and did
	// nothing: look again.
	if (c.expired.Load() || !c.isOpen()) && c.pst.CompareAndSwap(pollParked, pollOwned) {
		p.parked.Add(-1)
		return false
	}
	return true
}

// end hands the connection, whose reader stopped on err, to a goroutine of
// its own that finishes it: finish may wait up to CloseTimeout.
func (p *poller) end(c *conn, err error) {
	c.pst.Store(pollSolo)
	c.resetLowat()
	go func() {
		defer c.hub.release(c.slot)
		c.finish(err)
	}()
}

// solo hands a closing connection to a goroutine of its own, which reads
// until the client's close frame or the close timeout, as in goroutine
// mode, and finishes it. Closing connections are few and short-lived; a
// pool goroutine must not wait for them.
func (p *poller) solo(c *conn) {
	c.pst.Store(pollSolo)
	c.resetLowat()
	c.mu.Lock()
	if !c.closeWait {
		// The writer has not sent the close frame yet (it then sets the
		// close timeout): the keepalive's bound meanwhile, as in
		// goroutine mode.
		_ = c.ws.SetReadDeadline(time.Now().Add(c.hub.cfg.PingInterval + c.hub.cfg.PongTimeout))
	}
	c.mu.Unlock()
	go func() {
		defer c.hub.release(c.slot)
		var err error
		for err == nil {
			err = c.readOne()
		}
		c.finish(err)
	}()
}

// pollDeadline gives the message the pool is about to read (each one)
// PollReadTimeout to arrive; false when the connection is no longer open.
func (c *conn) pollDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.hub.cfg.PollReadTimeout))
	return true
}

// pollIdle reports whether the connection has nothing to read: gorilla's
// buffer is empty and a non-blocking peek finds nothing in the socket.
// Bytes gorilla already holds (the start of the next message, read with the
// end of the last) are read before the connection is parked, or they would
// never be. A client's ping or pong at the head is taken here (takeControl):
// gorilla would handle it inside NextReader and then wait there for the
// next frame, holding a pool goroutine. Each frame taken counts against the
// turn's budget (*n, up to pollBudget, as messages do): past it pollIdle
// reports false with more to read, and the caller requeues the connection,
// so that a flood of pongs holds a pool goroutine no longer than a turn.
func (c *conn) pollIdle(n *int) (bool, error) {
	b := c.bc
	for ; *n < pollBudget; *n++ {
		if b.in.badRSV1 {
			return false, nil
		}
		if b.br.Buffered() > 0 {
			if c.takeControl() {
				continue
			}
			return false, nil
		}
		pc := pollCalls.Get().(*pollCall)
		pc.ready = false
		err := b.raw.Control(pc.peek)
		ready := pc.ready
		pollCalls.Put(pc)
		if err != nil {
			return false, err
		}
		if !ready {
			return true, nil
		}
		if !c.takeControl() {
			return false, nil
		}
	}
	return false, nil
}

// takeControl takes a whole, plain ping or pong frame (FIN, no reserved bit,
// masked, at most 125 bytes) at the head of what the client sent, from
// gorilla's buffer or else from the socket, at a message boundary, and does
// what gorilla's handlers do (controlFrame). Anything else is gorilla's.
func (c *conn) takeControl() bool {
	b := c.bc
	if c.unread {
		return false // gorilla is inside a refused message
	}
	if n := b.br.Buffered(); n > 0 {
		h, _ := b.br.Peek(min(n, 2))
		if len(h) < 2 || !plainControl(h[0], h[1], true) {
			return false
		}
		size := 6 + int(h[1]&0x7f)
		if n < size {
			return false
		}
		f, _ := b.br.Peek(size)
		c.controlFrame(f)
		_, _ = b.br.Discard(size)
		return true
	}
	p := pongPool.Get().(*pongPeek)
	defer pongPool.Put(p)
	size, ok := b.takeFrame(p, true)
	if !ok {
		return false
	}
	c.controlFrame(p.f[:size])
	return true
}

// controlFrame does what the handlers prepareRead gives gorilla do with a
// client's ping or pong frame f (masked).
func (c *conn) controlFrame(f []byte) {
	c.alive()
	if f[0]&0x0f != websocket.PingMessage {
		return
	}
	data := make([]byte, len(f)-6)
	for i := range data {
		data[i] = f[6+i] ^ f[2+i%4]
	}
	_ = c.enqueue(item{kind: itemControl, op: OpPong, data: data, size: len(data)}, false)
}

// kick has a parked connection read: it began closing (a goroutine of its
// own then waits for the client's close frame) or it was found dead.
func (c *conn) kick() {
	if c.polled {
		c.hub.poll.wake(c)
	}
}

// expire ends a polled connection that showed no sign of life for
// PingInterval+PongTimeout (the worker's keepalive tick): 1006, "no pong in
// time", as the read deadline does in goroutine mode.
func (c *conn) expire() {
	if !c.expired.Swap(true) {
		c.kick()
	}
}

// pollTimedOut closes the connection whose message did not arrive within
// PollReadTimeout once the pool began reading it.
func (c *conn) pollTimedOut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.hub.poll.timeouts.Add(1)
	c.hub.log.Warn("poll mode: message not received in time, closing", "fd", c.fd, "timeout", c.hub.cfg.PollReadTimeout)
	c.closeLocked(websocket.ClosePolicyViolation, "message not received in time", false)
}

func (p *poller) stats() *PollStats {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	queued := len(p.ready) - p.head
	p.mu.Unlock()
	return &PollStats{Workers: p.h.cfg.PollWorkers, Busy: p.busy.Load(), Queued: queued, Parked: p.parked.Load(),
		Wakeups: p.wakeups.Load(), Requeued: p.requeued.Load(), ReadTimeouts: p.timeouts.Load(), PartialWaits: p.partial.Load(), Fallbacks: p.fallback.Load()}
}

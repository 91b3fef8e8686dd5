package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/rpc"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/sender"
)

// client is one WebSocket connection of the pool. Pushes to it carry
// "p <acc> <seq>": acc is how many earlier pushes to this fd the bridge
// accepted (answered true). Pushes to one fd are made one after the other,
// so when a push with acc arrives, exactly acc pushes must have arrived
// before it: fewer is a push lost silently on an open connection.
type client struct {
	id int
	ws *websocket.Conn
	fd atomic.Int64 // 0 until its open event reached the endpoint

	accepted atomic.Int64 // pushes the bridge answered true
	received atomic.Int64 // pushes that arrived
	gapLost  atomic.Int64 // pushes missing before one that arrived
	seq      int64        // pushes sent (the pusher's own)

	ended    chan struct{} // closed when the reader has returned
	endCode  int           // close code the client saw (1006: no close frame)
	endAt    time.Time
	endErr   string       // without a close frame: the read error
	bcast    atomic.Int64 // broadcasts that arrived
	byUs     atomic.Bool  // the tool closed it itself
	final    bool         // accounted by a scenario already
	sentMsgs atomic.Int64
}

func (c *client) open() bool {
	select {
	case <-c.ended:
		return false
	default:
		return c.fd.Load() != 0
	}
}

// pool holds the clients and the load that flows through them.
type pool struct {
	o      *options
	wsURL  string
	srcs   []netip.Addr
	nextID atomic.Int64

	mu      sync.Mutex
	clients map[int]*client
	early   map[int]int64 // fds whose open event came before the dialer stored the client

	pause atomic.Pointer[chan struct{}] // non-nil: readers stop reading until it is closed

	// The pushers' current rate (all of them, per second) and push size: a
	// fault may raise them.
	pushRate, pushSize atomic.Int64

	// Pushes, all clients.
	pushSent, pushAccepted, pushRefused, pushUnknown atomic.Int64
	pushErrMu                                        sync.Mutex
	pushErrs                                         map[string]int64 // RPC errors by code
	// Messages the clients sent (each becomes a message event).
	msgsSent, msgsFailed atomic.Int64
	gapLost              atomic.Int64 // pushes missing before one that arrived, all clients
	// Broadcasts (stop-reading): sent, and the sum of their answers (the
	// connections that accepted each).
	bcastSent, bcastAccepted, bcastRecv atomic.Int64

	readers sync.WaitGroup
}

func newPool(o *options, wsAddr string) (*pool, error) {
	srcs, err := bench.ParseLoopbackAddrs(o.src)
	if err != nil {
		return nil, err
	}
	p := &pool{o: o, wsURL: "ws://" + wsAddr + "/", srcs: srcs, clients: map[int]*client{}, early: map[int]int64{}, pushErrs: map[string]int64{}}
	p.pushRate.Store(int64(o.pushRate))
	p.pushSize.Store(int64(o.pushSize))
	return p, nil
}

func (p *pool) dialer(i int) *websocket.Dialer {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: p.srcs[i%len(p.srcs)].AsSlice()}, Timeout: 10 * time.Second}
	if n := p.o.rcvBuf; n > 0 {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) })
			return errors.Join(err, serr)
		}
	}
	return &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
}

// fill opens connections until the pool holds n open ones (or ctx ends),
// then waits until the endpoint has told every one its fd.
func (p *pool) fill(ctx context.Context, n int) error {
	missing := n - p.count()
	if missing > 0 {
		var wg sync.WaitGroup
		var failed atomic.Int64
		var firstErr atomic.Value
		next := make(chan struct{})
		for range min(p.o.dialConcurrency, missing) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					if err := p.add(ctx); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}()
		}
	feed:
		for range missing {
			select {
			case next <- struct{}{}:
			case <-ctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("%d of %d connections failed: %v", f, missing, firstErr.Load())
		}
	}
	for {
		known := 0
		p.each(func(c *client) {
			if c.fd.Load() != 0 {
				known++
			}
		})
		if known >= p.count() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d connections have no open event at the endpoint: %w", p.count()-known, p.count(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// add opens one pool connection (with a few retries, as a loaded loopback
// can refuse one).
func (p *pool) add(ctx context.Context) error {
	id := int(p.nextID.Add(1))
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		var ws *websocket.Conn
		var resp *http.Response
		ws, resp, err = p.dialer(id).DialContext(ctx, p.wsURL+"?soak="+strconv.Itoa(id), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			c := &client{id: id, ws: ws, ended: make(chan struct{})}
			p.mu.Lock()
			p.clients[id] = c
			if fd, ok := p.early[id]; ok {
				c.fd.Store(fd)
				delete(p.early, id)
			}
			p.mu.Unlock()
			p.readers.Add(1)
			go p.read(c)
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return err
}

// learn records a client's fd from its open event.
func (p *pool) learn(id int, fd int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[id]; c != nil {
		c.fd.CompareAndSwap(0, fd)
	} else if id > 0 && int64(id) <= p.nextID.Load() {
		p.early[id] = fd
	}
}

func (p *pool) read(c *client) {
	defer p.readers.Done()
	defer close(c.ended)
	for {
		if ch := p.pause.Load(); ch != nil {
			<-*ch
		}
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.endCode = websocket.CloseAbnormalClosure
			if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
				c.endCode = ce.Code
			} else {
				c.endErr = errClass(err)
			}
			c.endAt = time.Now()
			_ = c.ws.Close()
			return
		}
		if len(data) > 0 && data[0] == 'b' {
			c.bcast.Add(1)
			p.bcastRecv.Add(1)
			continue
		}
		acc, ok := parsePush(data)
		if !ok {
			continue
		}
		if got := c.received.Load(); got < acc {
			c.gapLost.Add(acc - got)
			p.gapLost.Add(acc - got)
			c.received.Store(acc + 1)
		} else {
			c.received.Add(1)
		}
	}
}

// parsePush reads acc from "p <acc> <seq> ...".
func parsePush(b []byte) (int64, bool) {
	if len(b) < 4 || b[0] != 'p' || b[1] != ' ' {
		return 0, false
	}
	b = b[2:]
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, i > 0
}

func (p *pool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.clients {
		select {
		case <-c.ended:
		default:
			n++
		}
	}
	return n
}

// each calls f for every client (open or ended, not yet accounted).
func (p *pool) each(f func(*client)) {
	p.mu.Lock()
	cs := make([]*client, 0, len(p.clients))
	for _, c := range p.clients {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}

// remove forgets a client that ended and was accounted.
func (p *pool) remove(c *client) {
	p.mu.Lock()
	delete(p.clients, c.id)
	p.mu.Unlock()
}

// stopReading makes every reader stop after its current message.
func (p *pool) stopReading() {
	ch := make(chan struct{})
	p.pause.Store(&ch)
}

func (p *pool) resumeReading() {
	if ch := p.pause.Swap(nil); ch != nil {
		close(*ch)
	}
}

// closeAll closes every connection (close frame, then the socket) and
// waits for the readers.
func (p *pool) closeAll() {
	p.resumeReading()
	p.each(func(c *client) {
		c.byUs.Store(true)
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	})
	done := make(chan struct{})
	go func() { p.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.each(func(c *client) { _ = c.ws.Close() })
		<-done
	}
}

// load runs the pushers and the message senders until stop is closed.
type load struct {
	p       *pool
	stop    chan struct{}
	wg      sync.WaitGroup
	rpcAddr string
}

// startLoad starts the pushers (RPC PushBatch at o.pushRate pushes/s in
// all, each pusher owning the clients whose id%pushers is its number) and
// the sender (o.msgRate client messages/s in all).
func (p *pool) startLoad(rpcAddr string) *load {
	l := &load{p: p, stop: make(chan struct{}), rpcAddr: rpcAddr}
	if p.o.pushRate > 0 || p.o.stopPushRate > 0 {
		for k := range p.o.pushers {
			l.wg.Add(1)
			go l.pusher(k)
		}
	}
	if p.o.msgRate > 0 {
		l.wg.Add(1)
		go l.sender()
	}
	return l
}

// halt stops the load and waits for the calls under way.
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// tick returns how many operations are due per 10 ms tick at rate per
// second, carrying the remainder.
type pacer struct {
	rate  float64
	carry float64
}

func (pc *pacer) due() int {
	pc.carry += pc.rate / 100
	n := int(pc.carry)
	pc.carry -= float64(n)
	return n
}

func (l *load) pusher(k int) {
	defer l.wg.Done()
	o := l.p.o
	var cl *rpc.Client
	var conn net.Conn
	defer func() {
		if cl != nil {
			_ = cl.Close()
		}
	}()
	var pad string
	var pc pacer
	var mine []*client
	var listed time.Time
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	cursor := 0
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		pc.rate = float64(l.p.pushRate.Load()) / float64(o.pushers)
		if size := int(l.p.pushSize.Load()); len(pad) != max(0, size-24) {
			pad = strings.Repeat("x", max(0, size-24))
		}
		n := pc.due()
		if n == 0 {
			continue
		}
		// This pusher's clients that can take a push, round robin; the
		// list is refreshed twice a second (clients come and go).
		if time.Since(listed) > 500*time.Millisecond {
			mine = mine[:0]
			l.p.each(func(c *client) {
				if c.id%o.pushers == k && c.open() {
					mine = append(mine, c)
				}
			})
			sortClients(mine) // by id, so the round robin is stable
			listed = time.Now()
		}
		for n > 0 && len(mine) > 0 {
			b := min(n, o.batch, len(mine))
			n -= b
			batch := make([]*client, 0, b)
			for range b {
				if c := mine[cursor%len(mine)]; c.open() {
					batch = append(batch, c)
				}
				cursor++
			}
			if len(batch) == 0 {
				continue
			}
			if cl == nil {
				c, err := net.DialTimeout("tcp", l.rpcAddr, 2*time.Second)
				if err != nil {
					select {
					case <-l.stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					break
				}
				conn, cl = c, rpc.NewClient(c, rpc.JSON)
			}
			args := sender.PushBatchArgs{Messages: make([]sender.PushArgs, len(batch))}
			for i, c := range batch {
				c.seq++
				args.Messages[i] = sender.PushArgs{FD: c.fd.Load(), Message: sender.Message{Data: "p " + strconv.FormatInt(c.accepted.Load(), 10) + " " + strconv.FormatInt(c.seq, 10) + " " + pad}}
			}
			l.p.pushSent.Add(int64(len(batch)))
			_ = conn.SetDeadline(time.Now().Add(o.rpcTimeout))
			var oks []bool
			err := cl.Call("Sender.PushBatch", args, &oks)
			var re *sender.Error
			switch {
			case err == nil && len(oks) == len(batch):
				for i, ok := range oks {
					if ok {
						batch[i].accepted.Add(1)
						l.p.pushAccepted.Add(1)
					} else {
						l.p.pushRefused.Add(1)
					}
				}
			case errors.As(err, &re):
				l.p.pushErrMu.Lock()
				l.p.pushErrs[string(re.Code)] += int64(len(batch))
				l.p.pushErrMu.Unlock()
			default:
				// The connection failed: whether these were queued is
				// unknown (they may arrive; they are not expected).
				l.p.pushUnknown.Add(int64(len(batch)))
				_ = cl.Close()
				cl = nil
			}
		}
	}
}

func sortClients(cs []*client) {
	slices.SortFunc(cs, func(a, b *client) int { return a.id - b.id })
}

// broadcaster sends rate broadcasts a second of size bytes through its own
// RPC connection until stop is closed.
func (p *pool) broadcaster(rpcAddr string, rate, size int, timeout time.Duration, stop <-chan struct{}) {
	var cl *rpc.Client
	var conn net.Conn
	defer func() {
		if cl != nil {
			_ = cl.Close()
		}
	}()
	pad := strings.Repeat("x", max(0, size-24))
	pc := pacer{rate: float64(rate)}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for range pc.due() {
			if cl == nil {
				c, err := net.DialTimeout("tcp", rpcAddr, 2*time.Second)
				if err != nil {
					break
				}
				conn, cl = c, rpc.NewClient(c, rpc.JSON)
			}
			_ = conn.SetDeadline(time.Now().Add(timeout))
			var n int
			seq := p.bcastSent.Add(1)
			if err := cl.Call("Sender.Broadcast", sender.BroadcastArgs{Message: sender.Message{Data: "b " + strconv.FormatInt(seq, 10) + " " + pad}}, &n); err != nil {
				var re *sender.Error
				if !errors.As(err, &re) {
					_ = cl.Close()
					cl = nil
				}
				continue
			}
			p.bcastAccepted.Add(int64(n))
		}
	}
}

func (l *load) sender() {
	defer l.wg.Done()
	o := l.p.o
	pc := pacer{rate: float64(o.msgRate)}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	cursor := 0
	var open []*client
	var listed time.Time
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		n := pc.due()
		if n == 0 {
			continue
		}
		if time.Since(listed) > 500*time.Millisecond {
			open = open[:0]
			l.p.each(func(c *client) {
				if !c.byUs.Load() && c.open() {
					open = append(open, c)
				}
			})
			sortClients(open)
			listed = time.Now()
		}
		for range min(n, len(open)) {
			c := open[cursor%len(open)]
			cursor++
			if !c.open() {
				continue
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
			msg := "m " + strconv.Itoa(c.id) + " " + strconv.FormatInt(c.sentMsgs.Add(1), 10)
			if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				l.p.msgsFailed.Add(1)
				continue
			}
			l.p.msgsSent.Add(1)
		}
	}
}

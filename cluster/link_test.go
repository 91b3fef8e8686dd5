package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/internal/redistest"
	"github.com/wsbridge/wsbridge/sender"
)

func withLink(c *Config) { c.Link = "127.0.0.1:0" }

// linkUp waits until n's router has a link to node.
func linkUp(t *testing.T, n *testNode, node int) {
	t.Helper()
	o, err := n.member.router.outbox(node)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("node %d's link to node %d", n.member.ID(), node), func() bool { return o.link.Load() != nil })
}

// TestLinkCarriesRemoteCalls: two nodes that take links: once the first
// call (through Redis) had the link dialed, the calls and their answers
// travel on the links, and none through Redis.
func TestLinkCarriesRemoteCalls(t *testing.T) {
	for _, kind := range redistest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			url, prefix := kind.Start(t), redistest.Prefix(t)
			a := startNodeWith(t, url, prefix, 1, withLink)
			b := startNodeWith(t, url, prefix, 2, withLink)
			ws, fd := b.dial(t)
			if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("first")}); !ok || err != nil {
				t.Fatalf("first push = %v, %v", ok, err)
			}
			read(t, ws, "first")
			linkUp(t, a, 2)
			linkUp(t, b, 1) // dialed when its first answer went through Redis

			before, beforeB := a.member.router.Stats(), b.member.router.Stats()
			for i := range 50 {
				m := fmt.Sprint("m", i)
				if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg(m)}); !ok || err != nil {
					t.Fatalf("push %d = %v, %v", i, ok, err)
				}
				read(t, ws, m)
			}
			if ok, err := a.svc.Check(fd + 1); ok || err != nil {
				t.Fatalf("Check of an fd nobody holds = %v, %v", ok, err)
			}
			after := a.member.router.Stats()
			if n := after.Links.FramesOut - before.Links.FramesOut; n < 51 {
				t.Errorf("%d frames on the link for 51 sequential calls", n)
			}
			// Node 2 counts its last answer's frame just after sending it.
			waitFor(t, "node 2's last answer counted", func() bool {
				return b.member.router.Stats().Links.FramesOut-beforeB.Links.FramesOut >= 51
			})
			afterB := b.member.router.Stats()
			for _, s := range []struct {
				name          string
				before, after RouterStats
			}{{"node 1", before, after}, {"node 2", beforeB, afterB}} {
				if redis := (s.after.FramesOut - s.after.Links.FramesOut) - (s.before.FramesOut - s.before.Links.FramesOut); redis != 0 {
					t.Errorf("%s published %d frames through Redis with its link up", s.name, redis)
				}
			}
			nodes, err := a.member.Nodes(ctxT(t))
			if err != nil || len(nodes) != 2 || nodes[1].Link != b.member.links.Addr().String() {
				t.Fatalf("nodes %+v, %v: want node 2's link %s in its record", nodes, err, b.member.links.Addr())
			}
		})
	}
}

// TestLinkLostFallsBackToRedis: when a node's links close (it leaves),
// the calls for its fds go through Redis at once, with the same answers;
// a node that takes no links is called through Redis without a failed
// dial.
func TestLinkLostFallsBackToRedis(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, withLink)
	b := startNodeWith(t, url, prefix, 2, withLink)
	c := startNode(t, url, prefix, 3) // takes no links
	ws, fd := b.dial(t)
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("first")}); !ok || err != nil {
		t.Fatalf("first push = %v, %v", ok, err)
	}
	read(t, ws, "first")
	linkUp(t, a, 2)

	b.member.links.Close() // as when b leaves: its links close first
	waitFor(t, "node 1 sees its link lost", func() bool { return a.member.router.Stats().Links.Lost == 1 })
	for i := range 5 {
		m := fmt.Sprint("redis", i)
		if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg(m)}); !ok || err != nil {
			t.Fatalf("push through Redis = %v, %v", ok, err)
		}
		read(t, ws, m)
	}
	waitFor(t, "a failed dial of the closed listener", func() bool { return a.member.router.Stats().Links.DialErrors >= 1 })

	_, fdC := c.dial(t)
	for range 3 {
		if ok, err := a.svc.Check(fdC); !ok || err != nil {
			t.Fatalf("Check on the node without links = %v, %v", ok, err)
		}
	}
	st := a.member.router.Stats()
	if st.Links.Dials != 1 || st.Links.DialErrors < 1 {
		t.Errorf("link stats %+v: want one dial (to node 2) and the failed redials of node 2", st.Links)
	}
	if o, _ := a.member.router.outbox(3); o.link.Load() != nil {
		t.Error("a link to a node that takes none")
	}

	// A node that left is told at once (its channel has no subscriber),
	// not after the call's timeout.
	b.stop(t)
	if _, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("gone")}); !isCode(err, sender.CodeNodeUnreachable) || !strings.Contains(err.Error(), "no subscriber") {
		t.Fatalf("push to a node that left = %v, want node_unreachable: no subscriber", err)
	}
}

// rawLink connects to n's link listener.
func rawLink(t *testing.T, n *testNode) net.Conn { return rawLinkFrom(t, n, "") }

// rawLinkFrom connects to n's link listener from the local address ip
// ("": any).
func rawLinkFrom(t *testing.T, n *testNode, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", n.member.links.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialerAs is a dialer of links that holds the cluster's secret (from
// Redis, as anyone with access to it can read it) and says it is node
// node of generation gen.
func dialerAs(t *testing.T, n *testNode, node int, gen int64) *Router {
	t.Helper()
	secret, err := LinkSecret(ctxT(t), n.member.client, n.member.keys)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(RouterConfig{Node: node, Gen: gen, LinkSecret: secret, Logger: quiet()})
	t.Cleanup(r.Close)
	return r
}

// linkInto opens a link from d into n, or says why n refused it.
func linkInto(t *testing.T, d *Router, n *testNode) (net.Conn, error) {
	t.Helper()
	c := rawLink(t, n)
	return c, d.linkHandshake(ctxT(t), c, n.member.ID(), n.member.reg.Self().Gen)
}

// shaking counts the connections to s in their handshake.
func shaking(s *LinkServer) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shakingLocked()
}

// closedByPeer waits for the other end to close c, reading what it sends.
func closedByPeer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: the connection stayed open", what)
		}
	}
}

// TestLinkHostile: connections to a link listener that do not prove the
// cluster's secret, or prove it and then send malformed frames, are
// closed and counted; nothing they send runs, and the node keeps serving
// its links.
func TestLinkHostile(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, withLink)
	b := startNodeWith(t, url, prefix, 2, withLink)
	ws, fd := b.dial(t)
	gen := b.member.reg.Self().Gen
	refused := func() uint64 { return b.member.router.Stats().Links.Refused }

	hello := func(to int, toGen int64) []byte {
		h := linkHello{from: 7, fromGen: 1, to: to, toGen: toGen}
		return h.encode()
	}
	for i, bad := range []struct {
		name string
		send []byte
	}{
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef")},
		{"another node's hello", hello(5, gen)},
		{"a former generation's hello", hello(2, gen-1)},
		{"a hello of version 2", append([]byte(linkMagic+"\x02"), hello(2, gen)[5:]...)},
		{"the right hello and a wrong proof", append(hello(2, gen), make([]byte, linkMACLen)...)},
	} {
		c := rawLink(t, b)
		if _, err := c.Write(bad.send); err != nil {
			t.Fatal(err)
		}
		closedByPeer(t, c, bad.name)
		waitFor(t, bad.name+" counted", func() bool { return refused() == uint64(i+1) })
	}

	// A connection that says nothing is closed at the handshake's limit.
	b.member.links.limit.Store(int64(100 * time.Millisecond))
	closedByPeer(t, rawLink(t, b), "a silent connection")
	b.member.links.limit.Store(int64(linkHandshakeLimit))
	waitFor(t, "the silent connection counted", func() bool { return refused() == 6 })

	// Past maxHandshakesPerIP connections of one address in their
	// handshake, and past MaxLinkHandshakes of all (from 127.0.0.2 to
	// 127.0.0.9, eight each), more are closed at once.
	var silent []net.Conn
	for range maxHandshakesPerIP {
		silent = append(silent, rawLinkFrom(t, b, "127.0.0.1"))
	}
	waitFor(t, "one address's silent connections in their handshake", func() bool { return shaking(b.member.links) == maxHandshakesPerIP })
	closedByPeer(t, rawLinkFrom(t, b, "127.0.0.1"), "one connection too many from one address")
	for _, c := range silent {
		c.Close()
	}
	waitFor(t, "one address's silent connections counted", func() bool { return refused() == 6+maxHandshakesPerIP })
	silent = silent[:0]
	for i := range MaxLinkHandshakes {
		silent = append(silent, rawLinkFrom(t, b, fmt.Sprintf("127.0.0.%d", 2+i/maxHandshakesPerIP)))
	}
	waitFor(t, "every silent connection in its handshake", func() bool { return shaking(b.member.links) == MaxLinkHandshakes })
	closedByPeer(t, rawLinkFrom(t, b, "127.0.0.10"), "one connection too many")
	if st := b.member.router.Stats().Links; st.Busy != 2 {
		t.Errorf("busy = %d, want 2", st.Busy)
	}
	for _, c := range silent {
		c.Close()
	}
	waitFor(t, "the silent connections counted", func() bool { return refused() == 6+maxHandshakesPerIP+MaxLinkHandshakes })

	// Whoever holds the secret (it is in Redis) and says it is a node of
	// the registry, at its generation, gets a link; its malformed frames
	// are dropped and counted: one that does not decode or says it is
	// from another node leaves the link open, a length out of bounds
	// closes it.
	for i, who := range []struct{ node, gen int64 }{{7, 1}, {1, a.member.reg.Self().Gen + 1}} {
		if _, err := linkInto(t, dialerAs(t, a, int(who.node), who.gen), b); err == nil {
			t.Errorf("node %d of gen %d, not in the registry, got a link", who.node, who.gen)
		}
		waitFor(t, "the stranger refused", func() bool { return refused() == uint64(6+maxHandshakesPerIP+MaxLinkHandshakes+1+i) })
	}
	rogue := dialerAs(t, a, 1, a.member.reg.Self().Gen)
	authed := func() net.Conn {
		c, err := linkInto(t, rogue, b)
		if err != nil {
			t.Fatalf("handshake with the secret: %v", err)
		}
		return c
	}
	dropped := func() uint64 { return b.member.router.Stats().Dropped }
	lengthed := func(payload []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
	}
	forged, err := encodeFrame(&frame{From: 3, Calls: []call{{Method: "Push", Args: mustMsgpack(t, sender.PushArgs{FD: fd, Message: msg("forged")})}}})
	if err != nil {
		t.Fatal(err)
	}
	c := authed()
	if _, err := c.Write(append(lengthed([]byte("\x93not a frame")), lengthed(forged)...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the junk and the forged frame dropped", func() bool { return dropped() == 2 })
	for _, n := range []uint32{0, MaxFrameBytes + 1} {
		c := authed()
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, n)); err != nil {
			t.Fatal(err)
		}
		closedByPeer(t, c, fmt.Sprintf("a frame of %d bytes", n))
	}
	waitFor(t, "the frames out of bounds counted", func() bool { return dropped() == 4 })

	// The node still serves: its link from node 1 carries calls, and the
	// forged push never ran.
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("after")}); !ok || err != nil {
		t.Fatalf("push after the hostile links = %v, %v", ok, err)
	}
	read(t, ws, "after")
	linkUp(t, a, 2)
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("on the link")}); !ok || err != nil {
		t.Fatalf("push on the link = %v, %v", ok, err)
	}
	read(t, ws, "on the link")
}

// TestLinkDialerChecksTheListener: a dialer refuses a listener that is not
// the node and generation the registry names, or cannot prove the secret.
func TestLinkDialerChecksTheListener(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	b := startNodeWith(t, url, prefix, 2, withLink)
	gen := b.member.reg.Self().Gen
	secret, err := LinkSecret(ctxT(t), b.member.client, b.member.keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		node   int
		gen    int64
	}{
		{"another secret", bytes.Repeat([]byte("x"), 64), 2, gen},
		{"the wrong generation", secret, 2, gen + 1},
		{"the wrong node", secret, 3, gen},
	} {
		r := NewRouter(RouterConfig{Node: 7, Gen: 1, LinkSecret: tc.secret, Logger: quiet()})
		c := rawLink(t, b)
		if err := r.linkHandshake(ctxT(t), c, tc.node, tc.gen); err == nil {
			t.Errorf("%s: handshake accepted", tc.name)
		}
		r.Close()
	}
}

func FuzzLinkHello(f *testing.F) {
	h := linkHello{from: 1, fromGen: 3, to: 1023, toGen: 1 << 40}
	f.Add(h.encode())
	f.Add([]byte(linkMagic))
	f.Add(bytes.Repeat([]byte{0xff}, linkHelloLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseLinkHello(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.encode(), b) {
			t.Fatalf("hello %x decodes to %+v, which encodes to %x", b, h, h.encode())
		}
		if id, gen, err := parseLinkReply(linkReply(h.to, h.toGen, h.nonce)); err != nil || id != h.to || gen != h.toGen {
			t.Fatalf("reply of %+v: %d, %d, %v", h, id, gen, err)
		}
	})
}

// FuzzReadLinkFrame: a link's byte stream never yields a frame past
// MaxFrameBytes nor one that is not what its length announced, and what
// it yields goes through the frame decoder without a panic.
func FuzzReadLinkFrame(f *testing.F) {
	p, _ := encodeFrame(&frame{From: 3, Answers: []answer{{ID: 9, Result: []byte{0xc3}}}})
	f.Add(append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		for {
			b, err := readLinkFrame(r)
			if err != nil {
				return
			}
			if len(b) == 0 || len(b) > MaxFrameBytes {
				t.Fatalf("a frame of %d bytes", len(b))
			}
			_, _ = decodeFrame(b)
		}
	})
}

// TestLinkRedialKeepsFramesWritten: a node that dials again (its older
// link broke on its side) does not make the listener drop the frames it
// wrote in full on the older link: they all run.
func TestLinkRedialKeepsFramesWritten(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, withLink)
	b := startNodeWith(t, url, prefix, 2, withLink)
	_, fd := b.dial(t)
	as1 := dialerAs(t, a, 1, a.member.reg.Self().Gen)
	link := func() net.Conn {
		c, err := linkInto(t, as1, b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	check, err := encodeFrame(&frame{From: 1, Calls: []call{{Method: "Check", Args: mustMsgpack(t, sender.FDArgs{FD: fd})}}})
	if err != nil {
		t.Fatal(err)
	}
	const frames = 20000
	var stream []byte
	for range frames {
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(check)))
		stream = append(stream, check...)
	}
	served := b.member.router.Stats().Served
	older := link()
	if _, err := older.Write(stream); err != nil {
		t.Fatal(err)
	}
	older.Close()
	link() // dialed again
	waitFor(t, "every frame of the older link served", func() bool { return b.member.router.Stats().Served-served == frames })
}

// TestLinkServerCloseEndsHandshakes: closing a node does not wait for the
// connections still in their link handshake (anyone who reaches the port
// could delay every shutdown by the handshake's limit).
func TestLinkServerCloseEndsHandshakes(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	b := startNodeWith(t, url, prefix, 2, withLink)
	b.member.links.limit.Store(int64(time.Hour))
	rawLink(t, b) // says nothing
	waitFor(t, "the connection in its handshake", func() bool { return shaking(b.member.links) == 1 })
	done := make(chan struct{})
	go func() { b.member.links.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("LinkServer.Close waits for a connection in its handshake")
	}
	if n := b.member.router.Stats().Links.Refused; n != 0 {
		t.Errorf("a connection closed by Close counted as refused (%d)", n)
	}
}

// TestLinkWriteTimeoutFailsItsFrame: a frame whose write on a link timed
// out (the other node stopped reading) fails, is not published through
// Redis as well (its calls' time is spent, and part of it may have gone),
// and does not make the node take Redis for down.
func TestLinkWriteTimeoutFailsItsFrame(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stalled := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			stalled <- c // never read
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { (<-stalled).Close() }()
	o, err := a.member.router.outbox(2)
	if err != nil {
		t.Fatal(err)
	}
	o.link.Store(&linkConn{c: c})
	published := a.member.broker.published.Load()
	big := make([]byte, 48<<20) // more than the sockets' buffers take
	if _, err := o.publish(&frame{From: 1, Calls: []call{{Method: "Check", Args: big}}}); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("publish on a stalled link = %v, want its write's timeout", err)
	}
	if o.link.Load() != nil || a.member.router.Stats().Links.Lost != 1 {
		t.Error("the stalled link was not dropped")
	}
	if n := a.member.broker.published.Load() - published; n != 0 {
		t.Errorf("the frame was published through Redis too (%d publishes)", n)
	}
	if h := a.member.Health(); !h.Up {
		t.Errorf("Redis taken for down after a link's write timed out: %+v", h)
	}
}

// TestLinkFrameAllocatesWhatArrives: a length announced on a link is not
// allocated before its bytes arrive (a peer could announce 64 MiB on
// every link and send nothing).
func TestLinkFrameAllocatesWhatArrives(t *testing.T) {
	stream := append(binary.BigEndian.AppendUint32(nil, MaxFrameBytes), "ten bytes."...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := readLinkFrame(bytes.NewReader(stream)); err == nil {
		t.Fatal("a frame cut short was read")
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Fatalf("%d bytes allocated for 10 bytes received", n)
	}
}

// TestLinksPerNodeBounded: a node (or whoever holds the secret and names
// it) keeps at most maxLinksPerNode links into a node; more are refused
// and counted busy.
func TestLinksPerNodeBounded(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, withLink)
	b := startNodeWith(t, url, prefix, 2, withLink)
	as1 := dialerAs(t, a, 1, a.member.reg.Self().Gen)
	for range maxLinksPerNode {
		if _, err := linkInto(t, as1, b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the links admitted", func() bool {
		b.member.links.mu.Lock()
		defer b.member.links.mu.Unlock()
		return b.member.links.links == maxLinksPerNode
	})
	if _, err := linkInto(t, as1, b); err == nil {
		t.Fatal("one link too many accepted")
	}
	if st := b.member.router.Stats().Links; st.Busy != 1 {
		t.Errorf("busy = %d, want 1", st.Busy)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/redistest"
	"github.com/wsbridge/wsbridge/sender"
)

// testNode is a node of a cluster in this process: a hub served on
// loopback, its Service and its Member.
type testNode struct {
	hub    *bridge.Hub
	svc    *sender.Service
	member *Member
	url    string
	lost   chan []int64 // the lost fds it posted
	closed bool
}

func startNode(t *testing.T, redisURL, prefix string, id int) *testNode {
	t.Helper()
	return startNodeWith(t, redisURL, prefix, id, nil)
}

// startNodeWith starts a node whose Config set changes first.
func startNodeWith(t *testing.T, redisURL, prefix string, id int, set func(*Config)) *testNode {
	t.Helper()
	return startNodeSetup(t, redisURL, prefix, id, nodeSetup{cluster: set})
}

// nodeSetup changes a test node before it starts.
type nodeSetup struct {
	cluster func(*Config)
	hub     func(*bridge.Config)
	events  bridge.Listener // the application's, after the cluster's
}

func startNodeSetup(t *testing.T, redisURL, prefix string, id int, setup nodeSetup) *testNode {
	t.Helper()
	u, err := ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{lost: make(chan []int64, 100)}
	cfg := Config{URL: u, Prefix: prefix, NodeID: id, Address: "test", Timeout: 2 * time.Second, Logger: quiet()}
	if setup.cluster != nil {
		setup.cluster(&cfg)
	}
	n.member, err = Open(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := n.member
	listener := m.UseEvents(setup.events, func(node int, fds []int64) int { n.lost <- slices.Clone(fds); return len(fds) })
	hubCfg := bridge.Config{NodeID: m.ID(), Sequence: m.Sequence(), Listener: listener, OnIndexChange: m.OnIndexChange, Logger: quiet()}
	if setup.hub != nil {
		setup.hub(&hubCfg)
	}
	n.hub, err = bridge.New(hubCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(n.hub)
	srv.Config = n.hub.Server()
	srv.Start()
	n.url = "ws://" + srv.Listener.Addr().String() + "/"
	n.svc = sender.NewService(n.hub)
	if err := m.Start(ctxT(t), n.hub, n.svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		n.stop(t)
	})
	return n
}

func (n *testNode) stop(t *testing.T) {
	if n.closed {
		return
	}
	n.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = n.hub.Shutdown(ctx)
	if err := n.member.Close(ctx); err != nil {
		t.Errorf("Member.Close: %v", err)
	}
}

// dial connects a client to the node and returns it with its fd.
func (n *testNode) dial(t *testing.T) (*websocket.Conn, int64) {
	t.Helper()
	before, _ := n.hub.FDs(0, 1<<20)
	ws, _, err := websocket.DefaultDialer.Dial(n.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	var fd int64
	waitFor(t, "the connection registered", func() bool {
		after, _ := n.hub.FDs(0, 1<<20)
		for _, f := range after {
			if !slices.Contains(before, f) {
				fd = f
				return true
			}
		}
		return false
	})
	return ws, fd
}

func read(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(wait))
	_, got, err := ws.ReadMessage()
	if err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// silent fails if ws received anything before a marker pushed to fd now
// (a read that times out would break the connection).
func silent(t *testing.T, n *testNode, ws *websocket.Conn, fd int64) {
	t.Helper()
	if ok, err := n.svc.Push(&sender.PushArgs{FD: fd, Message: msg("marker")}); !ok || err != nil {
		t.Fatalf("marker push = %v, %v", ok, err)
	}
	read(t, ws, "marker")
}

func isCode(err error, code string) bool {
	var e *sender.Error
	return errors.As(err, &e) && e.Code == code
}

func msg(s string) sender.Message { return sender.Message{Data: s} }

func TestRemoteCalls(t *testing.T) {
	for _, kind := range redistest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			url, prefix := kind.Start(t), redistest.Prefix(t)
			a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
			wsA, fdA := a.dial(t)
			wsB, fdB := b.dial(t)
			if bridge.NodeOf(fdA) != 1 || bridge.NodeOf(fdB) != 2 {
				t.Fatalf("fds %d, %d: nodes %d, %d", fdA, fdB, bridge.NodeOf(fdA), bridge.NodeOf(fdB))
			}

			// One fd of another node: the owner's real answer.
			if ok, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: msg("hello b")}); !ok || err != nil {
				t.Fatalf("remote Push = %v, %v", ok, err)
			}
			read(t, wsB, "hello b")
			if ok, err := a.svc.Check(fdB); !ok || err != nil {
				t.Fatalf("remote Check = %v, %v", ok, err)
			}
			if ok, err := a.svc.Check(fdB + 1000); ok || err != nil {
				t.Fatalf("remote Check of an fd never handed out = %v, %v", ok, err)
			}
			info, err := a.svc.Info(fdB)
			if err != nil || !info.Connected || info.FD != fdB || info.Path != "/" || info.Headers == nil {
				t.Fatalf("remote Info = %+v, %v", info, err)
			}
			if _, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: sender.Message{Data: "x", Encoding: "hex"}}); !isCode(err, sender.CodeBadRequest) {
				t.Fatalf("remote Push with a bad encoding: %v", err)
			}
			no := false
			if ok, err := a.svc.Push(&sender.PushArgs{FD: fdB, Ack: &no, Message: msg("fire and forget")}); !ok || err != nil {
				t.Fatalf("remote Push without ack = %v, %v", ok, err)
			}
			read(t, wsB, "fire and forget")

			// Groups and users across the nodes.
			for _, fd := range []int64{fdA, fdB} {
				if ok, err := a.svc.Join(&sender.GroupArgs{FD: fd, Group: "room"}); !ok || err != nil {
					t.Fatalf("Join(%d) = %v, %v", fd, ok, err)
				}
			}
			if g, err := a.svc.GroupsOf(fdB); err != nil || !slices.Equal(g, []string{"room"}) {
				t.Fatalf("remote GroupsOf = %v, %v", g, err)
			}
			if fds, un, err := b.svc.GroupMembers("room"); err != nil || un != 0 || !slices.Equal(fds, []int64{fdA, fdB}) {
				t.Fatalf("GroupMembers = %v, %d, %v", fds, un, err)
			}
			if n, un, err := a.svc.PushGroup(&sender.PushGroupArgs{Group: "room", Message: msg("to the room")}); n != 2 || un != 0 || err != nil {
				t.Fatalf("PushGroup = %d, %d, %v; want 2", n, un, err)
			}
			read(t, wsA, "to the room")
			read(t, wsB, "to the room")
			if n, _, err := b.svc.PushGroup(&sender.PushGroupArgs{Group: "room", Except: []int64{fdA}, Message: msg("but a")}); n != 1 || err != nil {
				t.Fatalf("PushGroup except = %d, %v", n, err)
			}
			read(t, wsB, "but a")
			silent(t, a, wsA, fdA)
			if groups, _, err := a.svc.Groups(); err != nil || groups["room"] != 2 {
				t.Fatalf("Groups = %v, %v", groups, err)
			}
			if ok, err := a.svc.Bind(&sender.BindArgs{FD: fdB, User: "bob"}); !ok || err != nil {
				t.Fatalf("remote Bind = %v, %v", ok, err)
			}
			waitFor(t, "b subscribed to bob", func() bool { return b.member.subs.Count() == 2 })
			if n, _, err := a.svc.PushUser(&sender.PushUserArgs{User: "bob", Message: msg("hi bob")}); n != 1 || err != nil {
				t.Fatalf("PushUser = %d, %v", n, err)
			}
			read(t, wsB, "hi bob")
			if fds, _, err := a.svc.UserFDs("bob"); err != nil || !slices.Equal(fds, []int64{fdB}) {
				t.Fatalf("UserFDs = %v, %v", fds, err)
			}
			if n, _, err := a.svc.Broadcast(&sender.BroadcastArgs{Except: []int64{fdB}, Message: msg("all but b")}); n != 1 || err != nil {
				t.Fatalf("Broadcast = %d, %v", n, err)
			}
			read(t, wsA, "all but b")
			silent(t, a, wsB, fdB)
			if n, _, err := a.svc.PushMany(&sender.PushManyArgs{FDs: []int64{fdA, fdB, fdB + 1000}, Message: msg("many")}); n != 2 || err != nil {
				t.Fatalf("PushMany = %d, %v", n, err)
			}
			read(t, wsA, "many")
			read(t, wsB, "many")
			batch := &sender.PushBatchArgs{Messages: []sender.PushArgs{
				{FD: fdB, Message: msg("1")}, {FD: fdA, Message: msg("2")}, {FD: fdB + 1000, Message: msg("3")}, {FD: fdB, Message: msg("4")},
			}}
			if res, err := a.svc.PushBatch(batch); err != nil || !slices.Equal(res, []bool{true, true, false, true}) {
				t.Fatalf("PushBatch = %v, %v", res, err)
			}
			read(t, wsB, "1")
			read(t, wsB, "4")
			read(t, wsA, "2")

			// The last member leaves: b unsubscribes, and a group push
			// reaches nobody there.
			if ok, err := a.svc.Leave(&sender.GroupArgs{FD: fdB, Group: "room"}); !ok || err != nil {
				t.Fatalf("remote Leave = %v, %v", ok, err)
			}
			waitFor(t, "b unsubscribed from the room", func() bool { return b.member.subs.Count() == 1 })
			if ok, err := a.svc.Disconnect(&sender.DisconnectArgs{FD: fdB, Code: 4001, Reason: "bye"}); !ok || err != nil {
				t.Fatalf("remote Disconnect = %v, %v", ok, err)
			}
			wsB.SetReadDeadline(time.Now().Add(wait))
			var ce *websocket.CloseError
			if _, _, err := wsB.ReadMessage(); !errors.As(err, &ce) || ce.Code != 4001 {
				t.Fatalf("b's close: %v", err)
			}
			waitFor(t, "b's fd closed", func() bool { ok, _ := a.svc.Check(fdB); return !ok })
			if ok, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: msg("late")}); ok || err != nil {
				t.Fatalf("remote Push to a closed fd = %v, %v; want false", ok, err)
			}

			// A node that left: its fds answer node_unreachable at once.
			b.stop(t)
			// Known at once from the publish (no subscriber), not from
			// waiting out the timeout.
			if _, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: msg("gone")}); !isCode(err, sender.CodeNodeUnreachable) || !strings.Contains(err.Error(), "no subscriber") {
				t.Fatalf("Push to a node that left: %v, want node_unreachable: no subscriber", err)
			}
			if n, un, err := a.svc.PushGroup(&sender.PushGroupArgs{Group: "room", Message: msg("alone")}); n != 1 || un != 0 || err != nil {
				t.Fatalf("PushGroup with b gone = %d, %d, %v", n, un, err)
			}
			read(t, wsA, "alone")
		})
	}
}

// TestSentinel: the nodes find their Redis through Redis Sentinel
// (WSBRIDGE_REDIS_URL with master_set) and push to each other's fds.
func TestSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	url, prefix := s.URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	ws, fd := b.dial(t)
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("through sentinel")}); !ok || err != nil {
		t.Fatalf("remote Push = %v, %v", ok, err)
	}
	read(t, ws, "through sentinel")
}

// TestRemoteConcurrent: many callers at once on one node, their calls for
// another node's fds batched into few frames; every answer is the right
// one.
// TestRemoteConcurrent: concurrent calls to another node's fds all get
// their answer, in fewer frames than calls, whatever the batch hold: with
// a hold far longer than the calls' timeout, only the release of held
// calls as the answers land keeps them from failing.
func TestRemoteConcurrent(t *testing.T) {
	url := redistest.Start(t).URL()
	for _, hold := range []time.Duration{0, -1, time.Minute} {
		t.Run(fmt.Sprint("hold ", hold), func(t *testing.T) {
			prefix := redistest.Prefix(t)
			a := startNodeWith(t, url, prefix, 1, func(c *Config) { c.BatchHold = hold })
			b := startNode(t, url, prefix, 2)
			_, fd := b.dial(t)
			const callers, each = 8, 200
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for range each {
						if ok, err := a.svc.Check(fd); !ok || err != nil {
							t.Errorf("Check = %v, %v", ok, err)
							return
						}
						if ok, err := a.svc.Check(fd + 1); ok || err != nil {
							t.Errorf("Check of another fd = %v, %v", ok, err)
							return
						}
					}
				})
			}
			wg.Wait()
			st := a.member.router.Stats()
			if st.Calls != 2*callers*each || st.CallErrors != 0 {
				t.Fatalf("router stats %+v", st)
			}
			if st.FramesOut >= st.Calls {
				t.Errorf("%d frames for %d calls: nothing batched", st.FramesOut, st.Calls)
			}
			for i := range a.member.router.outboxes {
				if o := a.member.router.outboxes[i].Load(); o != nil && o.inflight.Load() != 0 {
					t.Errorf("%d calls still counted in flight after every answer", o.inflight.Load())
				}
			}
		})
	}
}

// holdingNodes starts node 1, whose calls may be held for a minute and
// time out after timeout, and node 2 with one client (fd): it returns node
// 1's router, its outbox to node 2 with two calls counted in flight (the
// next call is held), and node 2.
func holdingNodes(t *testing.T, timeout time.Duration) (*Router, *outbox, *testNode, int64) {
	t.Helper()
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, func(c *Config) { c.BatchHold = time.Minute; c.Timeout = timeout })
	b := startNode(t, url, prefix, 2)
	_, fd := b.dial(t)
	o, err := a.member.router.outbox(2)
	if err != nil {
		t.Fatal(err)
	}
	o.inflight.Add(2) // as if two calls were in flight to node 2
	return a.member.router, o, b, fd
}

// TestHeldCallGoesWhenCallsLand: a call held back while others to its
// node are in flight goes as soon as they land, even when no other call
// comes to wake the flusher (the hold here outlasts the call's timeout).
func TestHeldCallGoesWhenCallsLand(t *testing.T) {
	r, o, _, fd := holdingNodes(t, 2*time.Second)
	done := make(chan error, 1)
	go func() {
		var ok bool
		err := r.Call(2, "Check", &sender.FDArgs{FD: fd}, &ok, true)
		if err == nil && !ok {
			err = errors.New("Check = false")
		}
		done <- err
	}()
	waitFor(t, "the call held", o.holding.Load)
	o.landed()
	o.landed()
	if err := <-done; err != nil {
		t.Fatalf("the held call: %v", err)
	}
}

// TestGivenUpCallNeitherSentNorCounted: a call whose caller stopped
// waiting while it was held is not sent afterwards, and leaves nothing in
// the count of calls in flight (which would hold every later call).
func TestGivenUpCallNeitherSentNorCounted(t *testing.T) {
	r, o, b, fd := holdingNodes(t, 300*time.Millisecond)
	var ok bool
	if err := r.Call(2, "Check", &sender.FDArgs{FD: fd}, &ok, true); !isCode(err, sender.CodeNodeUnreachable) {
		t.Fatalf("the held call = %v, want node_unreachable once its time is up", err)
	}
	served := b.member.router.Stats().Served
	o.landed()
	o.landed() // the hold ends: the given-up call must not go now
	if err := r.Call(2, "Check", &sender.FDArgs{FD: fd}, &ok, true); err != nil || !ok {
		t.Fatalf("the next call: %v, %v", ok, err)
	}
	if n := b.member.router.Stats().Served - served; n != 1 {
		t.Errorf("node 2 served %d calls after the hold, want 1 (the given-up one was sent)", n)
	}
	if n := o.inflight.Load(); n != 0 {
		t.Errorf("%d calls counted in flight after every answer", n)
	}
}

// TestCloseStopsBetweenFrames: Close waits for the frame being published,
// not for the rest of the batch taken with it; those calls fail closed
// instead of going out after Close.
func TestCloseStopsBetweenFrames(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, func(c *Config) { c.Timeout = time.Minute })
	startNode(t, url, prefix, 2)
	r := a.member.router
	rogue := client(t, url)
	// Writes (SPUBLISH among them) wait while Redis is paused: the first
	// frame's publish is under way when Close comes.
	if err := rogue.Do(ctxT(t), rogue.B().ClientPause().Timeout(1500).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", maxFrameItemBytes*2/3) // one call per frame
	const calls = 6
	errs := make(chan error, calls)
	for range calls {
		go func() {
			var ok bool
			errs <- r.Call(2, "Push", &sender.PushArgs{FD: 1, Message: msg(big)}, &ok, false)
		}()
	}
	waitFor(t, "the first frame under way", func() bool { return r.Stats().FramesOut == 1 })
	r.Close()
	failed := 0
	for range calls {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if out := r.Stats().FramesOut; out > 2 {
		t.Errorf("%d frames published after Close began, want at most the one under way (and one before it)", out)
	}
	if failed < calls-2 {
		t.Errorf("%d of %d calls failed, want those not published", failed, calls)
	}
}

// TestRemoteCallRefusedBeforeItTravels: a call whose arguments do not
// encode, or encode past what a message between nodes may hold, fails with
// its own error code, not node_unreachable; calls beside it are served.
func TestRemoteCallRefusedBeforeItTravels(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	// Encoding 64 MiB takes seconds under the race detector: the calls
	// get a minute.
	a := startNodeWith(t, url, prefix, 1, func(c *Config) { c.Timeout = time.Minute })
	b := startNode(t, url, prefix, 2)
	_, fd := b.dial(t)
	r := a.member.router
	var ok bool
	huge := &sender.PushArgs{FD: fd, Message: msg(strings.Repeat("x", maxCallBytes))}
	for _, c := range []struct {
		args any
		code string
	}{{huge, sender.CodeTooLarge}, {map[string]any{"fd": fd, "f": func() {}}, sender.CodeInternal}} {
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := r.Call(2, "Check", &sender.FDArgs{FD: fd}, &ok, true); err != nil || !ok {
				t.Errorf("a call beside the refused one: %v, %v", ok, err)
			}
		})
		if err := r.Call(2, "Push", c.args, &ok, true); !isCode(err, c.code) {
			t.Errorf("Call(%T) = %v, want %s", c.args, err, c.code)
		}
		wg.Wait()
	}
}

// TestRedisAway: while Redis is away, calls for another node's fds fail at
// once with node_unreachable, local pushes go on, and no goroutine or
// queued call accumulates; once Redis is back, remote calls work again.
func TestRedisAway(t *testing.T) {
	r := redistest.Start(t)
	url, prefix := r.URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	wsA, fdA := a.dial(t)
	_, fdB := b.dial(t)
	if ok, err := a.svc.Check(fdB); !ok || err != nil {
		t.Fatalf("Check before = %v, %v", ok, err)
	}
	r.Stop()
	waitFor(t, "a sees Redis down", func() bool { return !a.member.Health().Up })
	calls := func(n int) {
		for i := range n {
			// Refused from the broker's state (Redis unavailable), not
			// from waiting out the timeout.
			if _, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: msg("x")}); !isCode(err, sender.CodeNodeUnreachable) || !strings.Contains(err.Error(), "unavailable") {
				t.Fatalf("remote push %d while Redis is away: %v, want node_unreachable: redis unavailable", i, err)
			}
			if _, _, err := a.svc.PushGroup(&sender.PushGroupArgs{Group: "g", Message: msg("x")}); err != nil {
				t.Fatalf("group push while Redis is away: %v", err)
			}
		}
	}
	calls(100)
	base := runtime.NumGoroutine()
	calls(2000)
	if n := runtime.NumGoroutine(); n > base+5 {
		t.Errorf("goroutines grew from %d to %d over 2000 failed calls", base, n)
	}
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fdA, Message: msg("local")}); !ok || err != nil {
		t.Fatalf("local push while Redis is away = %v, %v", ok, err)
	}
	read(t, wsA, "local")
	if err := r.StartAgain(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "remote calls through again", func() bool { ok, err := a.svc.Check(fdB); return ok && err == nil })
}

// TestRedisHangs: Redis stops answering without closing its connections
// (a hung machine): a push to another node's fd and a group push answer
// after the publish timeout, not after Redis's client gave up on its
// connections (which took longer than the test's hang bound).
func TestRedisHangs(t *testing.T) {
	r := redistest.Start(t)
	url, prefix := r.URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	_, fdB := b.dial(t)
	if ok, err := a.svc.Check(fdB); !ok || err != nil {
		t.Fatalf("Check before = %v, %v", ok, err)
	}
	r.Pause()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := a.svc.Push(&sender.PushArgs{FD: fdB, Message: msg("x")}); !isCode(err, sender.CodeNodeUnreachable) {
			t.Errorf("remote push while Redis hangs: %v", err)
		}
		if _, _, err := a.svc.PushGroup(&sender.PushGroupArgs{Group: "g", Message: msg("x")}); err != nil {
			t.Errorf("group push while Redis hangs: %v", err)
		}
	}()
	select { // a bound that turns a hang into a failure, not a speed target
	case <-done:
	case <-time.After(wait):
		t.Fatalf("a push and a group push still wait on the hung Redis after %s", wait)
	}
	r.Resume()
}

// TestSubscriptionRefusedIsRetried: a group channel the broker refuses
// (past its MaxChannels) is counted and tried again, and subscribed once
// there is room; it is never taken for subscribed meanwhile.
func TestSubscriptionRefusedIsRetried(t *testing.T) {
	url := redistest.Start(t).URL()
	b, err := NewRedisBroker(RedisBrokerConfig{Client: client(t, url), Handler: func(string, []byte) {}, MaxChannels: 1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	subs := NewSubscriptions(keys(t), quiet())
	h, err := bridge.New(bridge.Config{OnIndexChange: subs.Changed, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = h.Server()
	srv.Start()
	defer srv.Close()
	defer h.Shutdown(context.Background())
	subs.Start(h, b)
	defer subs.Close()
	n := &testNode{hub: h, url: "ws://" + srv.Listener.Addr().String() + "/"}
	_, fdA := n.dial(t)
	_, fdB := n.dial(t)
	if err := h.Join(fdA, "first"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first group subscribed", func() bool { return subs.Count() == 1 })
	if err := h.Join(fdB, "second"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second refused", func() bool { return subs.Failures() >= 1 })
	if subs.Count() != 1 {
		t.Fatalf("%d channels taken for subscribed, want 1", subs.Count())
	}
	// A join's wait for it ends at its bound.
	unsettled := subs.Settled(bridge.GroupIndex, "second", 50*time.Millisecond)
	if unsettled == nil {
		t.Fatal("the refused group's subscription taken for settled")
	}
	select {
	case <-unsettled:
	case <-time.After(wait):
		t.Fatal("the wait for the refused group's subscription passed its bound")
	}
	if subs.Settled(bridge.GroupIndex, "first", time.Hour) != nil {
		t.Fatal("the subscribed group's subscription not taken for settled")
	}
	if _, err := h.Leave(fdA, "first"); err != nil { // room for the second
		t.Fatal(err)
	}
	waitFor(t, "the second subscribed on a retry", func() bool { return b.Health().Channels == 1 && subs.Count() == 1 && h.HasGroup("second") })
	waitFor(t, "the broker holds the second group's channel", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		_, ok := b.subs[subs.keys.GroupChannel("second")]
		return ok
	})
	if subs.Settled(bridge.GroupIndex, "second", time.Hour) != nil || subs.Settled(bridge.GroupIndex, "first", time.Hour) != nil {
		t.Fatal("subscriptions that match the hub not taken for settled")
	}
}

// TestPushBatchAcrossNodesStopsAtTheFailure: a batch that fails at one
// message (text that is not UTF-8, found when it is pushed) has sent the
// messages before it, on every node, and none after it.
func TestPushBatchAcrossNodesStopsAtTheFailure(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	wsA, fdA := a.dial(t)
	wsB, fdB := b.dial(t)
	_, err := a.svc.PushBatch(&sender.PushBatchArgs{Messages: []sender.PushArgs{
		{FD: fdB, Message: msg("1")}, {FD: fdA, Message: msg("2")}, {FD: fdB, Message: msg("bad \xff")}, {FD: fdA, Message: msg("4")}, {FD: fdB, Message: msg("5")},
	}})
	var e *sender.Error
	if !errors.As(err, &e) || e.Code != sender.CodeInvalidUTF8 || !strings.HasPrefix(e.Message, "message 2: ") {
		t.Fatalf("PushBatch = %v, want invalid_utf8 at message 2", err)
	}
	read(t, wsB, "1")
	read(t, wsA, "2")
	silent(t, a, wsA, fdA) // not "4"
	silent(t, a, wsB, fdB) // not "5"
}

// TestOutboxFlusherExitsWhenIdle: an outbox's flusher stays while calls
// come and exits once the outbox has been idle; the next call starts
// another.
func TestOutboxFlusherExitsWhenIdle(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	_, fd := b.dial(t)
	running := func() int {
		n := 0
		for i := range a.member.router.outboxes {
			if o := a.member.router.outboxes[i].Load(); o != nil {
				o.mu.Lock()
				if o.running {
					n++
				}
				o.mu.Unlock()
			}
		}
		return n
	}
	for round := range 2 {
		if ok, err := a.svc.Check(fd); !ok || err != nil {
			t.Fatalf("round %d: Check = %v, %v", round, ok, err)
		}
		for deadline := time.Now().Add(10 * outboxIdle); running() > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d flushers still run %s after the last call", round, running(), 10*outboxIdle)
			}
		}
	}
}

// subscribed tells whether n's subscription to a group's (user's)
// channel is confirmed.
func subscribed(n *testNode, kind bridge.IndexKind, name string) bool {
	s := n.member.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subbed[indexName{kind, name}]
}

// TestJoinAnswersOnceSubscribed: a Join that makes a node a group's first
// member answers once that node's subscription is confirmed, whether it
// was called on the node itself or routed there (on a link, while Redis
// hangs), so that a group push that follows it from any node reaches the
// new member. Redis frozen for a moment holds the subscription back.
func TestJoinAnswersOnceSubscribed(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	long := func(c *Config) { withLink(c); c.Timeout = 4 * wait } // the join's wait is bounded by half of it
	a, b := startNodeWith(t, srv.URL(), prefix, 1, long), startNodeWith(t, srv.URL(), prefix, 2, long)
	_, fdA := a.dial(t)
	if ok, err := b.svc.Check(fdA); !ok || err != nil {
		t.Fatalf("remote Check = %v, %v", ok, err)
	}
	linkUp(t, b, 1)
	linkUp(t, a, 2)

	for _, c := range []struct {
		name  string
		group string
		via   *testNode
	}{{"on the node", "here", a}, {"routed to the node", "there", b}} {
		srv.Pause()
		done := make(chan error, 1)
		go func() {
			ok, err := c.via.svc.Join(&sender.GroupArgs{FD: fdA, Group: c.group})
			if err == nil && !ok {
				err = errors.New("Join = false")
			}
			if err == nil && !subscribed(a, bridge.GroupIndex, c.group) {
				err = errors.New("Join answered before node 1 subscribed the group")
			}
			done <- err
		}()
		time.Sleep(200 * time.Millisecond)
		srv.Resume()
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}

// opens hands each open event's ConnInfo to a test.
type opens chan bridge.ConnInfo

func (o opens) OnOpen(info bridge.ConnInfo)          { o <- info }
func (opens) OnMessage(int64, bridge.Opcode, []byte) {}
func (opens) OnClose(int64, bridge.CloseEvent)       {}

// TestOpenWaitsForItsSubscriptions: the user and groups an authorization
// gave a connection are subscribed before its open event goes on to the
// application, so that the application's first push to them from any node
// reaches it. The Redis Cluster master of the group's and the user's
// channels hangs for a moment (not the master of the node's fd set, which
// the open event waits for too).
func TestOpenWaitsForItsSubscriptions(t *testing.T) {
	c := redistest.StartCluster(t)
	prefix := redistest.Prefix(t)
	events := make(opens, 1)
	var group, user string // named once the node's keys are known
	auth := func(*http.Request) bridge.Authorization {
		return bridge.Authorization{Allow: true, User: user, Groups: []string{group}}
	}
	a := startNodeSetup(t, c.URL(), prefix, 1, nodeSetup{
		cluster: func(cfg *Config) { cfg.Timeout = 4 * wait },
		hub:     func(cfg *bridge.Config) { cfg.Authorize = auth },
		events:  events,
	})
	k := a.member.keys
	busy := map[*redistest.Server]bool{}
	for _, key := range []string{k.FDs(a.member.ID(), a.member.reg.Self().Gen), k.Claim(1)} {
		s, err := c.ServerOf(key)
		if err != nil {
			t.Fatal(err)
		}
		busy[s] = true
	}
	// The group's and the user's channels on one master that holds
	// neither the node's claim nor its fd set.
	var paused *redistest.Server
	for i := 0; group == "" || user == ""; i++ {
		name := fmt.Sprint("n", i)
		for _, ch := range []struct {
			channel string
			to      *string
		}{{k.GroupChannel(name), &group}, {k.UserChannel(name), &user}} {
			s, err := c.ServerOf(ch.channel)
			if err != nil {
				t.Fatal(err)
			}
			if *ch.to == "" && !busy[s] && (paused == nil || s == paused) {
				paused, *ch.to = s, name
			}
		}
	}
	paused.Pause()
	a.dial(t)
	time.Sleep(200 * time.Millisecond)
	paused.Resume()
	select {
	case info := <-events:
		if !subscribed(a, bridge.GroupIndex, group) || !subscribed(a, bridge.UserIndex, user) {
			t.Fatalf("open event of %+v before the group and the user were subscribed", info)
		}
	case <-time.After(wait):
		t.Fatal("no open event")
	}
}

// receiving tells whether n's broker holds channel with its subscription
// confirmed.
func receiving(n *testNode, channel string) bool {
	b := n.member.broker
	b.mu.Lock()
	s, ok := b.subs[channel]
	b.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// TestJoinDuringUnsubscribe: a Join that comes while the node is
// unsubscribing the group (its last member left a moment ago; Redis
// hangs, so the unsubscription takes its time) answers only once the
// node subscribed the group again.
func TestJoinDuringUnsubscribe(t *testing.T) {
	srv := redistest.Start(t)
	a := startNodeWith(t, srv.URL(), redistest.Prefix(t), 1, func(c *Config) { c.Timeout = 4 * wait })
	_, fd1 := a.dial(t)
	_, fd2 := a.dial(t)
	join := func(fd int64) {
		t.Helper()
		if ok, err := a.svc.Join(&sender.GroupArgs{FD: fd, Group: "room"}); !ok || err != nil {
			t.Fatalf("Join(%d) = %v, %v", fd, ok, err)
		}
	}
	join(fd1)
	channel := a.member.keys.GroupChannel("room")
	srv.Pause()
	if ok, err := a.svc.Leave(&sender.GroupArgs{FD: fd1, Group: "room"}); !ok || err != nil {
		t.Fatalf("Leave = %v, %v", ok, err)
	}
	waitFor(t, "the unsubscription under way", func() bool { return !receiving(a, channel) })
	go func() {
		time.Sleep(200 * time.Millisecond)
		srv.Resume()
	}()
	join(fd2)
	if !receiving(a, channel) {
		t.Fatal("Join answered while the node did not receive the group's pushes")
	}
}

// TestJoinWhileRedisDown: once the node knows Redis is away, a Join does
// not wait for a subscription that cannot come (not even behind one that
// was under way when Redis went: it is made once Redis is back).
func TestJoinWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	a := startNodeWith(t, srv.URL(), redistest.Prefix(t), 1, func(c *Config) { c.Timeout = 4 * wait })
	_, fd := a.dial(t)
	srv.Pause() // a hang: the first group's subscription stays under way
	if err := a.hub.Join(fd, "first"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Redis known to be away", func() bool { return !a.member.broker.Health().Up })
	if err := a.hub.Join(fd, "second"); err != nil {
		t.Fatal(err)
	}
	if a.member.subs.Settled(bridge.GroupIndex, "second", time.Hour) != nil {
		t.Error("a join while Redis is away waits for its subscription")
	}
	srv.Resume()
	waitFor(t, "both groups subscribed once Redis is back", func() bool {
		return receiving(a, a.member.keys.GroupChannel("first")) && receiving(a, a.member.keys.GroupChannel("second"))
	})
}

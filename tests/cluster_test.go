package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/redistest"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// appSink is the PHP application of a cluster's nodes: it records the
// events every node delivers (open events by the id in the client's query).
type appSink struct {
	srv *httptest.Server

	mu      sync.Mutex
	fdOf    map[string]int64 // query id → fd
	closes  map[int64][]sinkClose
	changed chan struct{}
}

type sinkClose struct {
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	LostNode *int   `json:"lost_node"`
	From     int    // the node that delivered it
}

func newAppSink(t *testing.T) *appSink {
	s := &appSink{fdOf: map[string]int64{}, closes: map[int64][]sinkClose{}, changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch struct {
			Node   int `json:"node"`
			Events []struct {
				Type  string `json:"type"`
				FD    int64  `json:"fd"`
				Query string `json:"query"`
				sinkClose
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, e := range batch.Events {
			switch e.Type {
			case "open":
				q, _ := url.ParseQuery(e.Query)
				s.fdOf[q.Get("id")] = e.FD
			case "close":
				c := e.sinkClose
				c.From = batch.Node
				s.closes[e.FD] = append(s.closes[e.FD], c)
			}
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// wait polls cond under the sink's lock until it holds.
func (s *appSink) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(readTimeout)
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fd waits for the open event of the client with this id.
func (s *appSink) fd(t *testing.T, id string) int64 {
	t.Helper()
	var fd int64
	s.wait(t, "the open event of "+id, func() bool { fd = s.fdOf[id]; return fd != 0 })
	return fd
}

// clusterNode is a wsbridge process of a cluster.
type clusterNode struct {
	*bridgeProc
	id              int
	rpcAddr, admAdr string
}

const clusterToken = "cluster-test-admin-token"

func startClusterNode(t *testing.T, redisURL, prefix string, sink *appSink, env ...string) *clusterNode {
	t.Helper()
	env = append([]string{
		"WSBRIDGE_REDIS_URL=" + redisURL, "WSBRIDGE_REDIS_PREFIX=" + prefix, "WSBRIDGE_NODE_TTL=2s", "WSBRIDGE_CLUSTER_TIMEOUT=1s",
		"WSBRIDGE_ADMIN_TOKEN=" + clusterToken, "WSBRIDGE_EVENTS_URL=" + sink.srv.URL,
	}, env...)
	p := startDefault(t, env)
	n := &clusterNode{bridgeProc: p}
	rec := p.waitFor("cluster joined")
	n.id = int(rec["node_id"].(float64))
	n.rpcAddr, _ = p.waitFor("rpc listening")["addr"].(string)
	n.admAdr, _ = p.waitFor("admin listening")["addr"].(string)
	return n
}

// call makes one RPC call to the node.
func (n *clusterNode) call(t *testing.T, method string, args, reply any) error {
	t.Helper()
	c, err := rpc.Dial(n.rpcAddr, rpc.JSON, readTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Call(method, args, reply)
}

func callOK[R any](t *testing.T, n *clusterNode, method string, args any) R {
	t.Helper()
	var r R
	if err := n.call(t, method, args, &r); err != nil {
		t.Fatalf("node %d: %s(%v): %v", n.id, method, args, err)
	}
	return r
}

// admin GETs an admin route of the node.
func (n *clusterNode) admin(t *testing.T, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.admAdr+path, nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// dialWS connects a client whose messages the test reads itself.
func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, resp, err := dialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%s)", url, err, status(resp))
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// scrape returns the node's /metrics.
func scrape(t *testing.T, n *clusterNode) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.admAdr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// expect reads the client's next text message.
func expect(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(readTimeout))
	_, got, err := ws.ReadMessage()
	if err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestClusterAcrossNodes: three processes on one Redis (and on a Redis
// Cluster): a push from node A's RPC to fds on B and C answers the owner's
// real answer; group, user and broadcast pushes reach every member once.
func TestClusterAcrossNodes(t *testing.T) {
	for _, kind := range redistest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			redisURL, prefix, sink := kind.Start(t), redistest.Prefix(t), newAppSink(t)
			// b and c take links, a does not: a's calls for their fds
			// travel on links once dialed, their answers through Redis. A
			// Join waits for its node's subscription up to half the call
			// timeout: a loaded machine has 5 s here, not 0.5 s.
			slow := "WSBRIDGE_CLUSTER_TIMEOUT=10s"
			a := startClusterNode(t, redisURL, prefix, sink, slow)
			b := startClusterNode(t, redisURL, prefix, sink, slow, "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
			c := startClusterNode(t, redisURL, prefix, sink, slow, "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
			if a.id == b.id || b.id == c.id || a.id == c.id {
				t.Fatalf("node ids %d, %d, %d", a.id, b.id, c.id)
			}
			cb := dialWS(t, "ws://"+b.addr+"/?id=b")
			cc := dialWS(t, "ws://"+c.addr+"/?id=c")
			fdB, fdC := sink.fd(t, "b"), sink.fd(t, "c")
			if bridge.NodeOf(fdB) != b.id || bridge.NodeOf(fdC) != c.id {
				t.Fatalf("fd %d of node %d, fd %d of node %d", fdB, b.id, fdC, c.id)
			}

			if !callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdB, "data": "to b"}) ||
				!callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdC, "data": "to c"}) {
				t.Fatal("a remote push answered false")
			}
			expect(t, cb, "to b")
			expect(t, cc, "to c")
			var info sender.Info
			if err := a.call(t, "Sender.Info", map[string]any{"fd": fdC}, &info); err != nil || !info.Connected || info.Query["id"][0] != "c" {
				t.Fatalf("remote Info = %+v, %v", info, err)
			}
			for _, fd := range []int64{fdB, fdC} {
				callOK[bool](t, a, "Sender.Join", map[string]any{"fd": fd, "group": "room"})
				callOK[bool](t, a, "Sender.Bind", map[string]any{"fd": fd, "user": "u1"})
			}
			// A Join answers once its node subscribed the group's channel:
			// the listing and the push right after it reach both members.
			if fds := callOK[[]int64](t, a, "Sender.GroupMembers", map[string]any{"group": "room"}); !slices.Equal(fds, []int64{min(fdB, fdC), max(fdB, fdC)}) {
				t.Fatalf("GroupMembers right after the joins = %v, want %d and %d", fds, fdB, fdC)
			}
			if n := callOK[int](t, a, "Sender.PushGroup", map[string]any{"group": "room", "data": "group"}); n != 2 {
				t.Fatalf("PushGroup = %d, want 2", n)
			}
			expect(t, cb, "group")
			expect(t, cc, "group")
			if n := callOK[int](t, a, "Sender.PushUser", map[string]any{"user": "u1", "data": "user"}); n != 2 {
				t.Fatalf("PushUser = %d, want 2", n)
			}
			expect(t, cb, "user")
			expect(t, cc, "user")
			if n := callOK[int](t, a, "Sender.Broadcast", map[string]any{"data": "all", "except": []int64{fdC}}); n != 1 {
				t.Fatalf("Broadcast except c = %d, want 1", n)
			}
			expect(t, cb, "all")
			// Each got one copy: the next message is the marker.
			callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdB, "data": "marker"})
			callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdC, "data": "marker"})
			expect(t, cb, "marker")
			expect(t, cc, "marker")

			var nodes struct {
				Cluster     bool               `json:"cluster"`
				Nodes       []struct{ ID int } `json:"nodes"`
				Connections int64              `json:"connections"`
			}
			waitUntil(t, "GET /v1/nodes lists three nodes and two connections", func() bool {
				return a.admin(t, "/v1/nodes", &nodes) == 200 && nodes.Cluster && len(nodes.Nodes) == 3 && nodes.Connections == 2
			})

			// a dialed the links of b and c; calls travel on them.
			waitUntil(t, "node a's links to b and c", func() bool {
				return strings.Contains(scrape(t, a), `wsbridge_cluster_link_dials_total{result="ok"} 2`)
			})
			callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdB, "data": "on the link"})
			expect(t, cb, "on the link")
			if !strings.Contains(scrape(t, b), `wsbridge_cluster_link_frames_total{direction="in"}`) || strings.Contains(scrape(t, b), `wsbridge_cluster_link_frames_total{direction="in"} 0`) {
				t.Error("node b's metrics count no frame received on a link")
			}

			// The metrics say what crossed nodes.
			metrics := scrape(t, a)
			for _, want := range []string{
				`wsbridge_cluster_calls_total{method="Push",outcome="ok"}`, `wsbridge_cluster_calls_total{method="PushGroup",outcome="ok"}`,
				`wsbridge_cluster_call_duration_seconds_count{method="Push"}`, "wsbridge_cluster_redis_up 1", "wsbridge_cluster_redis_reconnects_total 0",
				`wsbridge_cluster_messages_total{direction="out"}`, "wsbridge_cluster_messages_dropped_total 0",
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("node a's metrics lack %s", want)
				}
			}

			// A closed remote fd answers false.
			cc.Close()
			sink.wait(t, "c's close event", func() bool { return len(sink.closes[fdC]) == 1 })
			if callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdC, "data": "late"}) {
				t.Fatal("a push to a closed remote fd answered true")
			}
			if callOK[bool](t, a, "Sender.Check", map[string]any{"fd": fdC}) {
				t.Fatal("Check of a closed remote fd answered true")
			}
		})
	}
}

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterNodeIDs: five nodes started at once with node id auto each
// claim their own id; a node asking for a live node's id is refused with
// an error that names that node's address.
func TestClusterNodeIDs(t *testing.T) {
	redisURL, prefix, sink := redistest.Start(t).URL(), redistest.Prefix(t), newAppSink(t)
	nodes := make([]*clusterNode, 5)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i] = startClusterNode(t, redisURL, prefix, sink) })
	}
	wg.Wait()
	ids := map[int]bool{}
	for _, n := range nodes {
		if n == nil {
			t.FailNow()
		}
		ids[n.id] = true
	}
	if len(ids) != 5 {
		t.Fatalf("5 nodes claimed ids %v", ids)
	}
	taken := nodes[2]
	var list struct {
		Nodes []struct {
			ID      int
			Address string
		}
	}
	waitUntil(t, "the nodes' addresses recorded", func() bool {
		if taken.admin(t, "/v1/nodes", &list) != http.StatusOK {
			return false
		}
		for _, n := range list.Nodes {
			if n.Address == "tcp://127.0.0.1:0" {
				return false
			}
		}
		return len(list.Nodes) == 5
	})
	res := runBinary(t, []string{"WSBRIDGE_REDIS_URL=" + redisURL, "WSBRIDGE_REDIS_PREFIX=" + prefix, "WSBRIDGE_NODE_ID=" + strconv.Itoa(taken.id),
		"WSBRIDGE_WS_ADDR=127.0.0.1:0", "WSBRIDGE_RPC_ADDR=tcp://127.0.0.1:0", "WSBRIDGE_LOG_FORMAT=json"})
	if res.code != 1 || !strings.Contains(res.stderr, taken.rpcAddr) || !strings.Contains(res.stderr, "node id "+strconv.Itoa(taken.id)) {
		t.Fatalf("a second node with id %d: exit %d, stderr:\n%s\nwant 1 and an error naming %s", taken.id, res.code, res.stderr, taken.rpcAddr)
	}
}

// TestClusterRedisRestart: while Redis is away local pushes keep working,
// remote ones fail fast with node_unreachable and /readyz says not ready;
// once Redis is back the nodes resubscribe by themselves.
func TestClusterRedisRestart(t *testing.T) {
	r := redistest.Start(t)
	prefix, sink := redistest.Prefix(t), newAppSink(t)
	a := startClusterNode(t, r.URL(), prefix, sink)
	b := startClusterNode(t, r.URL(), prefix, sink)
	cb := dialWS(t, "ws://"+b.addr+"/?id=b")
	fdB := sink.fd(t, "b")
	callOK[bool](t, a, "Sender.Push", map[string]any{"fd": fdB, "data": "before"})
	expect(t, cb, "before")

	r.Stop()
	waitUntil(t, "a not ready", func() bool { return a.admin(t, "/readyz", nil) == http.StatusServiceUnavailable })
	for i := range 20 {
		if !callOK[bool](t, b, "Sender.Push", map[string]any{"fd": fdB, "data": fmt.Sprint("local ", i)}) {
			t.Fatal("a local push failed while Redis was away")
		}
		expect(t, cb, fmt.Sprint("local ", i))
	}
	// Refused from the broker's state, not by waiting out the timeout.
	err := a.call(t, "Sender.Push", map[string]any{"fd": fdB, "data": "remote"}, new(bool))
	var e *sender.Error
	if !errors.As(err, &e) || e.Code != sender.CodeNodeUnreachable || !strings.Contains(e.Message, "unavailable") {
		t.Fatalf("a remote push while Redis was away: %v, want node_unreachable: redis unavailable", err)
	}

	if err := r.StartAgain(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a remote push through again", func() bool {
		var ok bool
		return a.call(t, "Sender.Push", map[string]any{"fd": fdB, "data": "again"}, &ok) == nil && ok
	})
	expect(t, cb, "again")
	waitUntil(t, "a ready", func() bool { return a.admin(t, "/readyz", nil) == http.StatusOK })
}

// TestClusterNodeLost: a node killed with SIGKILL; once its heartbeat
// expired a survivor reports each of its connections closed to the
// application, once (code 1006, node_lost); the node restarted with its
// id hands out fds greater than all before.
func TestClusterNodeLost(t *testing.T) {
	redisURL, prefix, sink := redistest.Start(t).URL(), redistest.Prefix(t), newAppSink(t)
	a := startClusterNode(t, redisURL, prefix, sink, "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
	b := startClusterNode(t, redisURL, prefix, sink, "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
	var fds []int64
	for i := range 3 {
		id := fmt.Sprint("b", i)
		connect(t, "ws://"+b.addr+"/?id="+id)
		fds = append(fds, sink.fd(t, id))
	}
	// a's calls for b's fds travel on a link.
	callOK[bool](t, a, "Sender.Check", map[string]any{"fd": fds[0]})
	waitUntil(t, "node a's link to b", func() bool {
		return strings.Contains(scrape(t, a), `wsbridge_cluster_link_dials_total{result="ok"} 1`)
	})
	b.signal(syscall.SIGKILL)
	// The link breaks with the process: a call for b's fd fails, typed,
	// and does not hang.
	if err := a.call(t, "Sender.Push", map[string]any{"fd": fds[0], "data": "x"}, new(bool)); err == nil || !strings.Contains(err.Error(), "node_unreachable") {
		t.Fatalf("push to a killed node's fd: %v, want node_unreachable", err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("node a's log:\n%s", a.log())
		}
	}()
	sink.wait(t, "the lost node's connections reported closed", func() bool {
		for _, fd := range fds {
			if len(sink.closes[fd]) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second) // two more heartbeats: nothing is reported twice
	sink.mu.Lock()
	for _, fd := range fds {
		cl := sink.closes[fd]
		if len(cl) != 1 || cl[0].Code != 1006 || cl[0].Reason != "node_lost" || cl[0].LostNode == nil || *cl[0].LostNode != b.id || cl[0].From != a.id {
			t.Errorf("fd %d: closes %+v, want one 1006 node_lost of node %d from node %d", fd, cl, b.id, a.id)
		}
	}
	sink.mu.Unlock()

	b2 := startClusterNode(t, redisURL, prefix, sink, "WSBRIDGE_NODE_ID="+strconv.Itoa(b.id), "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
	connect(t, "ws://"+b2.addr+"/?id=again")
	fd := sink.fd(t, "again")
	if bridge.NodeOf(fd) != b.id || fd <= slices.Max(fds) {
		t.Fatalf("after the restart fd %d (node %d), want node %d and above %d", fd, bridge.NodeOf(fd), b.id, slices.Max(fds))
	}
	// a links to the restarted node (its new generation) and calls it.
	if !callOK[bool](t, a, "Sender.Check", map[string]any{"fd": fd}) {
		t.Fatal("Check of the restarted node's fd answered false")
	}
	waitUntil(t, "node a's link to the restarted b", func() bool {
		return strings.Contains(scrape(t, a), `wsbridge_cluster_link_dials_total{result="ok"} 2`)
	})
	if !callOK[bool](t, a, "Sender.Check", map[string]any{"fd": fd}) {
		t.Fatal("Check of the restarted node's fd on the link answered false")
	}
}

// TestClusterFailedStartReleasesItsID: a node that claimed its id and then
// failed to start (its RPC address is taken) releases the id at once, so
// that it can be started again right away with the same id.
func TestClusterFailedStartReleasesItsID(t *testing.T) {
	redisURL, prefix, sink := redistest.Start(t).URL(), redistest.Prefix(t), newAppSink(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	res := runBinary(t, []string{"WSBRIDGE_REDIS_URL=" + redisURL, "WSBRIDGE_REDIS_PREFIX=" + prefix, "WSBRIDGE_NODE_ID=9",
		"WSBRIDGE_WS_ADDR=127.0.0.1:0", "WSBRIDGE_RPC_ADDR=tcp://" + taken.Addr().String(), "WSBRIDGE_ADMIN_ADDR=off", "WSBRIDGE_LOG_FORMAT=json"})
	if res.code != 1 || !strings.Contains(res.stderr, "cannot start the RPC service") {
		t.Fatalf("a node whose RPC address is taken: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if n := startClusterNode(t, redisURL, prefix, sink, "WSBRIDGE_NODE_ID=9"); n.id != 9 {
		t.Fatalf("node id %d, want 9", n.id)
	}
}

// TestClusterClaimLostDeliversNoCloses: a node that finds its id taken
// over (it stalled past its TTL; here its claim is overwritten) stops with
// exit 1 without delivering its connections' close events: the survivors
// report them (node_lost), and the application must not hear of each
// connection's close twice.
func TestClusterClaimLostDeliversNoCloses(t *testing.T) {
	r := redistest.Start(t)
	prefix, sink := redistest.Prefix(t), newAppSink(t)
	b := startClusterNode(t, r.URL(), prefix, sink)
	dialWS(t, "ws://"+b.addr+"/?id=victim")
	fd := sink.fd(t, "victim")
	rec := fmt.Sprintf(`{"id":%d,"gen":999999,"address":"usurper:1","ttl_ms":60000}`, b.id)
	if out, err := r.CLI("set", "{"+prefix+"}:node:"+strconv.Itoa(b.id), rec, "px", "60000"); err != nil || out != "OK" {
		t.Fatalf("overwrite the claim: %q, %v", out, err)
	}
	if code := b.wait(); code != 1 {
		t.Fatalf("exit %d after losing its id, want 1; stderr:\n%s", code, b.log())
	}
	if _, ok := b.find("this node lost its cluster node id: stopping"); !ok {
		t.Fatalf("no claim-lost record; stderr:\n%s", b.log())
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, c := range sink.closes[fd] {
		if c.From == b.id {
			t.Errorf("the node that lost its id delivered a close of fd %d: %+v", fd, c)
		}
	}
}

package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/testutil"
	"github.com/wsbridge/wsbridge/internal/tlsreload"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// scrape GETs /metrics and parses it.
func (e *env) scrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	a := e.do(t, "GET", "/metrics", "")
	if a.status != 200 {
		t.Fatalf("GET /metrics: %d %s", a.status, a.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(string(a.body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, a.body)
	}
	return mf
}

// value returns the value of the series name{labels} (a counter, gauge, or
// a histogram's count), and whether it exists.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	fam, ok := mf[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		if len(have) != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// series lists a family's series as "labels=value", sorted, for messages.
func series(mf map[string]*dto.MetricFamily, name string) string {
	fam, ok := mf[name]
	if !ok {
		return name + " missing"
	}
	var out []string
	for _, m := range fam.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		out = append(out, fmt.Sprintf("{%s}=%v", strings.Join(ls, ","), v))
	}
	sort.Strings(out)
	return name + " " + strings.Join(out, " ")
}

// metricWant is a series and the value a test wants it to have.
type metricWant struct {
	name   string
	labels []string
	want   float64
}

// expectMetrics fails for each series of wants missing from mf or with
// another value.
func expectMetrics(t *testing.T, mf map[string]*dto.MetricFamily, wants []metricWant) {
	t.Helper()
	for _, w := range wants {
		if got, ok := value(mf, w.name, w.labels...); !ok || got != w.want {
			t.Errorf("%s%v = %v (present: %v), want %v; %s", w.name, w.labels, got, ok, w.want, series(mf, w.name))
		}
	}
}

// eventSink acknowledges every events request and counts the events.
type eventSink struct {
	mu     sync.Mutex
	events int
}

func (s *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.events += strings.Count(string(body), `"seq":`)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestMetricsAfterTraffic: real WebSocket clients, real RPC calls, real
// admin pushes and real event deliveries; then a scrape shows exactly the
// counts they caused.
func TestMetricsAfterTraffic(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sink := &eventSink{}
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close) // after the dispatcher has delivered the last close events
	disp, err := events.New(events.Config{URL: sinkSrv.URL, Observer: m, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the hub's shutdown: cleanups run last first
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = disp.Shutdown(ctx)
	})
	// Three connections at most, and headers kept only up to 64 bytes
	// (a gorilla client's take about 150).
	e := newEnv(t, bridge.Config{Workers: 2, Listener: disp, MaxConnections: 3, MaxKeptHeaderBytes: 64}, admin.Config{Gatherer: reg})
	disp.SetCloser(e.hub)
	rsrv, err := rpc.New(sender.NewService(e.hub), rpc.Config{Addr: "tcp://127.0.0.1:0", Observer: m, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsrv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rsrv.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = rsrv.Shutdown(ctx)
		<-served
	}()
	if err := m.Watch(admin.Sources{Hub: e.hub, Events: disp, RPC: rsrv}); err != nil {
		t.Fatal(err)
	}

	// Three clients; the events of their opens go to the sink.
	var clients [3]*websocket.Conn
	var fds [3]int64
	for i := range clients {
		c, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("%s/?id=%d", e.ws, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	a, b, c := clients[0], clients[1], clients[2]
	// A fourth is refused: the cap.
	if _, resp, err := websocket.DefaultDialer.Dial(e.ws+"/?id=3", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fourth connection: %v, want HTTP 503", err)
	}
	// Their fds, once the hub has registered them (a moment after the
	// handshake), matched by address: handshakes finishing close together
	// may be given fds in either order.
	var l connList
	for deadline := time.Now().Add(wait); len(l.Connections) != 3; time.Sleep(5 * time.Millisecond) {
		e.do(t, "GET", "/v1/connections", "").json(t, &l)
		if time.Now().After(deadline) {
			t.Fatalf("%d connections listed, want 3", len(l.Connections))
		}
	}
	for i, cl := range clients {
		for _, conn := range l.Connections {
			if conn.RemoteAddr == cl.LocalAddr().String() {
				fds[i] = conn.FD
			}
		}
		if fds[i] == 0 {
			t.Fatalf("client %d (%s) not listed: %+v", i, cl.LocalAddr(), l.Connections)
		}
	}

	// In: 5 + 2 bytes from a.
	for _, msg := range []string{"hello", "hi"} {
		if err := a.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	// RPC: two pushes that succeed (one to an unknown fd: false), one
	// refused, a broadcast of 2 bytes to 3 clients, a check.
	rc, err := rpc.Dial(rsrv.Addr(), rpc.JSON, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var ok bool
	var n int
	for _, call := range []struct {
		method string
		args   any
		reply  any
		fails  bool
	}{
		{"Sender.Push", map[string]any{"fd": fds[0], "data": "abc"}, &ok, false},
		{"Sender.Push", map[string]any{"fd": fds[2] + 1000, "data": "x"}, &ok, false},
		{"Sender.Push", map[string]any{"fd": -1, "data": "x"}, &ok, true},
		{"Sender.Broadcast", map[string]any{"data": "xy"}, &n, false},
		{"Sender.Check", map[string]any{"fd": fds[0]}, &ok, false},
	} {
		if err := rc.Call(call.method, call.args, call.reply); (err != nil) != call.fails {
			t.Fatalf("%s(%v): %v", call.method, call.args, err)
		}
	}
	// A frame in a codec the service does not take: refused from its header.
	bad, err := net.Dial("tcp", strings.TrimPrefix(rsrv.Addr(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.SetDeadline(time.Now().Add(wait))
	if _, err := bad.Write(rpc.RequestFrame(0x80, 1, "Sender.Check", []byte("{}")).Bytes()); err != nil { // proto
		t.Fatal(err)
	}
	if _, err := io.ReadAtLeast(bad, make([]byte, 64), 20); err != nil {
		t.Fatalf("no reply to a refused frame: %v", err)
	}
	// Admin: 5 bytes to b.
	if a := e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/push", fds[1]), `{"data":"admin"}`); a.status != 200 {
		t.Fatalf("admin push: %d %s", a.status, a.body)
	}
	for _, r := range []struct {
		ws   *websocket.Conn
		want []string
	}{{a, []string{"abc", "xy"}}, {b, []string{"xy", "admin"}}, {c, []string{"xy"}}} {
		for _, w := range r.want {
			if _, got := read(t, r.ws); got != w {
				t.Fatalf("read %q, want %q", got, w)
			}
		}
	}
	// Closes: c by RPC with 4000, a by the client with 1000.
	if err := rc.Call("Sender.Disconnect", map[string]any{"fd": fds[2], "code": 4000}, &ok); err != nil || !ok {
		t.Fatalf("Disconnect: %v %v", ok, err)
	}
	testutil.ReadClose(t, c, wait)
	if err := a.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, a, wait)

	// Wait until both closes are counted, the 3 opens, 2 messages and
	// 2 closes are delivered, and the refused connection is closed.
	deadline := time.Now().Add(wait)
	for {
		st, es := e.hub.Stats(), disp.Stats()
		if len(st.Closes) == 2 && es.Delivered == 7 && es.Pending == 0 && st.Handshakes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub %+v, events %+v", st, es)
		}
		time.Sleep(5 * time.Millisecond)
	}

	mf := e.scrape(t)
	expectMetrics(t, mf, []metricWant{
		{"wsbridge_connections", nil, 1},
		{"wsbridge_connections_opened_total", nil, 3},
		{"wsbridge_connections_closed_total", []string{"code", "1000", "by", "client"}, 1},
		{"wsbridge_connections_closed_total", []string{"code", "4000-4999", "by", "server"}, 1},
		{"wsbridge_pushes_total", []string{"result", "queued"}, 1 + 3 + 1},
		{"wsbridge_pushes_total", []string{"result", "not_open"}, 1},
		{"wsbridge_pushes_total", []string{"result", "queue_full"}, 0},
		{"wsbridge_send_queue_overflows_total", []string{"policy", "close"}, 0},
		{"wsbridge_messages_received_total", nil, 2},
		{"wsbridge_received_bytes_total", nil, 7},
		{"wsbridge_sent_bytes_total", nil, 3 + 2*3 + 5},
		{"wsbridge_send_queue_bytes", nil, 0},
		{"wsbridge_send_queue_budget_overflows_total", []string{"action", "refused"}, 0},
		{"wsbridge_send_queue_budget_overflows_total", []string{"action", "closed"}, 0},
		{"wsbridge_send_queue_held_overflows_total", nil, 0},
		{"wsbridge_fragment_aborts_total", []string{"reason", "timeout"}, 0},
		{"wsbridge_fragment_aborts_total", []string{"reason", "too_large"}, 0},
		{"wsbridge_keepalive_pings_total", []string{"path", "direct"}, 0},
		{"wsbridge_keepalive_pings_total", []string{"path", "queued"}, 0},
		{"wsbridge_keepalive_pings_total", []string{"path", "skipped"}, 0},
		{"wsbridge_rpc_connections", nil, 2},
		{"wsbridge_rpc_calls_in_flight", nil, 0},
		{"wsbridge_rpc_connections_refused_total", nil, 0},
		{"wsbridge_rpc_frames_refused_total", nil, 1},
		{"wsbridge_rpc_in_flight_waits_total", nil, 0},
		{"wsbridge_rpc_timeouts_total", []string{"kind", "write"}, 0},
		{"wsbridge_rpc_timeouts_total", []string{"kind", "idle"}, 0},
		{"wsbridge_rpc_timeouts_total", []string{"kind", "read"}, 0},
		{"wsbridge_handshakes_refused_total", []string{"reason", "max_connections"}, 1},
		{"wsbridge_handshakes_refused_total", []string{"reason", "per_ip"}, 0},
		{"wsbridge_handshakes_refused_total", []string{"reason", "events_backlog"}, 0},
		{"wsbridge_handshakes_in_progress", nil, 0},
		{"wsbridge_handshake_headers_trimmed_total", nil, 3},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Push", "outcome", "ok"}, 2},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Push", "outcome", "invalid_fd"}, 1},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Broadcast", "outcome", "ok"}, 1},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Check", "outcome", "ok"}, 1},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Disconnect", "outcome", "ok"}, 1},
		{"wsbridge_rpc_calls_total", []string{"method", "Sender.Info", "outcome", "ok"}, 0},
		{"wsbridge_rpc_call_duration_seconds", []string{"method", "Sender.Push"}, 3},
		{"wsbridge_rpc_call_duration_seconds", []string{"method", "Sender.Broadcast"}, 1},
		{"wsbridge_events_delivered_total", nil, 7},
		{"wsbridge_events_request_events_total", []string{"outcome", "acknowledged"}, 7},
		{"wsbridge_events_request_events_total", []string{"outcome", "failed"}, 0},
		{"wsbridge_events_retries_total", nil, 0},
		{"wsbridge_events_dropped_total", []string{"reason", "queue_fd"}, 0},
		{"wsbridge_events_pending", nil, 0},
		{"wsbridge_events_pending_bytes", nil, 0},
		{"wsbridge_events_dropped_total", []string{"reason", "poison"}, 0},
		{"wsbridge_events_dropped_total", []string{"reason", "unopened"}, 0},
		{"wsbridge_events_batch_splits_total", nil, 0},
		{"wsbridge_events_requests_in_flight", nil, 0},
		{"wsbridge_events_overflow_closes_total", nil, 0},
		{"wsbridge_events_request_duration_seconds", []string{"outcome", "refused"}, 0},
		{"wsbridge_events_auth_duration_seconds", []string{"outcome", "allowed"}, 0},
	})
	// The requests that carried the 7 events, however they were batched.
	if got, _ := value(mf, "wsbridge_events_request_duration_seconds", "outcome", "acknowledged"); got < 1 || got > 7 {
		t.Errorf("%v acknowledged event requests, want 1..7", got)
	}
	var perWorker float64
	for _, w := range []string{"0", "1"} {
		v, ok := value(mf, "wsbridge_worker_connections", "worker", w)
		if !ok {
			t.Errorf("no wsbridge_worker_connections for worker %s", w)
		}
		perWorker += v
	}
	if perWorker != 1 {
		t.Errorf("worker connections add up to %v, want 1; %s", perWorker, series(mf, "wsbridge_worker_connections"))
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_open_fds", "process_resident_memory_bytes"} {
		if _, ok := mf[name]; !ok {
			t.Errorf("no %s: the Go runtime and process collectors are missing", name)
		}
	}
	for name, fam := range mf {
		if strings.HasPrefix(name, "wsbridge_") && fam.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}

// TestMetricsObserverUnknownLabels: the observers keep their label sets
// bounded whatever they are told.
func TestMetricsObserverUnknownLabels(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveCall("Sender.Made.Up", rpc.OutcomeError, time.Millisecond)
	m.ObserveDelivery("exploded", 3, time.Millisecond)
	m.ObserveAuth("maybe", time.Millisecond)
	e := newEnv(t, bridge.Config{}, admin.Config{Gatherer: reg})
	mf := e.scrape(t)
	if v, _ := value(mf, "wsbridge_rpc_calls_total", "method", rpc.MethodUnknown, "outcome", rpc.OutcomeError); v != 1 {
		t.Errorf("an unknown method is not counted as %s: %s", rpc.MethodUnknown, series(mf, "wsbridge_rpc_calls_total"))
	}
	for _, name := range []string{"wsbridge_events_request_duration_seconds", "wsbridge_events_auth_duration_seconds"} {
		if s := series(mf, name); strings.Contains(s, "exploded") || strings.Contains(s, "maybe") {
			t.Errorf("an unknown outcome made a series: %s", s)
		}
	}
	// A second registration on the same registry fails cleanly.
	if _, err := admin.NewMetrics(reg); err == nil {
		t.Error("NewMetrics registered twice on one registry")
	}
}

// TestCertMetrics: the expiry of each listener's certificate and its
// reloads by result, read from the reloaders at scrape time.
func TestCertMetrics(t *testing.T) {
	ca := testutil.NewCA(t, "metrics CA")
	leaf := ca.Issue(t, "ws", time.Now().Add(48*time.Hour).Truncate(time.Second))
	dir := t.TempDir()
	certFile, keyFile := leaf.Write(t, dir)
	r, err := tlsreload.New(tlsreload.Config{Name: "websocket", CertFile: certFile, KeyFile: keyFile, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WatchCerts(r); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFileAtomic(t, certFile, []byte("half a cert"), 0o644)
	if r.Reload() == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	mf := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		mf[f.GetName()] = f
	}
	expectMetrics(t, mf, []metricWant{
		{"wsbridge_tls_certificate_expiry_timestamp_seconds", []string{"listener", "websocket"}, float64(leaf.Cert.NotAfter.Unix())},
		{"wsbridge_tls_certificate_reloads_total", []string{"listener", "websocket", "result", "ok"}, 0},
		{"wsbridge_tls_certificate_reloads_total", []string{"listener", "websocket", "result", "failed"}, 1},
	})
}

// TestClientMessagesRefusedMetric: a client message over the limits is
// counted by reason.
func TestClientMessagesRefusedMetric(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, bridge.Config{MaxMessageSize: 100, ClientMessageRate: 1e-6, ClientMessageBurst: 1, ClientByteBurst: 100,
		ClientRatePolicy: bridge.RatePolicyDrop}, admin.Config{Gatherer: reg})
	if err := m.Watch(admin.Sources{Hub: e.hub}); err != nil {
		t.Fatal(err)
	}
	dial := func() *websocket.Conn {
		c, _, err := websocket.DefaultDialer.Dial(e.ws+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// One message passes, the next is over the message rate (dropped).
	a := dial()
	for _, msg := range []string{"one", "two"} {
		if err := a.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	// Over the size limit: closed with 1009.
	b := dial()
	if err := b.WriteMessage(websocket.BinaryMessage, make([]byte, 101)); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, b, wait)
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		if r := e.hub.Stats().RefusedTotal(); r.MessageRate == 1 && r.TooBig == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused %+v", e.hub.Stats().RefusedTotal())
		}
	}
	mf := e.scrape(t)
	for reason, want := range map[string]float64{"message_rate": 1, "too_big": 1, "byte_rate": 0, "invalid_utf8": 0, "bad_deflate": 0} {
		if got, ok := value(mf, "wsbridge_client_messages_refused_total", "reason", reason); !ok || got != want {
			t.Errorf("refused{reason=%s} = %v (present: %v), want %v", reason, got, ok, want)
		}
	}
}

// TestMetricsQueuesAndFragments: held broadcasts refused behind an open
// fragmented message, fragmented messages aborted (too large, idle), pushes
// refused by the budget of queued bytes: each shows in the scrape as the
// hub counted it.
func TestMetricsQueuesAndFragments(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// drop policy; the budget equals the queue's bound, so a push of more
	// than three quarters of it is refused by the budget alone.
	e := newEnv(t, bridge.Config{Overflow: bridge.OverflowDrop, QueueSize: 2, QueueBytes: 100, MaxPushSize: 100,
		MaxQueuedBytes: 100, FragmentTimeout: time.Second}, admin.Config{Gatherer: reg})
	if err := m.Watch(admin.Sources{Hub: e.hub}); err != nil {
		t.Fatal(err)
	}
	a, fdA := e.dial(t, "a")
	if err := e.hub.Push(fdA, []byte("he"), bridge.OpText, false); err != nil {
		t.Fatal(err)
	}
	held := 0
	for range 3 {
		n, err := e.hub.Broadcast([]byte("b"), bridge.OpText, []int64{})
		if err != nil {
			t.Fatal(err)
		}
		held += n
	}
	if err := e.hub.Push(fdA, []byte("llo"), bridge.OpContinuation, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello", "b", "b"} {
		a.SetReadDeadline(time.Now().Add(wait))
		if _, data, err := a.ReadMessage(); err != nil || string(data) != want {
			t.Fatalf("read %q, %v; want %q", data, err, want)
		}
	}
	if held != 2 {
		t.Fatalf("%d broadcasts held, want 2", held)
	}
	if err := e.hub.Push(fdA, make([]byte, 90), bridge.OpBinary, true); !errors.Is(err, bridge.ErrQueueFull) {
		t.Fatalf("a push past the budget's room: %v, want ErrQueueFull", err)
	}
	b, fdB := e.dial(t, "b")
	if err := e.hub.Push(fdB, make([]byte, 60), bridge.OpBinary, false); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Push(fdB, make([]byte, 60), bridge.OpContinuation, true); !errors.Is(err, bridge.ErrTooLarge) {
		t.Fatalf("a fragmented message past max push size: %v, want ErrTooLarge", err)
	}
	testutil.ReadClose(t, b, wait)
	c, fdC := e.dial(t, "c")
	if err := e.hub.Push(fdC, []byte("x"), bridge.OpBinary, false); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, c, wait) // aborted after the fragment timeout
	// Wait until both aborted connections have ended and every queue is
	// empty.
	aborted := func(st bridge.Stats) bool {
		for _, cl := range st.Closes {
			if cl.Code == "1011" && cl.ByServer && cl.Count == 2 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(wait)
	for st := e.hub.Stats(); st.QueuedBytes != 0 || !aborted(st); st = e.hub.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats never settled: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}

	mf := e.scrape(t)
	expectMetrics(t, mf, []metricWant{
		{"wsbridge_send_queue_bytes", nil, 0},
		{"wsbridge_send_queue_held_overflows_total", nil, 1},
		{"wsbridge_send_queue_budget_overflows_total", []string{"action", "refused"}, 1},
		{"wsbridge_send_queue_budget_overflows_total", []string{"action", "closed"}, 0},
		{"wsbridge_send_queue_overflows_total", []string{"policy", "drop"}, 2},
		{"wsbridge_fragment_aborts_total", []string{"reason", "too_large"}, 1},
		{"wsbridge_fragment_aborts_total", []string{"reason", "timeout"}, 1},
		{"wsbridge_connections_closed_total", []string{"code", "1011", "by", "server"}, 2},
	})
}

// TestPollMetrics: in poll mode the pool's counters are exported; a
// client's half frame past the poll read timeout is counted.
func TestPollMetrics(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, bridge.Config{ReadMode: bridge.ReadModePoll, PollWorkers: 3, PollReadTimeout: 100 * time.Millisecond}, admin.Config{Gatherer: reg})
	if err := m.Watch(admin.Sources{Hub: e.hub}); err != nil {
		t.Fatal(err)
	}
	e.dial(t, "idle")
	half, fdHalf := e.dial(t, "half")
	deadline := time.Now().Add(wait)
	for e.hub.Stats().Poll.Parked != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("poll stats %+v, want 2 parked", *e.hub.Stats().Poll)
		}
		time.Sleep(time.Millisecond)
	}
	// A frame's header and half its payload: the connection waits in the
	// epoll set for the rest (a partial wait); then the header of a frame
	// too large to wait for, whose payload never comes: the pool reads it
	// and gives up after the poll read timeout.
	if _, err := half.NetConn().Write([]byte{0x81, 0x84, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2}); err != nil {
		t.Fatal(err)
	}
	for e.hub.Stats().Poll.PartialWaits != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("poll stats %+v, want a partial wait", *e.hub.Stats().Poll)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := half.NetConn().Write([]byte{'c' ^ 3, 'd' ^ 4, 0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, half, wait)
	for st := e.hub.Stats(); e.hub.Check(fdHalf) || len(st.Closes) != 1 || st.Poll.Parked != 1 || st.Poll.Busy != 0; st = e.hub.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("poll stats %+v, want the half frame's connection closed", *e.hub.Stats().Poll)
		}
		time.Sleep(time.Millisecond)
	}
	expectMetrics(t, e.scrape(t), []metricWant{
		{"wsbridge_poll_workers_busy", nil, 0},
		{"wsbridge_poll_queued_connections", nil, 0},
		{"wsbridge_poll_parked_connections", nil, 1},
		{"wsbridge_poll_wakeups_total", nil, 2},
		{"wsbridge_poll_requeues_total", nil, 0},
		{"wsbridge_poll_read_timeouts_total", nil, 1},
		{"wsbridge_poll_fallbacks_total", nil, 0},
		{"wsbridge_poll_partial_waits_total", nil, 1},
		{"wsbridge_connections_closed_total", []string{"code", "1008", "by", "server"}, 1},
	})
}

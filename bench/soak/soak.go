package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// result is one scenario's report (the JSON field names are the report's).
type result struct {
	Name         string  `json:"scenario"`
	FaultSeconds float64 `json:"fault_seconds"`

	RSSStartMiB  float64 `json:"rss_start_mib"`
	RSSHWMMiB    float64 `json:"rss_hwm_mib"`
	RSSHWMKernel bool    `json:"rss_hwm_from_vmhwm"` // false: sampled VmRSS only

	PushesSent      int64 `json:"pushes_sent"`
	PushesAccepted  int64 `json:"pushes_accepted"`
	PushesDelivered int64 `json:"pushes_delivered"`
	// Refused: answered false (not open, or a full queue under the drop
	// policy), answered with an error (by code), or accepted and then
	// discarded with a connection the bridge closed (by close code).
	PushesRefusedWithReason map[string]int64 `json:"pushes_refused_with_reason"`
	// Unknown: the RPC connection failed during the call (they are not
	// expected; any that arrive are not counted as delivered twice).
	PushesUnknown      int64 `json:"pushes_unknown"`
	PushesLostSilently int64 `json:"pushes_lost_silently"`
	// Still queued when -quiesce-timeout ran out (neither lost nor
	// delivered yet).
	PushesUndelivered int64 `json:"pushes_undelivered_at_end"`

	ClientMessagesSent  int64            `json:"client_messages_sent"`
	EventsSent          int64            `json:"events_sent"` // open + message + close events the bridge generated
	EventsAcked         int64            `json:"events_acked"`
	EventsDuplicates    int64            `json:"events_duplicates"`
	EventsSeqGaps       int64            `json:"events_seq_gaps"`
	EventsDropped       map[string]int64 `json:"events_dropped_by_reason"`
	EventsPendingEnd    int64            `json:"events_pending_at_end"`
	EventsLostSilently  int64            `json:"events_lost_silently"`
	ClientsClosedByCode map[string]int64 `json:"clients_closed_by_code"`

	RecoverSeconds float64 `json:"recover_seconds"` // -1: not within -recover-timeout

	BridgeDropCounters map[string]float64 `json:"bridge_drop_counters"`
	BridgeCounters     map[string]float64 `json:"bridge_counters"`
	BridgeWarnings     int                `json:"bridge_log_warnings"`
	Details            map[string]any     `json:"details,omitempty"`
	Problems           []string           `json:"problems"`
}

// snapshot is the state at a quiet point between scenarios.
type snapshot struct {
	m                                      metrics
	ev                                     eventCounts
	sent, accepted, refused, unknown, gaps int64
	msgs                                   int64
	errs                                   map[string]int64
}

func (s *soaker) snap() (snapshot, error) {
	s.ep.Sync()
	m, err := s.b.scrape()
	if err != nil {
		return snapshot{}, err
	}
	p := s.p
	p.pushErrMu.Lock()
	errs := maps.Clone(p.pushErrs)
	p.pushErrMu.Unlock()
	return snapshot{
		m: m, ev: s.t.counts(), sent: p.pushSent.Load(), accepted: p.pushAccepted.Load(), refused: p.pushRefused.Load(),
		unknown: p.pushUnknown.Load(), gaps: p.gapLost.Load(), msgs: p.msgsSent.Load(), errs: errs,
	}, nil
}

// soaker is one run: the bridge, the endpoint and the pool.
type soaker struct {
	o   *options
	b   *bridgeProc
	ep  endpoint
	t   *tracker
	p   *pool
	log io.Writer
	// bcast is set by stop-reading: its broadcasts are settled in finish.
	bcast *bcastWindow
}

// bcastWindow holds the broadcast counters when a fault's broadcasts began.
type bcastWindow struct{ sent0, acc0, recv0 int64 }

func soak(ctx context.Context, o *options, environ []string, stderr io.Writer) ([]*result, error) {
	dir, err := os.MkdirTemp("", "wsbridge-soak-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintf(stderr, "soak: files in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := o.bin
	if bin == "" {
		fmt.Fprintf(stderr, "soak: building ./cmd/wsbridge\n")
		if bin, err = buildBridge(ctx, dir, o.race); err != nil {
			return nil, err
		}
	}
	logPath := o.bridgeLog
	if logPath == "" {
		logPath = filepath.Join(dir, "bridge.log")
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()

	s := &soaker{o: o, log: stderr}
	s.t = newTracker(func(id int, fd int64) {
		if s.p != nil {
			s.p.learn(id, fd)
		}
	})
	if o.endpoint == "php" {
		s.ep, err = startPHP(dir, o.phpWorkers, s.t)
	} else {
		s.ep, err = startGo(s.t)
	}
	if err != nil {
		return nil, err
	}
	defer s.ep.Close()

	// The environment passes through (WSBRIDGE_* settings included); the
	// tool's flags to the binary win over it.
	env := append(append([]string(nil), environ...), o.set...)
	maxConns := o.n + o.floodConcurrency + 3*o.slowloris + 1000
	if s.b, err = startBridge(bin, env, s.ep.URL(), maxConns, logf); err != nil {
		return nil, err
	}
	bridgeUp := true
	defer func() {
		if bridgeUp {
			_, _ = s.b.terminate(o.shutdownWait)
		}
	}()
	if s.p, err = newPool(o, s.b.wsAddr); err != nil {
		return nil, err
	}
	defer s.p.closeAll()

	fmt.Fprintf(stderr, "soak: bridge pid %d, ws %s, rpc %s, admin %s, events %s (%s); connecting %d clients\n",
		s.b.pid, s.b.wsAddr, s.b.rpcAddr, s.b.adminAddr, s.ep.URL(), o.endpoint, o.n)
	var results []*result
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		fmt.Fprintf(stderr, "soak: %s\n", name)
		r, err := s.scenario(ctx, name)
		if r != nil {
			results = append(results, r)
		}
		if name == "sigterm" {
			bridgeUp = false
		}
		if err != nil {
			return results, fmt.Errorf("%s: %w", name, err)
		}
	}
	return results, nil
}

// scenario runs one fault between two quiet points.
func (s *soaker) scenario(ctx context.Context, name string) (*result, error) {
	o := s.o
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute+o.quiesceTimeout)
	err := s.p.fill(fctx, o.n)
	cancel()
	if err != nil {
		return nil, err
	}
	if err := s.quiesce(ctx); err != nil {
		return nil, err
	}
	s.account(nil) // clients that ended before this scenario belong to none
	a, err := s.snap()
	if err != nil {
		return nil, err
	}
	r := &result{Name: name, FaultSeconds: o.d.Seconds(), RecoverSeconds: -1, Details: map[string]any{}, Problems: []string{}}
	s.b.rss.reset()
	r.RSSStartMiB = mib(s.b.rss.peak.Load())

	if name == "sigterm" {
		return r, s.sigterm(ctx, r, a)
	}
	l := s.p.startLoad(s.b.rpcAddr)
	loadOn := true
	defer func() {
		if loadOn {
			l.halt()
		}
	}()
	// A second of load first: how many events are pending in the normal
	// course of things (recovery brings them back there).
	var normal int64
	for range 10 {
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
		if m, err := s.b.scrape(); err == nil {
			normal = max(normal, int64(m.sum("wsbridge_events_pending")))
		}
	}
	if name == "baseline" {
		if err := sleepCtx(ctx, o.d); err != nil {
			return nil, err
		}
	} else if err := s.fault(ctx, name, r); err != nil {
		return nil, err
	}
	if d, ok := s.recover(ctx, normal); ok {
		r.RecoverSeconds = round2(d.Seconds())
	} else {
		r.Problems = append(r.Problems, fmt.Sprintf("not recovered within -recover-timeout %s", o.recoverTimeout))
	}
	l.halt()
	loadOn = false
	if err := s.quiesce(ctx); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	b, err := s.snap()
	if err != nil {
		return r, err
	}
	s.finish(r, a, b)
	return r, nil
}

func (s *soaker) fault(ctx context.Context, name string, r *result) error {
	o := s.o
	switch name {
	case "php-kill":
		if err := s.ep.Kill(); err != nil {
			return err
		}
		err := sleepCtx(ctx, o.d)
		if rerr := s.ep.Restart(); rerr != nil {
			return fmt.Errorf("restart the endpoint: %w", rerr)
		}
		return err
	case "php-slow":
		if err := s.ep.SetSlow(o.slow); err != nil {
			return err
		}
		r.Details["answer_after"] = o.slow.String()
		err := sleepCtx(ctx, o.d)
		if serr := s.ep.SetSlow(0); serr != nil {
			return serr
		}
		return err
	case "stop-reading":
		s.p.stopReading()
		s.p.pushRate.Store(int64(o.stopPushRate))
		s.p.pushSize.Store(int64(o.stopPushSize))
		r.Details["push_rate_while_stopped"] = o.stopPushRate
		r.Details["push_size_while_stopped"] = o.stopPushSize
		r.Details["broadcast_rate_while_stopped"] = o.stopBcastRate
		sent0, acc0, recv0 := s.p.bcastSent.Load(), s.p.bcastAccepted.Load(), s.p.bcastRecv.Load()
		bstop := make(chan struct{})
		bdone := make(chan struct{})
		go func() {
			defer close(bdone)
			if o.stopBcastRate > 0 {
				s.p.broadcaster(s.b.rpcAddr, o.stopBcastRate, o.stopPushSize, o.rpcTimeout, bstop)
			}
		}()
		err := sleepCtx(ctx, o.d)
		close(bstop)
		<-bdone
		s.p.pushRate.Store(int64(o.pushRate))
		s.p.pushSize.Store(int64(o.pushSize))
		s.p.resumeReading()
		s.bcast = &bcastWindow{sent0: sent0, acc0: acc0, recv0: recv0}
		return err
	case "connect-flood":
		r.Details = connectFlood(ctx, o, s.b.wsAddr, o.d)
	case "slowloris":
		r.Details = slowloris(ctx, o, s.b, o.d)
		if o.d >= o.slowMaxHold {
			for _, port := range []string{"websocket", "rpc", "admin"} {
				if pr, ok := r.Details[port].(map[string]any); ok {
					if held, _ := pr["held_to_the_end"].(int64); held > 0 {
						r.Problems = append(r.Problems, fmt.Sprintf("slowloris: the bridge still held %d connections on its %s port after %s", held, port, o.d))
					}
				}
			}
		} else {
			r.Details["judged"] = fmt.Sprintf("no: -d %s is shorter than -slowloris-max-hold %s", o.d, o.slowMaxHold)
		}
	case "rpc-flood":
		r.Details = rpcFlood(ctx, o, s.b.rpcAddr, o.d)
	default:
		return fmt.Errorf("unknown scenario %q", name)
	}
	return ctx.Err()
}

// expectedEvents is what the bridge generated so far: an open event per
// connection accepted, a message event per message received, a close event
// per connection ended.
func expectedEvents(m metrics) int64 {
	return int64(m.sum("wsbridge_connections_opened_total") + m.sum("wsbridge_messages_received_total") + m.sum("wsbridge_connections_closed_total"))
}

// droppedEvents sums events_dropped_total over its reasons.
func droppedEvents(m metrics) int64 { return int64(m.sum("wsbridge_events_dropped_total")) }

// recover waits, with the load flowing, until the bridge holds exactly the
// pool's connections and then until every push accepted by that moment has
// arrived (or its connection ended) and every event generated by then has
// arrived or been counted as dropped, or the events pending are back to
// their level before the fault (normal; so that events lost silently,
// reported apart, do not hide the recovery). It returns the time that took.
func (s *soaker) recover(ctx context.Context, normal int64) (time.Duration, bool) {
	start := time.Now()
	deadline := start.Add(s.o.recoverTimeout)
	var want int64
	var pushes map[*client]int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s.ep.Sync()
		m, err := s.b.scrape()
		if err == nil {
			if pushes == nil {
				if int(m.sum("wsbridge_connections")) == s.p.count() {
					want = expectedEvents(m)
					pushes = map[*client]int64{}
					s.p.each(func(c *client) { pushes[c] = c.accepted.Load() })
				}
			} else if (s.t.counts().acked+droppedEvents(m) >= want || int64(m.sum("wsbridge_events_pending")) <= normal) && caughtUp(pushes) {
				return time.Since(start), true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), false
}

// caughtUp reports whether every client received what was accepted for it
// at the snapshot (or has ended).
func caughtUp(pushes map[*client]int64) bool {
	for c, n := range pushes {
		select {
		case <-c.ended:
			continue
		default:
		}
		if c.received.Load() < n {
			return false
		}
	}
	return true
}

// quiesce waits, with the load halted, until no event is pending and every
// open client has every push accepted for it.
func (s *soaker) quiesce(ctx context.Context) error {
	deadline := time.Now().Add(s.o.quiesceTimeout)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		m, err := s.b.scrape()
		if err != nil {
			last = err.Error()
		} else {
			pending := int64(m.sum("wsbridge_events_pending"))
			lag := int64(0)
			s.p.each(func(c *client) {
				select {
				case <-c.ended:
				default:
					lag += max(0, c.accepted.Load()-c.received.Load())
				}
			})
			if pending == 0 && lag == 0 {
				return nil
			}
			last = fmt.Sprintf("%d events pending, %d pushes not yet delivered", pending, lag)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not quiet after -quiesce-timeout %s: %s", s.o.quiesceTimeout, last)
}

// clientTally is what account found among the clients.
type clientTally struct {
	lost, undelivered int64
	discarded         map[string]int64 // by close code
	closed            map[string]int64
}

// account settles the clients that ended since the last call: the pushes
// accepted for one and not delivered were discarded with it (allowed when
// the bridge closed it with a code other than 1000/1001, and counted that
// close) or lost. With t == nil it only forgets them. It also adds up, for
// the open clients, what is still undelivered.
func (s *soaker) account(t *clientTally) {
	s.p.each(func(c *client) {
		select {
		case <-c.ended:
		default:
			if t != nil {
				t.undelivered += max(0, c.accepted.Load()-c.received.Load())
			}
			return
		}
		if t != nil {
			code := strconv.Itoa(c.endCode)
			if c.endErr != "" {
				t.closed[code+" ("+c.endErr+")"]++
			} else {
				t.closed[code]++
			}
			if lag := c.accepted.Load() - c.received.Load(); lag > 0 {
				switch {
				case c.byUs.Load():
				case c.endCode == websocket.CloseNormalClosure || c.endCode == websocket.CloseGoingAway:
					t.lost += lag
				default:
					t.discarded["queued, then closed "+code] += lag
				}
			}
		}
		s.p.remove(c)
	})
}

// finish fills r from the snapshots before (a) and after (b) the scenario.
func (s *soaker) finish(r *result, a, b snapshot) {
	t := &clientTally{discarded: map[string]int64{}, closed: map[string]int64{}}
	s.account(t)
	s.fillPushes(r, a, b.sent, b.accepted, b.refused, b.unknown, b.gaps, b.errs, t)
	r.ClientMessagesSent = b.msgs - a.msgs
	r.EventsSent = expectedEvents(b.m) - expectedEvents(a.m)
	r.EventsAcked = b.ev.acked - a.ev.acked
	r.EventsDuplicates = b.ev.dups - a.ev.dups
	r.EventsSeqGaps = b.ev.gaps - a.ev.gaps
	r.EventsDropped = map[string]int64{}
	for k, v := range b.m {
		if strings.HasPrefix(k, "wsbridge_events_dropped_total{") {
			if d := int64(v - a.m[k]); d != 0 {
				r.EventsDropped[labelValue(k, "reason")] += d
			}
		}
	}
	r.EventsPendingEnd = int64(b.m.sum("wsbridge_events_pending"))
	pendingDelta := r.EventsPendingEnd - int64(a.m.sum("wsbridge_events_pending"))
	r.EventsLostSilently = r.EventsSent - r.EventsAcked - sumValues(r.EventsDropped) - pendingDelta
	if w := s.bcast; w != nil {
		s.bcast = nil
		s.settleBroadcasts(r, w, a.m, b.m)
	}
	deltas := counterDeltas(a.m, b.m)
	r.BridgeCounters = deltas
	r.BridgeDropCounters = dropCounters(deltas)
	s.judge(r, b.m, a.m)
}

func (s *soaker) fillPushes(r *result, a snapshot, sent, accepted, refused, unknown, gaps int64, errs map[string]int64, t *clientTally) {
	r.PushesSent = sent - a.sent
	r.PushesAccepted = accepted - a.accepted
	r.PushesUnknown = unknown - a.unknown
	r.PushesRefusedWithReason = map[string]int64{}
	if n := refused - a.refused; n > 0 {
		r.PushesRefusedWithReason["answered false"] = n
	}
	for code, n := range errs {
		if d := n - a.errs[code]; d > 0 {
			r.PushesRefusedWithReason["error "+code] = d
		}
	}
	maps.Copy(r.PushesRefusedWithReason, t.discarded)
	r.PushesLostSilently = gaps - a.gaps + t.lost
	r.PushesUndelivered = t.undelivered
	r.PushesDelivered = r.PushesAccepted - sumValues(t.discarded) - r.PushesLostSilently - r.PushesUndelivered
	r.ClientsClosedByCode = t.closed
	r.RSSHWMMiB = mib(s.b.rss.peak.Load())
	r.RSSHWMKernel = s.b.rss.hwmOK.Load()
	s.b.mu.Lock()
	r.BridgeWarnings = s.b.warnings
	s.b.warnings = 0
	s.b.mu.Unlock()
}

// settleBroadcasts accounts for the broadcasts of a stop-reading fault.
// Every client of the pool was open before the first one, so a client
// still open at the end should have every broadcast: what it misses was
// refused under the drop policy (counted as a send queue overflow) or lost.
// What was accepted for the clients that ended and not delivered went with
// their connections.
func (s *soaker) settleBroadcasts(r *result, w *bcastWindow, a, b metrics) {
	sent := s.p.bcastSent.Load() - w.sent0
	accepted := s.p.bcastAccepted.Load() - w.acc0
	delivered := s.p.bcastRecv.Load() - w.recv0
	var missingOpen int64
	s.p.each(func(c *client) {
		select {
		case <-c.ended:
		default:
			missingOpen += max(0, sent-c.bcast.Load())
		}
	})
	// What open clients miss was refused under the drop policy, as far as
	// the bridge counted drops beyond those the pushes were answered
	// (false for a full queue: false answers minus not_open ones).
	drops := int64(b.with("wsbridge_send_queue_overflows_total", "policy", "drop") - a.with("wsbridge_send_queue_overflows_total", "policy", "drop"))
	pushFalse := r.PushesRefusedWithReason["answered false"] - int64(b.with("wsbridge_pushes_total", "result", "not_open")-a.with("wsbridge_pushes_total", "result", "not_open"))
	refusedOpen := min(missingOpen, max(0, drops-max(0, pushFalse)))
	lostOpen := missingOpen - refusedOpen
	// The rest of what was accepted and not delivered went with the
	// connections that ended.
	ended := max(0, accepted-delivered-lostOpen)
	r.Details["broadcasts"] = map[string]int64{
		"sent": sent, "accepted_by_connections": accepted, "delivered": delivered,
		"refused_on_open_clients": refusedOpen, "lost_on_open_clients": lostOpen, "undelivered_on_ended_clients": ended,
	}
	r.PushesSent += accepted + refusedOpen
	r.PushesAccepted += accepted
	r.PushesDelivered += delivered
	r.PushesLostSilently += lostOpen
	if ended > 0 {
		r.PushesRefusedWithReason["broadcast queued, then the connection closed"] += ended
	}
	if refusedOpen > 0 {
		r.PushesRefusedWithReason["broadcast refused (drop policy)"] += refusedOpen
	}
}

// judge lists what the scenario got wrong.
func (s *soaker) judge(r *result, b, a metrics) {
	if r.PushesLostSilently != 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d pushes lost silently", r.PushesLostSilently))
	}
	if r.PushesUndelivered != 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d accepted pushes still undelivered at the end", r.PushesUndelivered))
	}
	if r.EventsLostSilently != 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d events lost silently (sent - acknowledged - dropped - pending)", r.EventsLostSilently))
	}
	if r.EventsPendingEnd != 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d events still pending at the end", r.EventsPendingEnd))
	}
	// A discard is allowed only if the bridge counted closes with that
	// code by the server.
	for reason := range r.PushesRefusedWithReason {
		code, ok := strings.CutPrefix(reason, "queued, then closed ")
		if !ok || b == nil {
			continue
		}
		closes := b.with("wsbridge_connections_closed_total", "code", code, "by", "server") - a.with("wsbridge_connections_closed_total", "code", code, "by", "server")
		if code == "1006" {
			// The client saw no close frame: the bridge may have sent one
			// with any code (1008 under overflow) and then reset the
			// socket, or closed it without one.
			closes = b.with("wsbridge_connections_closed_total", "by", "server") - a.with("wsbridge_connections_closed_total", "by", "server")
		}
		if closes <= 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("pushes discarded with connections closed %s, but the bridge counted no such close by the server", code))
		}
	}
	if s.o.rssBudgetMiB > 0 && r.RSSHWMMiB > s.o.rssBudgetMiB {
		r.Problems = append(r.Problems, fmt.Sprintf("RSS high-water mark %.1f MiB over the budget %.1f MiB", r.RSSHWMMiB, s.o.rssBudgetMiB))
	}
}

// sigterm sends SIGTERM with pushes flowing (the clients stop sending
// first, so the events to expect are known: one close per connection) and
// reports what was flushed. Its recovery time is the time to exit.
func (s *soaker) sigterm(ctx context.Context, r *result, a snapshot) error {
	o := s.o
	msgRate := o.msgRate
	o.msgRate = 0 // pushes only
	l := s.p.startLoad(s.b.rpcAddr)
	o.msgRate = msgRate
	if err := sleepCtx(ctx, o.d); err != nil {
		l.halt()
		return err
	}
	conns := int64(a.m.sum("wsbridge_connections"))
	idle := holdIdleHTTP(o, s.b.wsAddr)
	r.Details["idle_http_requests_held"] = len(idle)
	took, err := s.b.terminate(o.shutdownWait)
	l.halt()
	for _, c := range idle {
		_ = c.Close()
	}
	r.RecoverSeconds = round2(took.Seconds())
	r.Details["exit"] = fmt.Sprint(err)
	if err != nil {
		r.Problems = append(r.Problems, "exit after SIGTERM: "+err.Error())
	}
	// Every client must have seen its connection end.
	done := make(chan struct{})
	go func() { s.p.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.Problems = append(r.Problems, "clients still open 10s after the bridge exited")
	}
	s.ep.Sync()
	t := &clientTally{discarded: map[string]int64{}, closed: map[string]int64{}}
	s.account(t)
	p := s.p
	p.pushErrMu.Lock()
	errs := maps.Clone(p.pushErrs)
	p.pushErrMu.Unlock()
	s.fillPushes(r, a, p.pushSent.Load(), p.pushAccepted.Load(), p.pushRefused.Load(), p.pushUnknown.Load(), p.gapLost.Load(), errs, t)
	// The bridge's last counts are in its "events stopped" log line.
	s.b.mu.Lock()
	final := s.b.finalLogs
	s.b.mu.Unlock()
	r.EventsSent = conns // close events; nothing else happened since a
	ev := s.t.counts()
	r.EventsAcked = ev.acked - a.ev.acked
	r.EventsDuplicates = ev.dups - a.ev.dups
	r.EventsSeqGaps = ev.gaps - a.ev.gaps
	r.EventsDropped = map[string]int64{}
	if final == nil {
		r.Problems = append(r.Problems, `no "events stopped" line in the bridge's log: drops at shutdown unknown`)
	}
	for k, v := range final {
		reason, ok := strings.CutPrefix(k, "dropped_")
		if !ok {
			continue
		}
		n, _ := v.(float64)
		before := int64(0)
		for mk, mv := range a.m {
			if strings.HasPrefix(mk, "wsbridge_events_dropped_total{") && labelValue(mk, "reason") == reason {
				before = int64(mv)
			}
		}
		if d := int64(n) - before; d != 0 {
			r.EventsDropped[reason] = d
		}
	}
	r.EventsLostSilently = r.EventsSent - r.EventsAcked - sumValues(r.EventsDropped)
	r.Details["clients_saw_1001"] = t.closed["1001"]
	if n := t.closed["1001"]; n != conns {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d clients did not get close 1001", conns-n, conns))
	}
	s.judge(r, nil, nil)
	// Discards at shutdown are judged by code alone: no scrape after exit.
	return nil
}

func labelValue(series, label string) string {
	i := strings.Index(series, label+`="`)
	if i < 0 {
		return ""
	}
	rest := series[i+len(label)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

func sumValues(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}

// printTable writes the human report.
func printTable(w io.Writer, o *options, results []*result) {
	fmt.Fprintf(w, "soak: %d connections, faults of %s, %d pushes/s of %d bytes, %d client messages/s, %s endpoint\n\n",
		o.n, o.d, o.pushRate, o.pushSize, o.msgRate, o.endpoint)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tRSS start MiB\tRSS hwm MiB\tpushes sent\tdelivered\trefused (counted)\tlost\tevents sent\tacked\tdropped (counted)\tlost\trecover s\tresult")
	for _, r := range results {
		verdict := "ok"
		if len(r.Problems) > 0 {
			verdict = "PROBLEM"
		}
		rec := "-"
		if r.RecoverSeconds >= 0 {
			rec = strconv.FormatFloat(r.RecoverSeconds, 'f', 2, 64)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Name, r.RSSStartMiB, r.RSSHWMMiB, r.PushesSent, r.PushesDelivered,
			sumValues(r.PushesRefusedWithReason), r.PushesLostSilently+r.PushesUndelivered, r.EventsSent, r.EventsAcked,
			sumValues(r.EventsDropped), r.EventsLostSilently, rec, verdict)
	}
	_ = tw.Flush()
	for _, r := range results {
		var lines []string
		for _, k := range sortedKeys(r.PushesRefusedWithReason) {
			lines = append(lines, fmt.Sprintf("pushes refused: %s: %d", k, r.PushesRefusedWithReason[k]))
		}
		for _, k := range sortedKeys(r.EventsDropped) {
			lines = append(lines, fmt.Sprintf("events dropped: %s: %d", k, r.EventsDropped[k]))
		}
		for _, k := range sortedKeys(r.BridgeDropCounters) {
			lines = append(lines, fmt.Sprintf("bridge counter: %s +%g", k, r.BridgeDropCounters[k]))
		}
		if len(r.ClientsClosedByCode) > 0 {
			var parts []string
			for _, k := range sortedKeys(r.ClientsClosedByCode) {
				parts = append(parts, fmt.Sprintf("%s×%d", k, r.ClientsClosedByCode[k]))
			}
			lines = append(lines, "clients ended: "+strings.Join(parts, " "))
		}
		for _, k := range sortedKeys(r.Details) {
			v := r.Details[k]
			if m, ok := v.(map[string]any); ok {
				b, _ := json.Marshal(m)
				v = string(b)
			} else if m, ok := v.(map[string]int64); ok {
				b, _ := json.Marshal(m)
				v = string(b)
			}
			lines = append(lines, fmt.Sprintf("%s: %v", k, v))
		}
		for _, p := range r.Problems {
			lines = append(lines, "PROBLEM: "+p)
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", r.Name)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

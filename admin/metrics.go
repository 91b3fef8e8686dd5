package admin

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/internal/tlsreload"
	"github.com/wsbridge/wsbridge/rpc"
)

// Namespace prefixes every metric of the bridge.
const Namespace = "wsbridge"

// Buckets of the latency histograms, in seconds: an RPC call takes
// microseconds; an event request or an authorization is a round trip to
// the application.
var (
	rpcBuckets    = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	eventsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// NewRegistry returns a registry with the Go runtime and process
// collectors, for one process's metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Metrics are the bridge's Prometheus metrics. The hub's, the dispatcher's
// and the RPC server's counters are read from their Stats at scrape time
// (Watch), so they cost the hot paths nothing beyond the atomic adds those
// keep anyway. RPC calls, event requests and authorizations are timed
// through the Observer hooks of rpc.Config and events.Config, which
// Metrics implements, with label children resolved in advance.
type Metrics struct {
	reg prometheus.Registerer

	rpcCalls    *prometheus.CounterVec   // method, outcome
	rpcDuration *prometheus.HistogramVec // method
	rpcOK       map[string]prometheus.Counter
	rpcHist     map[string]prometheus.Observer

	deliveries     *prometheus.HistogramVec // outcome
	deliveryByOut  map[string]prometheus.Observer
	deliveredByOut map[string]prometheus.Counter // events per outcome
	auths          *prometheus.HistogramVec      // outcome
	authByOut      map[string]prometheus.Observer

	remoteCalls    *prometheus.CounterVec   // method, outcome
	remoteDuration *prometheus.HistogramVec // method
}

var (
	_ rpc.Observer     = (*Metrics)(nil)
	_ events.Observer  = (*Metrics)(nil)
	_ cluster.Observer = (*Metrics)(nil)
)

// NewMetrics registers the observed metrics (RPC calls, event requests,
// authorizations) on reg; Watch adds the counters of a running bridge.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		rpcCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "rpc", Name: "calls_total",
			Help: "RPC calls answered, by method and outcome (ok, or the error code).",
		}, []string{"method", "outcome"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "rpc", Name: "call_duration_seconds",
			Help:    "Time from reading an RPC call's header to its reply being ready, by method.",
			Buckets: rpcBuckets,
		}, []string{"method"}),
		deliveries: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "events", Name: "request_duration_seconds",
			Help:    "Event delivery requests to the application by outcome (acknowledged, refused, failed: retried, cancelled: at shutdown), and their duration.",
			Buckets: eventsBuckets,
		}, []string{"outcome"}),
		auths: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "events", Name: "auth_duration_seconds",
			Help:    "Handshake authorizations by outcome (allowed, denied, failed: refused with 503), and their duration.",
			Buckets: eventsBuckets,
		}, []string{"outcome"}),
		remoteCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "cluster", Name: "calls_total",
			Help: "Calls this node made to other nodes of the cluster (an fd of another node, or a group, user or broadcast reaching the nodes in scope), by method and outcome (ok, sent: no ack awaited, node_unreachable, or the other node's error code).",
		}, []string{"method", "outcome"}),
		remoteDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "cluster", Name: "call_duration_seconds",
			Help:    "Time from sending a call to other nodes to having their answers, by method.",
			Buckets: rpcBuckets,
		}, []string{"method"}),
		rpcOK:          map[string]prometheus.Counter{},
		rpcHist:        map[string]prometheus.Observer{},
		deliveryByOut:  map[string]prometheus.Observer{},
		deliveredByOut: map[string]prometheus.Counter{},
		authByOut:      map[string]prometheus.Observer{},
	}
	eventsByOutcome := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "events", Name: "request_events_total",
		Help: "Events carried by event delivery requests, by the request's outcome.",
	}, []string{"outcome"})
	for _, method := range append(rpc.Methods(), rpc.MethodUnknown) {
		m.rpcOK[method] = m.rpcCalls.WithLabelValues(method, rpc.OutcomeOK)
		m.rpcHist[method] = m.rpcDuration.WithLabelValues(method)
	}
	for _, o := range []string{events.OutcomeAcknowledged, events.OutcomeRefused, events.OutcomeFailed, events.OutcomeCancelled} {
		m.deliveryByOut[o] = m.deliveries.WithLabelValues(o)
		m.deliveredByOut[o] = eventsByOutcome.WithLabelValues(o)
	}
	for _, o := range []string{events.OutcomeAllowed, events.OutcomeDenied, events.OutcomeFailed} {
		m.authByOut[o] = m.auths.WithLabelValues(o)
	}
	for _, c := range []prometheus.Collector{m.rpcCalls, m.rpcDuration, m.deliveries, eventsByOutcome, m.auths, m.remoteCalls, m.remoteDuration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveRemoteCall implements cluster.Observer.
func (m *Metrics) ObserveRemoteCall(method, outcome string, d time.Duration) {
	m.remoteCalls.WithLabelValues(method, outcome).Inc()
	m.remoteDuration.WithLabelValues(method).Observe(d.Seconds())
}

// ObserveCall implements rpc.Observer.
func (m *Metrics) ObserveCall(method, outcome string, d time.Duration) {
	h, ok := m.rpcHist[method]
	if !ok { // the rpc package names only its methods and MethodUnknown
		method = rpc.MethodUnknown
		h = m.rpcHist[method]
	}
	h.Observe(d.Seconds())
	if outcome == rpc.OutcomeOK {
		m.rpcOK[method].Inc()
		return
	}
	m.rpcCalls.WithLabelValues(method, outcome).Inc() // errors: off the hot path
}

// ObserveDelivery implements events.Observer.
func (m *Metrics) ObserveDelivery(outcome string, n int, d time.Duration) {
	if h, ok := m.deliveryByOut[outcome]; ok {
		h.Observe(d.Seconds())
		m.deliveredByOut[outcome].Add(float64(n))
	}
}

// ObserveAuth implements events.Observer.
func (m *Metrics) ObserveAuth(outcome string, d time.Duration) {
	if h, ok := m.authByOut[outcome]; ok {
		h.Observe(d.Seconds())
	}
}

// Sources are what Watch reads at scrape time; nil ones are left out.
type Sources struct {
	Hub     *bridge.Hub
	Events  *events.Dispatcher
	RPC     *rpc.Server
	Cluster *cluster.Member // cluster mode only
	Admin   *Server         // the console's stream viewers and traces
}

// Watch registers a collector that reads the counters of src at every
// scrape.
func (m *Metrics) Watch(src Sources) error {
	if src.Cluster != nil {
		if err := m.reg.Register(newClusterCollector(src.Cluster)); err != nil {
			return err
		}
	}
	return m.reg.Register(newStatsCollector(src))
}

// clusterCollector reads a cluster Member's counters at every scrape.
type clusterCollector struct {
	m                                               *cluster.Member
	up, reconnects, subscriptions, dropped, served  *prometheus.Desc
	frames, late, fdWrites, fdRewrites, blocks, ids *prometheus.Desc
	linkFrames, linkDials, linkLost, linkRefused    *prometheus.Desc
	subFailures                                     *prometheus.Desc
}

func newClusterCollector(m *cluster.Member) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "cluster", name), help, labels, nil)
	}
	return &clusterCollector{m: m,
		up:            d("redis_up", "1 while Redis is reachable, else 0 (then remote calls fail with node_unreachable and /readyz answers 503)."),
		reconnects:    d("redis_reconnects_total", "Times Redis came back after being unreachable."),
		subscriptions: d("subscriptions", "Channels this node is subscribed to (its own, the broadcast channel, and one per group and user with local connections)."),
		dropped:       d("messages_dropped_total", "Messages on this node's channels and links dropped as malformed (any Redis client can publish there), or link frames that said they came from another node than the link's."),
		served:        d("calls_served_total", "Calls of other nodes this node ran."),
		frames:        d("messages_total", "Messages between nodes, by direction (out: published, in: received); one message carries many calls and answers.", "direction"),
		late:          d("late_answers_total", "Answers that arrived after their call gave up (past cluster-timeout)."),
		fdWrites:      d("fd_set_writes_total", "Opens and closes written to this node's open-fd set in Redis (what a survivor reads when this node is lost)."),
		fdRewrites:    d("fd_set_rewrites_total", "Times the open-fd set was written anew (after Redis was away or its queue overflowed)."),
		blocks:        d("fd_blocks_total", "fd sequence blocks reserved in Redis."),
		ids:           d("lost_nodes_handled_total", "Lost nodes whose connections this node reported closed to the application."),
		linkFrames:    d("link_frames_total", "Messages between nodes on direct links (WSBRIDGE_CLUSTER_LINK), not through Redis, by direction (out, in); also counted in messages_total.", "direction"),
		linkDials:     d("link_dials_total", "Links to other nodes this node opened, by result (ok; error: the calls went through Redis meanwhile).", "result"),
		linkLost:      d("links_lost_total", "Links to other nodes that broke (the other node left or died, or a write failed); the calls go through Redis until a new one is up."),
		linkRefused:   d("link_refused_total", "Connections to this node's link listener closed unserved, by reason (handshake: closed or timed out before it finished, not proved with the cluster's link secret, or not the nodes the registry names; busy: too many in their handshake, from one address, or links of one node).", "reason"),
		subFailures:   d("subscribe_failures_total", "Group and user channels the broker refused to subscribe (past its channel bound): their pushes miss this node's members until a retry succeeds."),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.reconnects, c.subscriptions, c.dropped, c.served, c.frames, c.late, c.fdWrites, c.fdRewrites, c.blocks, c.ids, c.subFailures,
		c.linkFrames, c.linkDials, c.linkLost, c.linkRefused} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	up := 0.0
	if st.Health.Up {
		up = 1
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.up, up)
	counter(c.reconnects, st.Health.Reconnects)
	gauge(c.subscriptions, float64(st.Health.Channels))
	counter(c.dropped, st.Router.Dropped)
	counter(c.served, st.Router.Served)
	counter(c.frames, st.Router.FramesOut, "out")
	counter(c.frames, st.Router.FramesIn, "in")
	counter(c.late, st.Router.LateAnswers)
	ln := st.Router.Links
	counter(c.linkFrames, ln.FramesOut, "out")
	counter(c.linkFrames, ln.FramesIn, "in")
	counter(c.linkDials, ln.Dials, "ok")
	counter(c.linkDials, ln.DialErrors, "error")
	counter(c.linkLost, ln.Lost)
	counter(c.linkRefused, ln.Refused, "handshake")
	counter(c.linkRefused, ln.Busy, "busy")
	counter(c.fdWrites, st.Tracker.Written)
	counter(c.fdRewrites, st.Tracker.Rewrites)
	counter(c.blocks, st.Sequence.Blocks)
	counter(c.ids, st.Registry.LostHandled)
	counter(c.subFailures, st.SubscribeFailures)
}

// statsCollector turns Stats snapshots into metrics at scrape time.
type statsCollector struct {
	src    Sources
	policy string // the hub's overflow policy

	connections, workerConns, opened, closed, pushes, overflows *prometheus.Desc
	messagesIn, bytesIn, bytesOut                               *prometheus.Desc
	rpcConns, rpcInFlight, rpcRefusedConns, rpcRefusedFrames    *prometheus.Desc
	rpcInFlightWaits, rpcTimeouts                               *prometheus.Desc
	refused, handshakes, headersTrimmed                         *prometheus.Desc
	queuedBytes, budgetOverflows, heldOverflows, fragAborts     *prometheus.Desc
	pings                                                       *prometheus.Desc
	evDelivered, evRetries, evDropped, evClosed                 *prometheus.Desc
	evPending, evInFlight                                       *prometheus.Desc
	evPendingBytes, evReserved, evSplits                        *prometheus.Desc
	refusedIn                                                   *prometheus.Desc
	viewers, viewersDropped, traces, ready                      *prometheus.Desc
	pollBusy, pollQueued, pollParked, pollWakeups               *prometheus.Desc
	pollRequeues, pollReadTimeouts, pollFallbacks, pollPartial  *prometheus.Desc
}

func newStatsCollector(src Sources) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	c := &statsCollector{
		src:             src,
		connections:     d("connections", "Open WebSocket connections."),
		workerConns:     d("worker_connections", "Open WebSocket connections per worker partition.", "worker"),
		opened:          d("connections_opened_total", "WebSocket connections accepted."),
		closed:          d("connections_closed_total", "WebSocket connections ended, by close code (1006: no close frame; application codes counted by range) and by who closed first (client or server).", "code", "by"),
		pushes:          d("pushes_total", "Messages pushed to one connection each (a broadcast counts once per connection), by result: queued, queue_full (refused by the overflow policy), not_open.", "result"),
		overflows:       d("send_queue_overflows_total", "Pushes refused by a full send queue, by the overflow policy that applied (close: the connection was closed with 1008; drop: the push was dropped).", "policy"),
		queuedBytes:     d("send_queue_bytes", "Payload bytes queued for all WebSocket clients (a broadcast counts once), bounded by max-queued-bytes."),
		budgetOverflows: d("send_queue_budget_overflows_total", "Overflows of max-queued-bytes, by action: refused (a push refused; also in send_queue_overflows_total) or closed (a connection with one of the largest queues closed with 1008, close policy).", "action"),
		heldOverflows:   d("send_queue_held_overflows_total", "Broadcasts refused because those held behind an open fragmented message were at the queue's bounds (also in send_queue_overflows_total)."),
		fragAborts:      d("fragment_aborts_total", "Fragmented messages aborted with close 1011, by reason: timeout (no push within fragment-timeout) or too_large (past max-push-size).", "reason"),
		pings: d("keepalive_pings_total", "Keepalive pings by how they went: direct (written at once, nothing was queued), "+
			"queued (behind what the connection had queued or was writing, or under TLS), skipped (the connection's send queue was full).", "path"),
		messagesIn:     d("messages_received_total", "Messages received from WebSocket clients and given to the application (refused ones are in client_messages_refused_total)."),
		bytesIn:        d("received_bytes_total", "Payload bytes of the messages received from WebSocket clients and given to the application."),
		bytesOut:       d("sent_bytes_total", "Payload bytes of the messages written to WebSocket clients."),
		refused:        d("handshakes_refused_total", "WebSocket handshakes refused by the bridge's limits, by reason (shutting_down, max_connections, per_ip, handshakes, rate, events_backlog, internal_error, fd_unavailable: cluster mode, no fd block could be reserved while Redis is away).", "reason"),
		handshakes:     d("handshakes_in_progress", "Connections accepted on the WebSocket port and not yet upgraded."),
		headersTrimmed: d("handshake_headers_trimmed_total", "Connections whose kept handshake headers were cut down to max-kept-header-bytes."),
		rpcConns:       d("rpc_connections", "Open RPC connections."),
		rpcInFlight:    d("rpc_calls_in_flight", "RPC calls read and not yet answered (at most rpc-max-inflight per connection)."),
		rpcRefusedConns: d("rpc_connections_refused_total",
			"RPC connections closed at once because rpc-max-connections were open."),
		rpcRefusedFrames: d("rpc_frames_refused_total",
			"RPC request frames refused from their header (bad header, over rpc-max-frame-size, codec or flags not served) with a bad_request reply."),
		rpcInFlightWaits: d("rpc_in_flight_waits_total",
			"Times an RPC connection reached rpc-max-inflight and was not read until a reply was written."),
		rpcTimeouts: d("rpc_timeouts_total",
			"RPC connections closed by a timeout: write (a reply not written within rpc-write-timeout: the client does not read) idle (no request within rpc-idle-timeout) or read (a request begun and not whole within rpc-read-timeout).", "kind"),
		evDelivered:    d("events_delivered_total", "Events acknowledged by the application."),
		evRetries:      d("events_retries_total", "Event delivery requests that failed and were retried."),
		evDropped:      d("events_dropped_total", "Events dropped, by reason (queue_fd, queue_total, queue_bytes, refused, poison, unopened, shutdown).", "reason"),
		evClosed:       d("events_overflow_closes_total", "Connections closed because their events overflowed (events-overflow=close) or their open event was dropped."),
		evPending:      d("events_pending", "Events not yet acknowledged by the application, in flight included."),
		evInFlight:     d("events_requests_in_flight", "Event delivery requests under way."),
		evPendingBytes: d("events_pending_bytes", "Encoded size of the events not yet acknowledged."),
		evReserved:     d("events_reserved_closes", "Close events reserved, one per open connection whose open event was accepted; each counts against the events queue bounds."),
		evSplits:       d("events_batch_splits_total", "Event batches split after failing events-retries times (per connection, then per event)."),
		refusedIn: d("client_messages_refused_total", "Messages from WebSocket clients not given to the application, by reason: "+
			"message_rate, byte_rate (over the client rate; the connection closed with 1008, or the message dropped under client-rate-policy=drop), "+
			"too_big (over max-message-size once inflated: 1009), invalid_utf8 (1007), bad_deflate (compressed data that does not inflate: 1007), closing (arrived after the connection began closing: discarded as RFC 6455 asks).", "reason"),
	}
	c.viewers = d("console_stream_viewers", "Viewers of the console's live stream (GET /v1/stream) now.")
	c.viewersDropped = d("console_stream_viewers_dropped_total", "Stream viewers dropped because they did not read their last samples (each holds at most a few).")
	c.traces = d("console_traces", "Connections whose trace is kept now (at most 32).")
	c.pollBusy = d("poll_workers_busy", "Goroutines of the poll mode's pool reading a connection now (at most poll-workers; read-mode=poll only).")
	c.pollQueued = d("poll_queued_connections", "Connections with bytes to read waiting for a goroutine of the poll mode's pool.")
	c.pollParked = d("poll_parked_connections", "Connections waiting in the poll mode's epoll set with no goroutine.")
	c.pollWakeups = d("poll_wakeups_total", "Connections taken from the poll mode's epoll set to be read.")
	c.pollRequeues = d("poll_requeues_total", "Turns of the poll mode's pool that read a connection's per-turn budget of messages (a client ping or pong counts as one) and put it back at the end of the queue.")
	c.pollReadTimeouts = d("poll_read_timeouts_total", "Connections closed with 1008 because a message did not arrive within poll-read-timeout once the poll mode's pool began reading it.")
	c.pollPartial = d("poll_partial_waits_total", "Times a connection was parked with part of a message's first frame (at most 8 KiB) in its socket until the rest arrived, instead of a pool goroutine waiting for it.")
	c.pollFallbacks = d("poll_fallbacks_total", "Connections read by a goroutine of their own in poll mode: their socket has no descriptor to poll (TLS).")
	c.ready = d("ready", "1 while GET /readyz answers ready (every listener bound and served, not shutting down; cluster mode: Redis up), else 0.")
	if src.Hub != nil {
		c.policy = string(src.Hub.Config().Overflow)
	}
	return c
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.workerConns, c.opened, c.closed, c.pushes, c.overflows,
		c.messagesIn, c.bytesIn, c.bytesOut, c.queuedBytes, c.budgetOverflows, c.heldOverflows, c.fragAborts, c.pings, c.refused, c.handshakes, c.headersTrimmed, c.rpcConns, c.rpcInFlight, c.rpcRefusedConns, c.rpcRefusedFrames,
		c.rpcInFlightWaits, c.rpcTimeouts, c.evDelivered, c.evRetries, c.evDropped, c.evClosed,
		c.evPending, c.evInFlight, c.evPendingBytes, c.evReserved, c.evSplits, c.refusedIn, c.viewers, c.viewersDropped, c.traces, c.ready,
		c.pollBusy, c.pollQueued, c.pollParked, c.pollWakeups, c.pollRequeues, c.pollReadTimeouts, c.pollFallbacks, c.pollPartial} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	if h := c.src.Hub; h != nil {
		st := h.Stats()
		var opened, pushed, overflows, in, bytesIn, bytesOut, held, fragTimeouts, fragTooLarge uint64
		var pingsDirect, pingsQueued, pingsSkipped uint64
		for _, w := range st.Workers {
			gauge(c.workerConns, w.Connections, strconv.Itoa(w.ID))
			opened += w.Opened
			pushed += w.Pushed
			overflows += w.Overflows
			in += w.MessagesIn
			bytesIn += w.BytesIn
			bytesOut += w.BytesOut
			held += w.HeldOverflows
			fragTimeouts += w.FragmentTimeouts
			fragTooLarge += w.FragmentTooLarge
			pingsDirect += w.PingsDirect
			pingsQueued += w.PingsQueued
			pingsSkipped += w.PingsSkipped
		}
		gauge(c.connections, st.Connections)
		counter(c.opened, opened)
		for _, cl := range st.Closes {
			by := "client"
			if cl.ByServer {
				by = "server"
			}
			counter(c.closed, cl.Count, cl.Code, by)
		}
		counter(c.pushes, pushed, "queued")
		counter(c.pushes, overflows, "queue_full")
		counter(c.pushes, st.NotOpen, "not_open")
		counter(c.overflows, overflows, c.policy)
		counter(c.messagesIn, in)
		counter(c.bytesIn, bytesIn)
		counter(c.bytesOut, bytesOut)
		rf := st.Refused
		for _, r := range []struct {
			reason string
			n      uint64
		}{
			{bridge.RefusedShuttingDown, rf.ShuttingDown}, {bridge.RefusedMaxConnections, rf.MaxConnections},
			{bridge.RefusedPerIP, rf.PerIP}, {bridge.RefusedHandshakes, rf.Handshakes}, {bridge.RefusedRate, rf.Rate},
			{bridge.RefusedEventsBacklog, rf.EventsBacklog}, {bridge.RefusedInternalError, rf.InternalError},
			{bridge.RefusedFDUnavailable, rf.FDUnavailable},
		} {
			counter(c.refused, r.n, r.reason)
		}
		gauge(c.handshakes, st.Handshakes)
		counter(c.headersTrimmed, st.HeadersTrimmed)
		r := st.RefusedTotal()
		counter(c.refusedIn, r.MessageRate, "message_rate")
		counter(c.refusedIn, r.ByteRate, "byte_rate")
		counter(c.refusedIn, r.TooBig, "too_big")
		counter(c.refusedIn, r.InvalidUTF8, "invalid_utf8")
		counter(c.refusedIn, r.BadDeflate, "bad_deflate")
		counter(c.refusedIn, r.Closing, "closing")
		gauge(c.queuedBytes, int(st.QueuedBytes))
		counter(c.budgetOverflows, st.BudgetRefused, "refused")
		counter(c.budgetOverflows, st.BudgetCloses, "closed")
		counter(c.heldOverflows, held)
		counter(c.fragAborts, fragTimeouts, "timeout")
		counter(c.fragAborts, fragTooLarge, "too_large")
		counter(c.pings, pingsDirect, "direct")
		counter(c.pings, pingsQueued, "queued")
		counter(c.pings, pingsSkipped, "skipped")
		if p := st.Poll; p != nil {
			gauge(c.pollBusy, int(p.Busy))
			gauge(c.pollQueued, p.Queued)
			gauge(c.pollParked, int(p.Parked))
			counter(c.pollWakeups, p.Wakeups)
			counter(c.pollRequeues, p.Requeued)
			counter(c.pollReadTimeouts, p.ReadTimeouts)
			counter(c.pollFallbacks, p.Fallbacks)
			counter(c.pollPartial, p.PartialWaits)
		}
	}
	if r := c.src.RPC; r != nil {
		st := r.Stats()
		gauge(c.rpcConns, st.Connections)
		gauge(c.rpcInFlight, st.InFlight)
		counter(c.rpcRefusedConns, st.ConnectionsRefused)
		counter(c.rpcRefusedFrames, st.FramesRefused)
		counter(c.rpcInFlightWaits, st.InFlightWaits)
		counter(c.rpcTimeouts, st.WriteTimeouts, "write")
		counter(c.rpcTimeouts, st.IdleTimeouts, "idle")
		counter(c.rpcTimeouts, st.ReadTimeouts, "read")
	}
	if a := c.src.Admin; a != nil {
		st := a.streams.stats()
		gauge(c.viewers, st.Viewers)
		counter(c.viewersDropped, st.Dropped)
		gauge(c.traces, len(a.hub.Traced()))
		ready := 0
		if a.isReady() {
			ready = 1
		}
		gauge(c.ready, ready)
	}
	if d := c.src.Events; d != nil {
		st := d.Stats()
		counter(c.evDelivered, st.Delivered)
		counter(c.evRetries, st.Retries)
		for _, reason := range events.DropReasons() {
			counter(c.evDropped, st.Dropped.Count(reason), reason)
		}
		counter(c.evClosed, st.Closed)
		counter(c.evSplits, st.Splits)
		gauge(c.evPending, st.Pending)
		gauge(c.evPendingBytes, st.PendingBytes)
		gauge(c.evReserved, st.Reserved)
		gauge(c.evInFlight, st.InFlight)
	}
}

// WatchCerts registers a collector of the TLS certificates' expiry and
// reloads, per listener, read at every scrape.
func (m *Metrics) WatchCerts(certs ...*tlsreload.Reloader) error {
	return m.reg.Register(&certCollector{
		certs: certs,
		expiry: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "tls", "certificate_expiry_timestamp_seconds"),
			"When the certificate a TLS listener serves expires (its NotAfter), in seconds since the Unix epoch.", []string{"listener"}, nil),
		reloads: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "tls", "certificate_reloads_total"),
			"Certificate reloads after the first load, by result: ok, or failed (the previous certificate stayed in use).", []string{"listener", "result"}, nil),
	})
}

// certCollector turns the Reloaders' Stats into metrics at scrape time.
type certCollector struct {
	certs           []*tlsreload.Reloader
	expiry, reloads *prometheus.Desc
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.reloads
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.certs {
		st := r.Stats()
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(st.NotAfter.Unix()), st.Name)
		ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.Reloads), st.Name, "ok")
		ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.Failures), st.Name, "failed")
	}
}

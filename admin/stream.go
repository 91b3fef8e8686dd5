package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsbridge/wsbridge/sender"
)

// GET /v1/stream: Server-Sent Events for the console's live pages. One
// sampler gathers the metrics once per interval, whatever the number of
// viewers, encodes them once and hands the same bytes to every viewer; it
// runs only while someone watches. Each viewer has a queue of
// StreamBuffer samples: a viewer that stops reading (its queue full at the
// next sample) is dropped and its response ends, and a write that does not
// go through within streamWriteTimeout ends it too. So a stuck viewer holds
// at most StreamBuffer shared samples, and never slows the sampler, the
// other viewers or the bridge.

// Defaults of the stream.
const (
	DefaultStreamInterval = time.Second
	DefaultMaxViewers     = 256
	// StreamBuffer is the samples a viewer may fall behind before it is
	// dropped.
	StreamBuffer       = 4
	streamWriteTimeout = 10 * time.Second
	streamRetryMillis  = 2000 // the browser's EventSource reconnect delay
)

// streamHub fans samples out to the viewers.
type streamHub struct {
	interval time.Duration
	max      int
	sample   func() []byte // one encoded SSE event

	mu      sync.Mutex
	viewers map[*viewer]struct{}
	stop    chan struct{} // closed to stop the sampler; nil while none runs
	closed  bool
	last    []byte // the last sample, for a viewer that arrives

	served  atomic.Uint64 // viewers accepted
	dropped atomic.Uint64 // viewers dropped for not reading
	refused atomic.Uint64 // viewers refused: MaxViewers watch already
}

type viewer struct {
	ch   chan []byte
	gone chan struct{} // closed when the hub drops the viewer or closes
}

// StreamStats are the stream's counters.
type StreamStats struct {
	Viewers int    `json:"viewers"`
	Served  uint64 `json:"served"`
	Dropped uint64 `json:"dropped"`
	Refused uint64 `json:"refused"`
}

func (h *streamHub) stats() StreamStats {
	h.mu.Lock()
	n := len(h.viewers)
	h.mu.Unlock()
	return StreamStats{Viewers: n, Served: h.served.Load(), Dropped: h.dropped.Load(), Refused: h.refused.Load()}
}

// join adds a viewer, starting the sampler for the first; nil when the
// hub is closed or full.
func (h *streamHub) join() (*viewer, []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.viewers) >= h.max {
		h.refused.Add(1)
		return nil, nil
	}
	if h.viewers == nil {
		h.viewers = make(map[*viewer]struct{})
	}
	v := &viewer{ch: make(chan []byte, StreamBuffer), gone: make(chan struct{})}
	h.viewers[v] = struct{}{}
	h.served.Add(1)
	if h.stop == nil {
		h.stop = make(chan struct{})
		go h.run(h.stop)
		h.last = nil // stale: the sampler was not running
	}
	return v, h.last
}

// leave removes a viewer; the last one stops the sampler.
func (h *streamHub) leave(v *viewer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(v)
}

func (h *streamHub) removeLocked(v *viewer) {
	if _, ok := h.viewers[v]; !ok {
		return
	}
	delete(h.viewers, v)
	close(v.gone)
	if len(h.viewers) == 0 && h.stop != nil {
		close(h.stop)
		h.stop = nil
	}
}

// close drops every viewer and refuses new ones (the server shuts down).
func (h *streamHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for v := range h.viewers {
		h.removeLocked(v)
	}
}

// run samples every interval until stop is closed.
func (h *streamHub) run(stop chan struct{}) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		b := h.sample()
		h.mu.Lock()
		if h.stop != stop { // stopped (and maybe restarted) meanwhile
			h.mu.Unlock()
			return
		}
		h.last = b
		for v := range h.viewers {
			select {
			case v.ch <- b:
			default: // it has not read the last StreamBuffer samples
				h.dropped.Add(1)
				h.removeLocked(v)
			}
		}
		h.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// stream serves GET /v1/stream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		fail(w, r, sender.BadRequest("GET /v1/stream takes no query parameters"))
		return
	}
	v, first := s.streams.join()
	if v == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, r, sender.CodeTooManyViewers, fmt.Sprintf("%d stream viewers already, or the server is stopping; retry later", s.streams.max))
		return
	}
	defer s.streams.leave(v)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold the events back
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	hello := []byte("retry: " + strconv.Itoa(streamRetryMillis) + "\n\n")
	if first != nil {
		hello = append(hello, first...)
	}
	if !write(hello) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-v.gone:
			return // dropped, or the server stops
		case b := <-v.ch:
			if !write(b) {
				return
			}
		}
	}
}

// Sample is the data of one "sample" event of GET /v1/stream: the time and
// the bridge's metrics, each series as [name, labels, value]. Histograms
// give their _count and _sum (a mean over any interval is the difference
// of the sums over that of the counts).
type Sample struct {
	Time   int64    `json:"t"` // unix milliseconds
	Series []Series `json:"series"`
}

// Series is one metric series of a Sample.
type Series struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// MarshalJSON writes [name, {labels}, value].
func (x Series) MarshalJSON() ([]byte, error) {
	labels := x.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return json.Marshal([]any{x.Name, labels, x.Value})
}

// sampled are the metric families a Sample carries besides wsbridge_*.
var sampled = []string{"go_goroutines", "process_resident_memory_bytes", "process_start_time_seconds"}

// takeSample gathers g into a Sample.
func takeSample(g prometheus.Gatherer, now time.Time) Sample {
	out := Sample{Time: now.UnixMilli(), Series: []Series{}}
	families, _ := g.Gather() // a failed collector leaves its metrics out; the rest stand
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, Namespace+"_") && !slices.Contains(sampled, name) {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(n string, v float64) {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return // not JSON
				}
				out.Series = append(out.Series, Series{Name: n, Labels: labels, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				add(name+"_count", float64(m.GetHistogram().GetSampleCount()))
				add(name+"_sum", m.GetHistogram().GetSampleSum())
			case dto.MetricType_UNTYPED:
				add(name, m.GetUntyped().GetValue())
			}
		}
	}
	return out
}

// sampleEvent encodes a Sample of g as one SSE event.
func sampleEvent(g prometheus.Gatherer) []byte {
	data, err := json.Marshal(takeSample(g, time.Now()))
	if err != nil {
		data = []byte(`{"t":0,"series":[]}`)
	}
	var b bytes.Buffer
	b.Grow(len(data) + 24)
	b.WriteString("event: sample\ndata: ")
	b.Write(data) // JSON has no raw newline
	b.WriteString("\n\n")
	return b.Bytes()
}

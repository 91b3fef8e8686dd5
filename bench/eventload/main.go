// Command eventload measures event delivery to a PHP application: events
// per second delivered (acknowledged) and the latency a message gains on
// its way from a WebSocket client to the application, with a Go HTTP sink
// and with php -S running the real events handler (php-client), each with
// batching (up to 100 events per request) and without (1 per request).
//
//	go run ./bench/eventload                 # both sinks, 3 s of load per case
//	go run ./bench/eventload -sink go -d 5s
//
// Throughput: -clients WebSocket clients (in this process) send as fast as
// they can for -d; the figure is the events acknowledged divided by the time
// until every event was acknowledged. Latency: one client sends 200
// messages a second for -d; each message carries its send time, and the
// sink computes the delay when the handler sees it (the Go sink: p50/p99;
// the PHP sink: mean and max, from per-batch sums).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
)

const secret = "eventload"

var readMode string // -read-mode

type result struct {
	name       string
	events     uint64
	elapsed    time.Duration
	requests   uint64
	p50, p99   time.Duration
	mean, max  time.Duration
	latencyKnd string
}

func main() {
	dur := flag.Duration("d", 3*time.Second, "duration of the load in each case")
	clients := flag.Int("clients", 20, "WebSocket clients sending at full speed (throughput cases)")
	sinks := flag.String("sink", "go,php", "sinks to measure: go, php")
	flag.StringVar(&readMode, "read-mode", "goroutine", "hub: bridge.Config.ReadMode (goroutine or poll)")
	flag.Parse()

	var results []result
	for _, sink := range strings.Split(*sinks, ",") {
		for _, batch := range []int{1, 100} {
			results = append(results, run(sink, batch, *clients, *dur, false))
			results = append(results, run(sink, batch, 1, *dur, true))
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tevents/s\tevents/request\tlatency\t")
	for _, r := range results {
		lat := "-"
		switch r.latencyKnd {
		case "pct":
			lat = fmt.Sprintf("p50 %s p99 %s", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
		case "mean":
			lat = fmt.Sprintf("mean %s max %s", r.mean.Round(time.Microsecond), r.max.Round(time.Microsecond))
		}
		perReq := 0.0
		if r.requests > 0 {
			perReq = float64(r.events) / float64(r.requests)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t\n", r.name, float64(r.events)/r.elapsed.Seconds(), perReq, lat)
	}
	tw.Flush()
}

// run measures one case: throughput (paced=false) or latency (paced=true).
func run(sink string, batch, clients int, d time.Duration, paced bool) result {
	name := fmt.Sprintf("%s sink, batch %d, ", sink, batch)
	if paced {
		name += "1 client at 200 msg/s"
	} else {
		name += fmt.Sprintf("%d clients at full speed", clients)
	}
	var url string
	var lat *latencies
	var stopSink func() (mean, max time.Duration)
	switch sink {
	case "go":
		url, lat, stopSink = goSink()
	case "php":
		url, stopSink = phpSink()
	default:
		fail(fmt.Errorf("unknown sink %q", sink))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	disp, err := events.New(events.Config{URL: url, Secret: secret, BatchSize: batch, QueuePerFD: 1 << 20, QueueTotal: 1 << 22, QueueBytes: 1 << 30, Overflow: events.OverflowDrop, Logger: quiet})
	fail(err)
	// Clients flood on purpose: no client rate limits.
	hub, err := bridge.New(bridge.Config{Listener: disp, Logger: quiet, ClientMessageRate: bridge.RateUnlimited, ClientByteRate: bridge.RateUnlimited,
		ReadMode: bridge.ReadMode(readMode)})
	fail(err)
	disp.SetCloser(hub)
	srv := hub.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	go srv.Serve(ln)

	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i], _, err = websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/", nil)
		fail(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for i := 0; time.Since(start) < d; i++ {
				if paced {
					<-tick.C
				}
				msg := strconv.FormatInt(time.Now().UnixNano(), 10) + " hello from a client"
				if c.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for disp.Stats().Pending > 0 && time.Since(start) < d+2*time.Minute {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	st := disp.Stats()
	for _, c := range conns {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	hub.Shutdown(ctx)
	disp.Shutdown(ctx)
	mean, max := stopSink()
	r := result{name: name, events: st.Delivered, elapsed: elapsed, requests: st.Requests}
	if st.Dropped != (events.DropStats{}) {
		fmt.Fprintf(os.Stderr, "%s: dropped %+v\n", name, st.Dropped)
	}
	if paced {
		if lat != nil {
			r.latencyKnd, r.p50, r.p99 = "pct", lat.pct(0.50), lat.pct(0.99)
		} else {
			r.latencyKnd, r.mean, r.max = "mean", mean, max
		}
	}
	return r
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	sort.Slice(l.d, func(a, b int) bool { return l.d[a] < l.d[b] })
	return l.d[min(len(l.d)-1, int(float64(len(l.d))*p))]
}

// goSink answers every batch at once and records message latencies.
func goSink() (string, *latencies, func() (time.Duration, time.Duration)) {
	lat := &latencies{}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct {
				Type string `json:"type"`
				Data string `json:"data"`
			} `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		now := time.Now().UnixNano()
		lat.mu.Lock()
		for _, e := range body.Events {
			if e.Type == "message" {
				sent, _ := strconv.ParseInt(strings.Fields(e.Data)[0], 10, 64)
				lat.d = append(lat.d, time.Duration(now-sent))
			}
		}
		lat.mu.Unlock()
		n.Add(int64(len(body.Events)))
		w.WriteHeader(http.StatusNoContent)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/", lat, func() (time.Duration, time.Duration) {
		srv.Close()
		return 0, 0
	}
}

// phpSink runs bench/php/events_sink.php under php -S.
func phpSink() (string, func() (time.Duration, time.Duration)) {
	root := bench.ModuleRoot()
	out, err := os.CreateTemp("", "eventload-*.txt")
	fail(err)
	out.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command("php", "-S", addr, filepath.Join(root, "bench", "php", "events_sink.php"))
	cmd.Env = append(os.Environ(), "EVENTLOAD_OUT="+out.Name(), "WSBRIDGE_EVENTS_SECRET="+secret, "PHP_CLI_SERVER_WORKERS=1")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	fail(cmd.Start())
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			fail(fmt.Errorf("php -S did not start"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + addr + "/", func() (time.Duration, time.Duration) {
		cmd.Process.Kill()
		cmd.Wait()
		f, err := os.Open(out.Name())
		fail(err)
		defer os.Remove(out.Name())
		defer f.Close()
		var msgs, sum, max float64
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var n, s, m float64
			if _, err := fmt.Sscan(sc.Text(), &n, &s, &m); err == nil {
				msgs += n
				sum += s
				max = maxf(max, m)
			}
		}
		if msgs == 0 {
			return 0, 0
		}
		return time.Duration(sum / msgs * 1e3), time.Duration(max * 1e3)
	}
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventload:", err)
		os.Exit(1)
	}
}

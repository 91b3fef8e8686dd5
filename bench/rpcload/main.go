// Command rpcload measures the Sender RPC service against a bare goridge
// server (the same net/rpc + goridge codec, with a method that does
// nothing), in the same run, over a unix socket and TCP:
//
//   - one sequential client and 8 concurrent clients, calls/s and latency
//     percentiles, from Go (rpc.Client, JSON) and, with -php, from PHP
//     (php-client, one process per client);
//   - batches of 100 pushes per call, in messages/s.
//
// Every push goes to a live WebSocket connection (gorilla clients in this
// process that read everything), so the figures include routing, queueing
// and the writes to the clients. Client and server share the machine's
// cores, which is why the targets are ratios to the bare server.
//
//	go run ./bench/rpcload                  # Go clients, 3 s per case
//	go run ./bench/rpcload -php -d 5s       # PHP clients too
//	go run ./bench/rpcload -cpuprofile cpu.prof
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	netrpc "net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
)

// Bare is the baseline: the same codec and net/rpc, a method that does
// nothing with the same arguments.
type Bare struct{}

// Push decodes the arguments and answers true.
func (Bare) Push(in *rpc.PushArgs, out *bool) error { *out = true; return nil }

// PushBatch decodes the arguments and answers one true per message.
func (Bare) PushBatch(in *rpc.PushBatchArgs, out *[]bool) error {
	*out = make([]bool, len(in.Messages))
	for i := range *out {
		(*out)[i] = true
	}
	return nil
}

type result struct {
	name     string
	calls    int
	messages int
	elapsed  time.Duration
	lat      []time.Duration
}

func (r result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }
func (r result) msgRate() float64 {
	return float64(r.messages) / r.elapsed.Seconds()
}
func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

func main() {
	dur := flag.Duration("d", 3*time.Second, "duration of each case")
	conns := flag.Int("conns", 100, "WebSocket connections the pushes go to")
	php := flag.Bool("php", false, "also measure PHP clients (needs php and php-client/vendor)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the wsbridge cases to this file")
	size := flag.Int("size", 64, "bytes of data per push")
	only := flag.String("only", "", "run only the cases whose name contains this")
	flag.Parse()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := bridge.New(bridge.Config{Logger: quiet, QueueSize: 1 << 16, QueueBytes: 1 << 30})
	check(err)
	ws := &http.Server{Handler: hub}
	wsln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go ws.Serve(wsln)
	fds, stopClients := connectClients("ws://"+wsln.Addr().String()+"/", *conns, hub)

	dir, err := os.MkdirTemp("", "rpcload")
	check(err)
	defer os.RemoveAll(dir)

	type server struct {
		name, addr string
		stop       func()
	}
	var servers []server
	for _, network := range []string{"unix", "tcp"} {
		addr := "tcp://127.0.0.1:0"
		if network == "unix" {
			addr = "unix://" + filepath.Join(dir, "bare.sock")
		}
		baddr, bstop := serveBare(addr)
		servers = append(servers, server{"bare " + network, baddr, bstop})
		if network == "unix" {
			addr = "unix://" + filepath.Join(dir, "wsbridge.sock")
		}
		srv, err := rpc.New(hub, rpc.Config{Addr: addr, Logger: quiet})
		check(err)
		check(srv.Listen())
		go srv.Serve()
		servers = append(servers, server{"wsbridge " + network, srv.Addr(), func() { srv.Shutdown(context.Background()) }})
	}

	data := strings.Repeat("x", *size)
	var prof *os.File
	if *cpuprofile != "" {
		prof, err = os.Create(*cpuprofile)
		check(err)
		check(pprof.StartCPUProfile(prof))
	}
	var results []result
	want := func(name string) bool { return strings.Contains(name, *only) }
	for _, s := range servers {
		for _, clients := range []int{1, 8} {
			if name := fmt.Sprintf("%s, go, %d client(s)", s.name, clients); want(name) {
				results = append(results, runGo(name, s.addr, methodOf(s.name), clients, *dur, fds, data, 1))
			}
		}
		if name := fmt.Sprintf("%s, go, batch of 100", s.name); want(name) {
			results = append(results, runGo(name, s.addr, methodOf(s.name), 1, *dur, fds, data, 100))
		}
		for _, clients := range []int{1, 8} {
			if name := fmt.Sprintf("%s, php, %d client(s)", s.name, clients); *php && want(name) {
				results = append(results, runPHP(name, s.addr, methodOf(s.name), clients, *dur, fds, data))
			}
		}
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	report(results)
	var delivered uint64
	for _, w := range hub.Stats().Workers {
		delivered += w.Pushed
	}
	fmt.Printf("\npushes queued to WebSocket clients: %d; GOMAXPROCS %d; %s\n", delivered, runtime.GOMAXPROCS(0), runtime.Version())

	for _, s := range servers {
		s.stop()
	}
	stopClients()
	ws.Close()
	hub.Shutdown(context.Background())
}

func methodOf(server string) string {
	if strings.HasPrefix(server, "bare") {
		return "Bare"
	}
	return rpc.ServiceName
}

func serveBare(addr string) (string, func()) {
	network, address, err := rpc.ParseAddr(addr)
	check(err)
	ln, err := net.Listen(network, address)
	check(err)
	srv := netrpc.NewServer()
	check(srv.RegisterName("Bare", Bare{}))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeCodec(goridge.NewCodec(c))
		}
	}()
	if network == "unix" {
		return "unix://" + address, func() { ln.Close() }
	}
	return "tcp://" + ln.Addr().String(), func() { ln.Close() }
}

// connectClients opens n WebSocket clients that read everything.
func connectClients(url string, n int, hub *bridge.Hub) ([]int64, func()) {
	var clients []*websocket.Conn
	var wg sync.WaitGroup
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		check(err)
		clients = append(clients, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	}
	for hub.Stats().Connections < n {
		time.Sleep(time.Millisecond)
	}
	fds := make([]int64, n)
	for i := range fds {
		fds[i] = int64(i + 1) // node 0 hands out 1, 2, 3, ...
	}
	return fds, func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}
}

func runGo(name, addr, service string, clients int, d time.Duration, fds []int64, data string, batch int) result {
	res := result{name: name}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rpc.Dial(addr, rpc.JSON, time.Second)
			check(err)
			defer c.Close()
			var lat []time.Duration
			calls, i := 0, ci
			for time.Now().Before(deadline) {
				t := time.Now()
				if batch == 1 {
					var ok bool
					check(c.Call(service+".Push", rpc.PushArgs{FD: fds[i%len(fds)], Message: rpc.Message{Data: data}}, &ok))
					if !ok {
						panic("push not delivered")
					}
					i++
				} else {
					msgs := make([]rpc.PushArgs, batch)
					for j := range msgs {
						msgs[j] = rpc.PushArgs{FD: fds[i%len(fds)], Message: rpc.Message{Data: data}}
						i++
					}
					var oks []bool
					check(c.Call(service+".PushBatch", rpc.PushBatchArgs{Messages: msgs}, &oks))
					if slices.Contains(oks, false) {
						panic("batch push not delivered")
					}
				}
				lat = append(lat, time.Since(t))
				calls++
			}
			mu.Lock()
			res.calls += calls
			res.messages += calls * batch
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	sort.Slice(res.lat, func(a, b int) bool { return res.lat[a] < res.lat[b] })
	return res
}

// runPHP runs clients PHP processes of bench/php/push.php at once.
func runPHP(name, addr, service string, clients int, d time.Duration, fds []int64, data string) result {
	res := result{name: name}
	script := filepath.Join(moduleRoot(), "bench", "php", "push.php")
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("php", script, addr, service, fmt.Sprint(d.Seconds()), fmt.Sprint(ci+1), fmt.Sprint(len(fds)), data)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			check(cmd.Run())
			var r struct {
				Calls int       `json:"calls"`
				Lat   []float64 `json:"latencies_us"`
			}
			check(json.Unmarshal(out.Bytes(), &r))
			mu.Lock()
			res.calls += r.Calls
			res.messages += r.Calls
			for _, l := range r.Lat {
				res.lat = append(res.lat, time.Duration(l*float64(time.Microsecond)))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	sort.Slice(res.lat, func(a, b int) bool { return res.lat[a] < res.lat[b] })
	return res
}

func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

func report(results []result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tcalls/s\tmessages/s\tp50\tp99\tvs bare\t")
	bare := map[string]float64{}
	for _, r := range results {
		key := strings.TrimPrefix(strings.TrimPrefix(r.name, "bare "), "wsbridge ")
		ratio := ""
		if strings.HasPrefix(r.name, "bare") {
			bare[key] = r.msgRate()
		} else if b := bare[key]; b > 0 {
			ratio = fmt.Sprintf("%.2f", r.msgRate()/b)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t\n", r.name, r.rate(), r.msgRate(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), ratio)
	}
	tw.Flush()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "rpcload:", err)
		os.Exit(1)
	}
}

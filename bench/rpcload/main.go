// Command rpcload measures the Sender RPC service against a bare goridge
// server (the same net/rpc + goridge codec, with a method that does
// nothing), in the same run, over a unix socket and TCP:
//
//   - one sequential client and 8 concurrent clients, calls/s and latency
//     percentiles, from Go (rpc.Client, JSON) and, with -php, from PHP
//     (php-client, one process per client) and, with -go-proc, from Go
//     clients in processes of their own;
//   - batches of 100 pushes per call, in messages/s, from Go and, with
//     -php, from PHP.
//
// Every push goes to a live WebSocket connection (gorilla clients in this
// process that read everything), so the figures include routing, queueing
// and the writes to the clients. Client and server share the machine's
// cores, which is why the targets are ratios to the bare server.
//
//	go run ./bench/rpcload                  # Go clients, 3 s per case
//	go run ./bench/rpcload -php -d 5s       # PHP clients too
//	go run ./bench/rpcload -only php -php-parts  # where a PHP call's time goes
//	go run ./bench/rpcload -cpuprofile cpu.prof -only 'wsbridge unix, go, 1'
//	go run ./bench/rpcload -server-procs -go-proc -php -only ', 1 client'  # servers in processes of their own
//
// By default the servers run in this process, next to the hub and the
// WebSocket clients. With -server-procs each is a process of its own: the
// wsbridge binary (built from this module unless -wsbridge is given, one
// per transport, with its own WebSocket clients, which stay in this
// process) and the bare server (this binary, re-executed with -bare-proc);
// their CPU time is read from /proc and counted in cpu/msg.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// Bare is the baseline: the same codec and net/rpc, a method that does
// nothing with the same arguments.
type Bare struct{}

// Push decodes the arguments and answers true.
func (Bare) Push(in *sender.PushArgs, out *bool) error { *out = true; return nil }

// PushBatch decodes the arguments and answers one true per message.
func (Bare) PushBatch(in *sender.PushBatchArgs, out *[]bool) error {
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
	cpu      time.Duration // CPU time of this process and its PHP children during the case
	other    time.Duration // CPU time of every other process on the machine meanwhile
}

// cpuPerMsg is the CPU time the case cost per message: servers, hub,
// WebSocket clients, RPC clients (Go or PHP) and the kernel's work charged
// to them (softirq work the kernel charges to no process is not in it).
func (r result) cpuPerMsg() time.Duration {
	if r.messages == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.messages)
}

// measuredWith runs one case and adds its CPU accounting: what this
// process, its reaped children (getrusage) and the server processes pids
// (from /proc) used, and what every other process on the machine used
// meanwhile (from /proc), so that a case disturbed by other jobs shows.
func measuredWith(pids []int, run func() result) result {
	other0, own0, srv0 := otherCPU(), ownCPU(), procsCPU(pids)
	r := run()
	r.cpu, r.other = ownCPU()-own0+procsCPU(pids)-srv0, max(0, otherCPU()-other0)
	return r
}

// procsCPU sums the user and system time of the processes pids (their own,
// from /proc/PID/stat).
func procsCPU(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		end := bytes.LastIndexByte(b, ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(string(b[end+1:])) // state ppid ... utime(11) stime(12)
		if len(f) < 13 {
			continue
		}
		for _, i := range []int{11, 12} {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// ownCPU is the user and system time of this process and of its children
// that have been waited for.
func ownCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// otherCPU sums the user and system time, their own and their reaped
// children's, of every process but this one and its descendants, from
// /proc/PID/stat (0 where there is no /proc). A process that ends during a
// case moves into its parent's children's time, so the difference of two
// sums is what the others used in between. ksoftirqd is left out: it runs
// the kernel's deferred network work, mostly this run's own.
func otherCPU() time.Duration {
	type proc struct {
		ppid  int
		ticks int64
		skip  bool
	}
	procs := map[int]proc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:])) // state ppid ... utime(12) stime cutime cstime
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for _, i := range []int{11, 12, 13, 14} {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += n
		}
		procs[pid] = proc{ppid: ppid, ticks: ticks, skip: strings.HasPrefix(string(b[open+1:end]), "ksoftirqd")}
	}
	self := os.Getpid()
	mine := func(pid int) bool {
		for i := 0; pid > 1 && i < 64; i++ {
			if pid == self {
				return true
			}
			pid = procs[pid].ppid
		}
		return false
	}
	var ticks int64
	for pid, p := range procs {
		if !p.skip && !mine(pid) {
			ticks += p.ticks
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
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
	if len(os.Args) > 1 && os.Args[1] == "-client-proc" {
		clientProc(os.Args[2:])
		return
	}
	if len(os.Args) > 2 && os.Args[1] == "-bare-proc" {
		bareProc(os.Args[2])
		return
	}
	dur := flag.Duration("d", 3*time.Second, "duration of each case")
	conns := flag.Int("conns", 100, "WebSocket connections the pushes go to")
	php := flag.Bool("php", false, "also measure PHP clients (needs php and php-client/vendor)")
	batchClients := flag.Int("batch-clients", 1, "Go clients sending batches of 100 at once")
	goProc := flag.Bool("go-proc", false, "also measure Go clients in processes of their own, as PHP's are (this binary, re-executed)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the wsbridge cases to this file")
	size := flag.Int("size", 64, "bytes of data per push")
	only := flag.String("only", "", "run only the cases whose name contains this")
	phpParts := flag.Bool("php-parts", false, "also time the parts of a PHP client's call against the bare servers (bench/php/parts.php)")
	readEvery := flag.Duration("read-every", 10*time.Millisecond, "WebSocket clients read in bulk, sleeping this long after each read; 0: they parse every frame as it arrives")
	serverProcs := flag.Bool("server-procs", false, "run each server as a process of its own: the wsbridge binary (one per transport) and the bare goridge server (this binary, re-executed)")
	wsbridgeBin := flag.String("wsbridge", "", "the wsbridge binary of -server-procs (default: go build ./cmd/wsbridge)")
	flag.Parse()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	frameLen := int64(2 + *size) // a server frame's header is 2 bytes up to 125 bytes of payload
	if *size > 125 {
		frameLen += 2
	}
	if *size > 65535 {
		frameLen += 6
	}
	dir, err := os.MkdirTemp("", "rpcload")
	check(err)
	defer os.RemoveAll(dir)

	var (
		servers     []server
		pushed      func() uint64 // messages the hubs queued for their clients
		received    func() int64  // messages the WebSocket clients received
		stopClients func()
		stopHubs    func()
	)
	if *serverProcs {
		servers, pushed, received, stopClients, stopHubs = startServerProcs(dir, *wsbridgeBin, *conns, *readEvery, frameLen)
	} else {
		// Keepalive pings are off (one an hour): the bulk-reading clients parse
		// no frames, so they would not answer them, and the byte count of what
		// they receive would include them.
		hub, err := bridge.New(bridge.Config{Logger: quiet, QueueSize: 1 << 16, QueueBytes: 1 << 30, PingInterval: time.Hour,
			Sequence: &bridge.CounterSequence{}}) // fds 1, 2, 3, ...: the client processes push to 1..n
		check(err)
		ws := &http.Server{Handler: hub}
		wsln, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		go ws.Serve(wsln)
		fds, stop, recv := connectClients("ws://"+wsln.Addr().String()+"/", *conns, func() int { return hub.Stats().Connections }, *readEvery, frameLen)
		stopClients, received = stop, recv
		pushed = func() uint64 {
			var n uint64
			for _, w := range hub.Stats().Workers {
				n += w.Pushed
			}
			return n
		}
		stopHubs = func() { ws.Close(); hub.Shutdown(context.Background()) }
		for _, network := range []string{"unix", "tcp"} {
			addr := "tcp://127.0.0.1:0"
			if network == "unix" {
				addr = "unix://" + filepath.Join(dir, "bare.sock")
			}
			baddr, bstop := serveBare(addr)
			servers = append(servers, server{name: "bare " + network, addr: baddr, stop: bstop, fds: fds})
			if network == "unix" {
				addr = "unix://" + filepath.Join(dir, "wsbridge.sock")
			}
			srv, err := rpc.New(sender.NewService(hub), rpc.Config{Addr: addr, Logger: quiet})
			check(err)
			check(srv.Listen())
			go srv.Serve()
			servers = append(servers, server{name: "wsbridge " + network, addr: srv.Addr(), stop: func() { srv.Shutdown(context.Background()) }, fds: fds})
		}
	}
	var serverPids []int
	for _, s := range servers {
		if s.pid != 0 {
			serverPids = append(serverPids, s.pid)
		}
	}
	measured := func(run func() result) result { return measuredWith(serverPids, run) }

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
				results = append(results, measured(func() result { return runGo(name, s.addr, methodOf(s.name), clients, *dur, s.fds, data, 1) }))
			}
		}
		batchName := fmt.Sprintf("%s, go, batch of 100", s.name)
		if *batchClients > 1 {
			batchName += fmt.Sprintf(", %d clients", *batchClients)
		}
		if name := batchName; want(name) {
			results = append(results, measured(func() result {
				return runGo(name, s.addr, methodOf(s.name), *batchClients, *dur, s.fds, data, 100)
			}))
		}
		for _, clients := range []int{1, 8} {
			if name := fmt.Sprintf("%s, php, %d client(s)", s.name, clients); *php && want(name) {
				results = append(results, measured(func() result { return runPHP(name, s.addr, methodOf(s.name), clients, *dur, s.fds, data, 1) }))
			}
		}
		if name := fmt.Sprintf("%s, php, batch of 100", s.name); *php && want(name) {
			results = append(results, measured(func() result { return runPHP(name, s.addr, methodOf(s.name), 1, *dur, s.fds, data, 100) }))
		}
		for _, clients := range []int{1, 8} {
			if name := fmt.Sprintf("%s, go-proc, %d client(s)", s.name, clients); *goProc && want(name) {
				results = append(results, measured(func() result { return runGoProc(name, s.addr, methodOf(s.name), clients, *dur, s.fds, data) }))
			}
		}
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	report(results)
	if *phpParts {
		for _, s := range servers {
			if strings.HasPrefix(s.name, "bare") {
				fmt.Println()
				cmd := exec.Command("php", filepath.Join(bench.ModuleRoot(), "bench", "php", "parts.php"), s.addr, "Bare.Push", "3", data)
				cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
				check(cmd.Run())
			}
		}
	}
	delivered := pushed()
	// Every push the hub accepted must reach its client.
	for wait := time.Now(); received() < int64(delivered) && time.Since(wait) < 10*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("\npushes queued to WebSocket clients: %d, received by them: %d; GOMAXPROCS %d; %s\n", delivered, received(), runtime.GOMAXPROCS(0), runtime.Version())
	if received() != int64(delivered) {
		check(fmt.Errorf("%d pushes were queued but %d reached the clients", delivered, received()))
	}

	for _, s := range servers {
		s.stop()
	}
	stopClients()
	stopHubs()
}

// server is one RPC server of the run: its name ("bare unix", "wsbridge
// tcp"), address, the fds its pushes go to, and its pid when it is a
// process of its own.
type server struct {
	name, addr string
	stop       func()
	fds        []int64
	pid        int
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

// connectClients opens n WebSocket clients that read everything. With
// readEvery > 0 a client reads the raw bytes in bulk: after each read it
// sleeps readEvery, so one read system call takes whatever arrived
// meanwhile. Real clients sit on other machines and cost the bridge's
// machine nothing; bulk reads keep the in-process clients' share of the two
// cores small. With readEvery 0 each client parses every frame as it
// arrives (gorilla's NextReader): a wake-up and a read per message.
func connectClients(url string, n int, count func() int, readEvery time.Duration, frameLen int64) ([]int64, func(), func() int64) {
	var bytesIn, messagesIn atomic.Int64
	var clients []*websocket.Conn
	var wg sync.WaitGroup
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		check(err)
		clients = append(clients, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if readEvery > 0 {
				drain(c.NetConn(), readEvery, &bytesIn)
				return
			}
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
				messagesIn.Add(1)
			}
		}()
	}
	for count() < n {
		time.Sleep(time.Millisecond)
	}
	fds := make([]int64, n)
	for i := range fds {
		fds[i] = int64(i + 1) // node 0 hands out 1, 2, 3, ...
	}
	stop := func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}
	received := func() int64 { return messagesIn.Load() + bytesIn.Load()/frameLen }
	return fds, stop, received
}

// drain reads and discards what arrives on conn, in bulk, until it is
// closed. The hub sends nothing on its own after the handshake, so
// gorilla's read buffer holds nothing that the raw reads would miss.
func drain(conn net.Conn, every time.Duration, total *atomic.Int64) {
	buf := make([]byte, 256<<10)
	for {
		n, err := conn.Read(buf)
		total.Add(int64(n))
		if err != nil {
			return
		}
		if n < len(buf) {
			time.Sleep(every)
		}
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
					check(c.Call(service+".Push", sender.PushArgs{FD: fds[i%len(fds)], Message: sender.Message{Data: data}}, &ok))
					if !ok {
						panic("push not delivered")
					}
					i++
				} else {
					msgs := make([]sender.PushArgs, batch)
					for j := range msgs {
						msgs[j] = sender.PushArgs{FD: fds[i%len(fds)], Message: sender.Message{Data: data}}
						i++
					}
					var oks []bool
					check(c.Call(service+".PushBatch", sender.PushBatchArgs{Messages: msgs}, &oks))
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

// runPHP runs clients PHP processes of bench/php/push.php at once, each
// pushing batch messages per call.
func runPHP(name, addr, service string, clients int, d time.Duration, fds []int64, data string, batch int) result {
	script := filepath.Join(bench.ModuleRoot(), "bench", "php", "push.php")
	return runProcs(name, clients, func(ci int) *exec.Cmd {
		return exec.Command("php", script, addr, service, fmt.Sprint(d.Seconds()), fmt.Sprint(ci%len(fds)+1), fmt.Sprint(len(fds)), data, fmt.Sprint(batch), joinFDs(fds))
	})
}

// runGoProc runs clients processes of this binary in -client-proc mode at
// once, with GOMAXPROCS 1: the Go client out of process, as PHP's is.
func runGoProc(name, addr, service string, clients int, d time.Duration, fds []int64, data string) result {
	self, err := os.Executable()
	check(err)
	return runProcs(name, clients, func(ci int) *exec.Cmd {
		cmd := exec.Command(self, "-client-proc", addr, service, fmt.Sprint(d.Seconds()), fmt.Sprint(ci%len(fds)+1), fmt.Sprint(len(fds)), data, joinFDs(fds))
		// One thread running Go code, as a PHP process has: with more, the
		// client processes' idle threads spin looking for work and take
		// CPU time from the server.
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		return cmd
	})
}

// runProcs runs client processes at once; each prints
// {"calls": n, "messages": m, "latencies_us": [...]} (messages: n when absent).
func runProcs(name string, clients int, command func(ci int) *exec.Cmd) result {
	res := result{name: name}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := command(ci)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			check(cmd.Run())
			var r struct {
				Calls    int       `json:"calls"`
				Messages int       `json:"messages"`
				Lat      []float64 `json:"latencies_us"`
			}
			check(json.Unmarshal(out.Bytes(), &r))
			mu.Lock()
			res.calls += r.Calls
			res.messages += max(r.Messages, r.Calls)
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

// clientProc is one Go client process, the twin of bench/php/push.php:
// rpcload -client-proc ADDRESS SERVICE SECONDS FIRST FD_COUNT DATA FDS
// pushes to the FIRST-th fd of FDS (comma-separated, FD_COUNT of them,
// 1-based), then to the next ones in turn.
func clientProc(args []string) {
	if len(args) != 7 {
		check(fmt.Errorf("-client-proc: want ADDRESS SERVICE SECONDS FIRST FD_COUNT DATA FDS, got %q", args))
	}
	var list []int64
	for f := range strings.SplitSeq(args[6], ",") {
		fd, err := strconv.ParseInt(f, 10, 64)
		check(err)
		list = append(list, fd)
	}
	addr, service, data := args[0], args[1], args[5]
	secs, err := strconv.ParseFloat(args[2], 64)
	check(err)
	fd, err := strconv.ParseInt(args[3], 10, 64)
	check(err)
	count, err := strconv.ParseInt(args[4], 10, 64)
	check(err)
	c, err := rpc.Dial(addr, rpc.JSON, time.Second)
	check(err)
	defer c.Close()
	var lat []float64
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for t := time.Now(); t.Before(end); t = time.Now() {
		var ok bool
		check(c.Call(service+".Push", sender.PushArgs{FD: list[fd-1], Message: sender.Message{Data: data}}, &ok))
		if !ok {
			check(fmt.Errorf("push to fd %d not delivered", list[fd-1]))
		}
		lat = append(lat, float64(time.Since(t))/float64(time.Microsecond))
		fd = fd%count + 1
	}
	out, err := json.Marshal(map[string]any{"calls": len(lat), "latencies_us": lat})
	check(err)
	os.Stdout.Write(out)
}

// joinFDs is fds comma-separated, for the client processes.
func joinFDs(fds []int64) string {
	parts := make([]string, len(fds))
	for i, fd := range fds {
		parts[i] = strconv.FormatInt(fd, 10)
	}
	return strings.Join(parts, ",")
}

func report(results []result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tcalls/s\tmessages/s\tp50\tp99\tvs bare\tcpu/msg\tother cpu\t")
	bare := map[string]float64{}
	for _, r := range results {
		key := strings.TrimPrefix(strings.TrimPrefix(r.name, "bare "), "wsbridge ")
		ratio := ""
		if strings.HasPrefix(r.name, "bare") {
			bare[key] = r.msgRate()
		} else if b := bare[key]; b > 0 {
			ratio = fmt.Sprintf("%.2f", r.msgRate()/b)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%.1fµs\t%.0f%%\t\n", r.name, r.rate(), r.msgRate(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), ratio,
			float64(r.cpuPerMsg())/float64(time.Microsecond), 100*r.other.Seconds()/r.elapsed.Seconds())
	}
	tw.Flush()
	fmt.Println("\ncpu/msg: CPU time of this process (servers, hub, WebSocket clients, Go clients) and its client processes (PHP, -go-proc) per message.")
	fmt.Println("other cpu: CPU time other processes used during the case (from /proc), in % of one core; above ~10% the case was disturbed.")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "rpcload:", err)
		os.Exit(1)
	}
}

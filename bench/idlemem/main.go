// Command idlemem measures the memory an idle WebSocket connection costs the
// bridge, over real loopback TCP.
//
// The process runs a bridge.Hub behind an http.Server on 127.0.0.1, measures
// its memory (Go heap and stacks from runtime.MemStats after GC, VmRSS from
// /proc/self/status), then starts client processes (this same binary, run with
// -client as its first argument) that open the connections from several
// 127.0.0.x source addresses and keep them idle. Once the hub holds all of
// them it measures again and prints the difference per connection. Then it
// shuts the hub down (close 1001 to every client) and checks that every
// client saw that close.
//
// Each process stays below the 20,000 open files a process may hold on the
// bench machines: the hub holds one socket per connection, and the clients
// are spread over enough processes that none holds more than 15,000.
//
// Usage:
//
//	go run ./bench/idlemem -n 10000
//	go run ./bench/idlemem -n 10000 -read-buffer-size 1024
//	go run ./bench/idlemem -n 10000 -memprofile heap.pprof && go tool pprof -top heap.pprof
//
// See docs/BENCHMARKS.md for the figures.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wsbridge/wsbridge/bridge"

	"github.com/wsbridge/wsbridge/bench"
)

// Limits that keep every process below the open-file cap (20,000).
const (
	maxPerClient = 15000 // sockets per client process
	fdReserve    = 64    // the hub process's other files: listener, pipes, stdio
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-client" {
		os.Exit(clientMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags of the measuring (hub) process.
type options struct {
	n           int
	clients     int
	src         string
	concurrency int
	readBuf     int
	compression bool
	workers     int
	ping        time.Duration
	hold        time.Duration
	timeout     time.Duration
	memprofile  string
	profileRate int
	browser     bool
	burst       int
	readMode    string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("idlemem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 1000, "idle connections to open")
	fs.IntVar(&o.clients, "clients", 0, fmt.Sprintf("client processes (0: at least 2, and enough that none holds more than %d sockets)", maxPerClient))
	fs.StringVar(&o.src, "src", "127.0.0.2-127.0.0.9", "client source addresses: a comma-separated list of addresses and first-last ranges")
	fs.IntVar(&o.concurrency, "dial-concurrency", 32, "handshakes in flight per client process")
	fs.IntVar(&o.readBuf, "read-buffer-size", 0, "hub: bridge.Config.ReadBufferSize (0: the bridge's default, 1 KiB)")
	fs.BoolVar(&o.compression, "compression", false, "hub: negotiate permessage-deflate (the clients offer it)")
	fs.IntVar(&o.workers, "workers", 0, "hub: bridge.Config.Workers (0: the number of CPUs)")
	fs.StringVar(&o.readMode, "read-mode", "goroutine", "hub: bridge.Config.ReadMode (goroutine, or poll: no reader goroutine while idle)")
	fs.DurationVar(&o.ping, "ping-interval", bridge.DefaultPingInterval, "hub: bridge.Config.PingInterval")
	fs.DurationVar(&o.hold, "hold", 0, "keep the connections idle this long before measuring (longer than -ping-interval: measure after keepalive pings)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up when the connections are not all open after this long")
	fs.BoolVar(&o.browser, "browser-headers", false, "clients send the handshake headers of a browser (User-Agent, Origin, Accept-Language, a cookie...), not gorilla's minimal set")
	fs.IntVar(&o.burst, "burst", 0, "before measuring, broadcast this many 32-byte messages at once and wait until every client has them (memory after activity)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile of the hub process, taken with the connections open, to this file")
	fs.IntVar(&o.profileRate, "memprofilerate", 1, "runtime.MemProfileRate while -memprofile is set (1: every allocation)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.n < 1 {
		return o, fmt.Errorf("-n %d: must be at least 1", o.n)
	}
	if o.clients == 0 {
		o.clients = max(2, (o.n+maxPerClient-1)/maxPerClient)
	}
	o.clients = min(o.clients, o.n)
	if o.clients < 1 || (o.n+o.clients-1)/o.clients > maxPerClient {
		return o, fmt.Errorf("-clients %d: each client process would hold more than %d sockets", o.clients, maxPerClient)
	}
	if o.burst < 0 || o.burst > bridge.DefaultQueueSize {
		return o, fmt.Errorf("-burst %d: must be in 0..%d (the send queue's bound)", o.burst, bridge.DefaultQueueSize)
	}
	if o.concurrency < 1 {
		return o, fmt.Errorf("-dial-concurrency %d: must be at least 1", o.concurrency)
	}
	if _, err := bench.ParseLoopbackAddrs(o.src); err != nil {
		return o, err
	}
	return o, nil
}

// sample is one reading of the hub process's memory.
type sample struct {
	heapInuse, stackInuse, heapAlloc, heapObjects uint64
	rss, rssScavenged                             uint64
	goroutines                                    int
}

// measure collects garbage until the heap and the stacks stop shrinking (a
// GC halves an idle goroutine's stack at most once, so it takes a few), then
// reads MemStats and VmRSS, and VmRSS again after debug.FreeOSMemory has
// returned the free pages to the OS.
func measure() (sample, error) {
	var ms runtime.MemStats
	prev := uint64(math.MaxUint64)
	for range 10 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if total := ms.HeapInuse + ms.StackInuse; total < prev {
			prev = total
			continue
		}
		break
	}
	runtime.ReadMemStats(&ms)
	s := sample{
		heapInuse: ms.HeapInuse, stackInuse: ms.StackInuse, heapAlloc: ms.HeapAlloc,
		heapObjects: ms.HeapObjects, goroutines: runtime.NumGoroutine(),
	}
	var err error
	if s.rss, _, err = bench.ReadStatus(0); err != nil {
		return s, err
	}
	debug.FreeOSMemory()
	s.rssScavenged, _, err = bench.ReadStatus(0)
	return s, err
}

// run is the hub process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr} // the hub's log and the client processes share it
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "idlemem: %v\n", err)
		return 2
	}
	if err := measureIdle(o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "idlemem: %v\n", err)
		return 1
	}
	return 0
}

func measureIdle(o options, stdout, stderr io.Writer) (err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && uint64(o.n+fdReserve) > rl.Cur {
		return fmt.Errorf("-n %d: this process may open %d files; the hub needs one per connection plus %d", o.n, rl.Cur, fdReserve)
	}
	if o.memprofile != "" {
		runtime.MemProfileRate = o.profileRate
	}
	hub, err := bridge.New(bridge.Config{
		Sequence:       &bridge.CounterSequence{}, // fds 1..n, checked below
		MaxConnections: o.n,
		ReadBufferSize: o.readBuf,
		Compression:    o.compression,
		Workers:        o.workers,
		PingInterval:   o.ping,
		ReadMode:       bridge.ReadMode(o.readMode),
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = hub.Shutdown(context.Background())
		return err
	}
	srv := &http.Server{Handler: hub, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = fmt.Errorf("serve: %w", serr)
		}
	}()
	hubDown := false
	defer func() {
		if !hubDown {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = hub.Shutdown(ctx)
			cancel()
		}
	}()

	// Start the client processes, then take the baseline (with the
	// goroutines that talk to them), then let them connect.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	url := "ws://" + ln.Addr().String() + "/"
	var children []*child
	defer func() {
		for _, c := range children {
			c.kill()
		}
	}()
	for k := range o.clients {
		share := o.n / o.clients
		if k < o.n%o.clients {
			share++
		}
		c, err := startChild(self, k, share, url, o, stderr)
		if err != nil {
			return fmt.Errorf("client process %d: %w", k, err)
		}
		children = append(children, c)
	}
	base, err := measure()
	if err != nil {
		return err
	}
	start := time.Now()
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			return fmt.Errorf("client process %d: %w", c.id, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	for _, c := range children {
		if err := c.waitReady(ctx); err != nil {
			return err
		}
	}
	for hub.Stats().Connections != o.n {
		if ctx.Err() != nil {
			return fmt.Errorf("the clients are connected but the hub holds %d connections, want %d", hub.Stats().Connections, o.n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	connected := time.Since(start)
	for fd := int64(1); fd <= int64(o.n); fd++ {
		if !hub.Check(fd) {
			return fmt.Errorf("fd %d is not open", fd)
		}
	}
	if o.burst > 0 {
		msg := []byte(strings.Repeat("x", 32))
		for range o.burst {
			if k, err := hub.Broadcast(msg, bridge.OpText, nil); err != nil || k != o.n {
				return fmt.Errorf("broadcast reached %d of %d connections: %v", k, o.n, err)
			}
		}
		for _, c := range children {
			if err := c.waitLine(ctx, "received "); err != nil {
				return err
			}
		}
	}
	if o.hold > 0 {
		time.Sleep(o.hold)
		if c := hub.Stats().Connections; c != o.n {
			return fmt.Errorf("after holding for %s the hub holds %d connections, want %d", o.hold, c, o.n)
		}
	}

	loaded, err := measure()
	if err != nil {
		return err
	}
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	report(stdout, o, hub.Config(), connected, base, loaded)

	// Shut down: every client must see close 1001 from the hub.
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	t := time.Now()
	err = hub.Shutdown(sctx)
	hubDown = true
	if err != nil {
		return fmt.Errorf("hub shutdown: %w", err)
	}
	took := time.Since(t)
	going, other := 0, 0
	for _, c := range children {
		g, o, err := c.finish()
		if err != nil {
			return err
		}
		going, other = going+g, other+o
	}
	children = nil
	fmt.Fprintf(stdout, "\nshutdown: %s; the clients saw close 1001 on %d connections, another end on %d\n", took.Round(time.Millisecond), going, other)
	if going != o.n {
		return fmt.Errorf("%d of %d connections did not get close 1001", o.n-going, o.n)
	}
	return nil
}

func writeHeapProfile(path string) error {
	runtime.GC() // the heap profile is as of the last GC
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func report(w io.Writer, o options, cfg bridge.Config, connected time.Duration, base, loaded sample) {
	n := float64(o.n)
	readBuf := "reuses the HTTP server's 4096-byte buffer"
	if cfg.ReadBufferSize > 0 {
		readBuf = strconv.Itoa(cfg.ReadBufferSize) + " bytes"
	}
	headers := "gorilla's minimal handshake headers"
	if o.browser {
		headers = "browser-like handshake headers"
	}
	fmt.Fprintf(w, "idle connections: %d over loopback TCP from %s, %d client processes, %s, open after %s\n",
		o.n, o.src, o.clients, headers, connected.Round(time.Millisecond))
	fmt.Fprintf(w, "hub: read buffer %s, compression %v, %d workers, ping interval %s; %s, GOMAXPROCS %d\n",
		readBuf, cfg.Compression, cfg.Workers, cfg.PingInterval, runtime.Version(), runtime.GOMAXPROCS(0))
	if o.burst > 0 {
		fmt.Fprintf(w, "measured after a burst of %d broadcasts (32 bytes) that every client received\n", o.burst)
	}
	if o.hold > 0 {
		fmt.Fprintf(w, "measured after holding the connections idle for %s\n", o.hold)
	}
	if o.memprofile != "" {
		fmt.Fprintf(w, "heap profile (MemProfileRate %d) in %s; profiling costs memory itself, so take the figures from a run without -memprofile\n", o.profileRate, o.memprofile)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tbefore\twith conns\tdelta\tper conn\t")
	row := func(name string, b, l uint64) {
		d := float64(l) - float64(b)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f KiB\t\n", name, mib(float64(b)), mib(float64(l)), mib(d), d/n/1024)
	}
	row("Go heap (HeapInuse)", base.heapInuse, loaded.heapInuse)
	row("Go stacks (StackInuse)", base.stackInuse, loaded.stackInuse)
	row("Go heap+stacks", base.heapInuse+base.stackInuse, loaded.heapInuse+loaded.stackInuse)
	row("live heap (HeapAlloc)", base.heapAlloc, loaded.heapAlloc)
	row("RSS (VmRSS)", base.rss, loaded.rss)
	row("RSS after FreeOSMemory", base.rssScavenged, loaded.rssScavenged)
	fmt.Fprintf(tw, "heap objects\t%d\t%d\t%d\t%.1f\t\n", base.heapObjects, loaded.heapObjects,
		int64(loaded.heapObjects)-int64(base.heapObjects), (float64(loaded.heapObjects)-float64(base.heapObjects))/n)
	fmt.Fprintf(tw, "goroutines\t%d\t%d\t%d\t%.2f\t\n", base.goroutines, loaded.goroutines,
		loaded.goroutines-base.goroutines, float64(loaded.goroutines-base.goroutines)/n)
	_ = tw.Flush()
	per := (float64(loaded.heapInuse+loaded.stackInuse) - float64(base.heapInuse+base.stackInuse)) / n / 1024
	verdict := "met"
	if per > 10 {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "\ntarget: at most 10 KiB of Go memory (heap+stacks) per idle connection: %.2f KiB, %s\n", per, verdict)
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// child is one client process.
type child struct {
	id    int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at EOF
	done  chan struct{}
	once  sync.Once
}

func startChild(self string, id, n int, url string, o options, stderr io.Writer) (*child, error) {
	cmd := exec.Command(self, "-client",
		"-id", strconv.Itoa(id), "-n", strconv.Itoa(n), "-url", url, "-src", o.src,
		"-concurrency", strconv.Itoa(o.concurrency), "-compression="+strconv.FormatBool(o.compression),
		"-browser-headers="+strconv.FormatBool(o.browser), "-expect", strconv.Itoa(o.burst))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{id: id, cmd: cmd, stdin: stdin, lines: make(chan string, 4), done: make(chan struct{})}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c, nil
}

// waitReady waits for the child's "ready" line.
func (c *child) waitReady(ctx context.Context) error { return c.waitLine(ctx, "ready ") }

// waitLine waits for the child's next line, which must start with prefix.
func (c *child) waitLine(ctx context.Context, prefix string) error {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("client process %d exited while the hub waited for %q: %v", c.id, prefix, c.cmd.Wait())
		}
		if !strings.HasPrefix(line, prefix) {
			return fmt.Errorf("client process %d: unexpected line %q", c.id, line)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client process %d: no %q line in time", c.id, prefix)
	}
}

// finish waits for the child's report of how its connections ended
// ("closed <by 1001> <other>") and for it to exit.
func (c *child) finish() (going, other int, err error) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			return 0, 0, fmt.Errorf("client process %d exited without a report: %v", c.id, c.cmd.Wait())
		}
		if _, err := fmt.Sscanf(line, "closed %d %d", &going, &other); err != nil {
			return 0, 0, fmt.Errorf("client process %d: unexpected line %q", c.id, line)
		}
	case <-t.C:
		c.kill()
		return 0, 0, fmt.Errorf("client process %d: its connections did not end after the hub shut down", c.id)
	}
	_ = c.stdin.Close()
	for range c.lines { // let the reader goroutine finish
	}
	if err := c.cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("client process %d: %w", c.id, err)
	}
	return going, other, nil
}

// kill ends the child at once (on an error path).
func (c *child) kill() {
	c.once.Do(func() {
		_ = c.stdin.Close()
		_ = c.cmd.Process.Kill()
		for range c.lines {
		}
		_ = c.cmd.Wait()
	})
}

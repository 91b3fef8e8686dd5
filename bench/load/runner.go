package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wsbridge/wsbridge/bench"
)

// results is what a run writes to results.json.
type results struct {
	Started     time.Time       `json:"started"`
	Finished    time.Time       `json:"finished"`
	Machine     map[string]any  `json:"machine"`
	Conns       int             `json:"conns"` // all nodes'
	Nodes       int             `json:"nodes"`
	Payload     int             `json:"payload_bytes"`
	ClientProcs int             `json:"client_procs"`
	Targets     []*targetResult `json:"targets"`
}

type targetResult struct {
	Name        string        `json:"name"`
	Error       string        `json:"error,omitempty"`
	Conns       int           `json:"conns"` // all nodes'
	ConnectSecs float64       `json:"connect_secs"`
	RSSBefore   int64         `json:"rss_before"` // before any client (all nodes)
	RSSIdle     int64         `json:"rss_idle"`   // every client connected and idle, after -settle
	RSSPerConn  float64       `json:"rss_per_conn"`
	Threads     int           `json:"threads_idle"`
	Nodes       []nodeResult  `json:"nodes,omitempty"` // with -nodes > 1
	Scenarios   []*scenario   `json:"scenarios"`
	Series      []seriesPoint `json:"series"`
}

// nodeResult is one node's memory (RSS from /proc) in a cluster run.
type nodeResult struct {
	PID        int     `json:"pid"`
	RSSBefore  int64   `json:"rss_before"`
	RSSReady   int64   `json:"rss_ready"` // every client connected (after the broadcasts of -pre-broadcasts)
	RSSIdle    int64   `json:"rss_idle"`  // after -settle
	RSSPerConn float64 `json:"rss_per_conn"`
}

type scenario struct {
	Name      string   `json:"name"`
	Messages  int      `json:"messages"`  // sent by the driver
	Expected  int64    `json:"expected"`  // deliveries
	Delivered int64    `json:"delivered"` // counted by the clients
	WallSecs  float64  `json:"wall_secs"` // first send to last delivery
	SendSecs  float64  `json:"send_secs"` // the driver's calls
	ServerCPU float64  `json:"server_cpu_secs"`
	PerCPUSec float64  `json:"deliveries_per_server_cpu_sec"`
	PerSec    float64  `json:"deliveries_per_sec"`
	SyscW     float64  `json:"write_syscalls_per_delivery"`
	SyscR     float64  `json:"read_syscalls_per_delivery"`
	ClientCPU float64  `json:"client_cpu_secs"`
	CallerCPU float64  `json:"caller_cpu_secs"` // who sends: this process (Go calls, HTTP publishes), or the PHP callers
	OtherCPU  float64  `json:"other_cpu_secs"`  // the machine's CPU time less the server's, the clients' and this process's
	P50       float64  `json:"p50_ms"`
	P90       float64  `json:"p90_ms"`
	P99       float64  `json:"p99_ms"`
	Max       float64  `json:"max_ms"`
	RSSAfter  int64    `json:"rss_after"`
	Latency   []uint64 `json:"latency_hist"` // counts per bucket of hist.go
}

type seriesPoint struct {
	T         float64 `json:"t"` // seconds since the target started
	RSS       int64   `json:"rss"`
	CPU       float64 `json:"cpu_secs"`
	Delivered int64   `json:"delivered"`
	Phase     string  `json:"phase"`
	NodeRSS   []int64 `json:"node_rss,omitempty"` // each node's, with -nodes > 1
}

// clientProc is one client process and what it last reported.
type clientProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	opened int64
	ready  bool
	recv   int64
	hist   chan []uint64
	failed chan struct{}
	exited chan struct{}
}

func (c *clientProc) received() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recv
}

type fleet []*clientProc

func (f fleet) opened() (n int64) {
	for _, c := range f {
		c.mu.Lock()
		n += c.opened
		c.mu.Unlock()
	}
	return n
}

func (f fleet) received() (n int64) {
	for _, c := range f {
		n += c.received()
	}
	return n
}

func (f fleet) cpu() time.Duration {
	var d time.Duration
	for _, c := range f {
		if s, err := readProc(c.cmd.Process.Pid); err == nil {
			d += s.CPU
		}
	}
	return d
}

// hist asks every client for its histogram since the last one.
func (f fleet) hist() (histCounts, error) {
	var h histCounts
	for _, c := range f {
		if _, err := io.WriteString(c.stdin, "hist\n"); err != nil {
			return nil, err
		}
	}
	for _, c := range f {
		select {
		case b := <-c.hist:
			h.merge(b)
		case <-c.exited:
			return nil, fmt.Errorf("a client process exited")
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("a client process did not answer")
		}
	}
	return h, nil
}

func (f fleet) close() {
	for _, c := range f {
		_ = c.stdin.Close()
	}
	for _, c := range f {
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
}

func startClients(o *options, t target, stderr io.Writer) (fleet, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var f fleet
	urls := t.urls()
	// Each node gets o.n clients, in procs processes of its own.
	procs := max((o.procs+len(urls)-1)/len(urls), (o.n+maxPerClient-1)/maxPerClient, 1)
	for i := range procs * len(urls) {
		node, k := i/procs, i%procs
		first := o.n * k / procs
		n := o.n*(k+1)/procs - first
		cmd := exec.Command(self, "client", "-id", strconv.Itoa(i), "-first", strconv.Itoa(node*o.n+first), "-n", strconv.Itoa(n),
			"-url", urls[node], "-src", o.src, "-proto", t.proto(), "-groups", strconv.Itoa(o.groups),
			"-concurrency", strconv.Itoa(o.concurrency))
		cmd.Stderr = stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return f, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return f, err
		}
		if err := cmd.Start(); err != nil {
			return f, err
		}
		c := &clientProc{cmd: cmd, stdin: in, hist: make(chan []uint64, 1), failed: make(chan struct{}), exited: make(chan struct{})}
		go func() {
			readLines(out, func(line string) {
				k, v, _ := strings.Cut(line, " ")
				switch k {
				case "o":
					n, _ := strconv.ParseInt(v, 10, 64)
					c.mu.Lock()
					c.opened = n
					c.mu.Unlock()
				case "ready":
					n, _ := strconv.ParseInt(v, 10, 64)
					c.mu.Lock()
					c.opened, c.ready = n, true
					c.mu.Unlock()
				case "c":
					n, _ := strconv.ParseInt(v, 10, 64)
					c.mu.Lock()
					c.recv = n
					c.mu.Unlock()
				case "h":
					var h []uint64
					_ = json.Unmarshal([]byte(v), &h)
					c.hist <- h
				}
			})
			_ = cmd.Wait()
			close(c.exited)
		}()
		f = append(f, c)
	}
	for _, c := range f {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			return f, err
		}
	}
	return f, nil
}

// runTarget starts t, connects the clients, runs the scenarios and stops it.
func runTarget(ctx context.Context, o *options, t target, stderr io.Writer) (*targetResult, error) {
	tr := &targetResult{Name: t.name()}
	bar := newProgress(stderr, o.quiet)
	bar.status(t.name(), "starting")
	if err := t.start(ctx, o, o.out); err != nil {
		bar.done()
		t.stop()
		return nil, err
	}
	defer t.stop()
	pids := t.pids()
	conns := o.n * len(pids)
	tr.Conns = conns
	time.Sleep(time.Second)
	t0 := time.Now()
	s0, err := readServer(pids)
	if err != nil {
		bar.done()
		return nil, err
	}
	tr.RSSBefore = s0.RSS

	// Sample the server every 100 ms for the whole run.
	var f fleet
	var fmu sync.Mutex
	phase := "connect"
	var seriesMu sync.Mutex
	sampleStop := make(chan struct{})
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleStop:
				return
			case <-tick.C:
			}
			s, err := readServer(pids)
			if err != nil {
				continue
			}
			fmu.Lock()
			var recv int64
			if f != nil {
				recv = f.received()
			}
			fmu.Unlock()
			pt := seriesPoint{T: s.At.Sub(t0).Seconds(), RSS: s.RSS, CPU: s.CPU.Seconds(), Delivered: recv}
			if len(pids) > 1 {
				pt.NodeRSS = s.NodeRSS
			}
			seriesMu.Lock()
			pt.Phase = phase
			tr.Series = append(tr.Series, pt)
			seriesMu.Unlock()
		}
	}()
	setPhase := func(p string) { seriesMu.Lock(); phase = p; seriesMu.Unlock() }
	defer func() { close(sampleStop); <-sampleDone }()

	cl, err := startClients(o, t, stderr)
	fmu.Lock()
	f = cl
	fmu.Unlock()
	defer func() { bar.status(t.name(), "closing"); f.close(); bar.done() }()
	if err != nil {
		return tr, err
	}
	// Connect.
	for {
		opened := f.opened()
		allReady := true
		for _, c := range f {
			c.mu.Lock()
			allReady = allReady && c.ready
			c.mu.Unlock()
		}
		s, _ := readServer(pids)
		bar.update(t.name(), "connecting", opened, int64(conns), s.RSS, time.Since(t0))
		if allReady {
			break
		}
		for _, c := range f {
			select {
			case <-c.exited:
				return tr, fmt.Errorf("a client process failed while connecting (%d of %d open)", opened, conns)
			default:
			}
		}
		if ctx.Err() != nil {
			return tr, ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	tr.ConnectSecs = time.Since(t0).Seconds()
	if err := t.prepare(ctx, o); err != nil {
		return tr, err
	}

	type spec struct {
		name     string
		messages int
		group    bool
		push     string // the push method; "" for a broadcast or group push
	}
	payload := make([]byte, 0, o.payload)
	runSpec := func(sp spec) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(o.pause)
		setPhase(sp.name)
		sc := &scenario{Name: sp.name, Messages: sp.messages}
		var expected int64
		for i := range sp.messages {
			switch {
			case sp.group:
				expected += int64(groupSize(o.n, o.groups, i%o.groups))
			case sp.push != "":
				expected += int64(conns * o.pushPerConn)
			default:
				expected += int64(conns)
			}
		}
		sc.Expected = expected
		var pushSend func() (time.Duration, error)
		if sp.push != "" {
			var err error
			if pushSend, err = t.(pusher).startPush(sp.push, o, sp.messages); err != nil {
				return err
			}
		}
		base := f.received()
		m0, c0, self0 := bench.MachineCPU(), f.cpu(), selfCPU()
		p0, err := readServer(pids)
		if err != nil {
			return err
		}
		start := time.Now()
		sendErr := make(chan error, 1)
		var callerCPU time.Duration // the PHP callers'; 0 when this process calls
		go func() {
			if pushSend != nil {
				cpu, err := pushSend()
				callerCPU = cpu
				if err != nil {
					sendErr <- fmt.Errorf("%s: %w", sp.name, err)
					return
				}
				sc.SendSecs = time.Since(start).Seconds()
				sendErr <- nil
				return
			}
			for i := range sp.messages {
				g := -1
				if sp.group {
					g = i % o.groups
				}
				payload = makePayload(payload[:0], o.payload)
				if err := t.publish(g, payload); err != nil {
					sendErr <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
			sc.SendSecs = time.Since(start).Seconds()
			sendErr <- nil
		}()
		var sent bool
		last, lastAt := base, time.Now()
		for {
			got := f.received() - base
			s, _ := readServer(pids)
			bar.update(t.name(), sp.name, got, expected, s.RSS, time.Since(t0))
			if got >= expected && sent {
				break
			}
			select {
			case err := <-sendErr:
				if err != nil {
					return err
				}
				sent = true
			case <-time.After(20 * time.Millisecond):
			}
			if got != last {
				last, lastAt = got, time.Now()
			} else if sent && time.Since(lastAt) > o.timeout {
				break
			}
		}
		// The clients report every 100 ms: the last delivery is at most
		// that much before the count showed it.
		wall := time.Since(start)
		p1, err := readServer(pids)
		if err != nil {
			return err
		}
		m1, c1, self1 := bench.MachineCPU(), f.cpu(), selfCPU()
		h, err := f.hist()
		if err != nil {
			return err
		}
		sc.Delivered = f.received() - base
		sc.WallSecs = wall.Seconds()
		sc.ServerCPU = (p1.CPU - p0.CPU).Seconds()
		sc.ClientCPU = (c1 - c0).Seconds()
		sc.CallerCPU = (self1 - self0).Seconds()
		if callerCPU > 0 {
			sc.CallerCPU = callerCPU.Seconds()
		}
		sc.OtherCPU = max(0, (m1-m0).Seconds()-sc.ServerCPU-sc.ClientCPU-(self1-self0).Seconds()-callerCPU.Seconds())
		if sc.ServerCPU > 0 {
			sc.PerCPUSec = float64(sc.Delivered) / sc.ServerCPU
		}
		sc.PerSec = float64(sc.Delivered) / sc.WallSecs
		if sc.Delivered > 0 {
			sc.SyscW = float64(p1.SyscW-p0.SyscW) / float64(sc.Delivered)
			sc.SyscR = float64(p1.SyscR-p0.SyscR) / float64(sc.Delivered)
		}
		sc.P50, sc.P90, sc.P99, sc.Max = ms(h.quantile(0.5)), ms(h.quantile(0.9)), ms(h.quantile(0.99)), ms(h.quantile(1))
		sc.RSSAfter = p1.RSS
		sc.Latency = h
		tr.Scenarios = append(tr.Scenarios, sc)
		return nil
	}

	// Broadcasts before the idle period (a check that every client is
	// reachable before it is held).
	if len(o.preBroadcasts) > 0 {
		if _, err := f.hist(); err != nil { // start the histograms afresh
			return tr, err
		}
	}
	for _, k := range o.preBroadcasts {
		if err := runSpec(spec{fmt.Sprintf("broadcast x%d (before idle)", k), k, false, ""}); err != nil {
			return tr, err
		}
	}
	ready, err := readServer(pids)
	if err != nil {
		return tr, err
	}
	// Idle.
	setPhase("idle")
	end := time.Now().Add(o.settle)
	for time.Now().Before(end) {
		s, _ := readServer(pids)
		bar.update(t.name(), "idle (ms)", (o.settle - time.Until(end)).Milliseconds(), o.settle.Milliseconds(), s.RSS, time.Since(t0))
		time.Sleep(100 * time.Millisecond)
	}
	si, err := readServer(pids)
	if err != nil {
		return tr, err
	}
	tr.RSSIdle, tr.Threads = si.RSS, si.Thread
	tr.RSSPerConn = float64(si.RSS-s0.RSS) / float64(conns)
	if len(pids) > 1 {
		for i, pid := range pids {
			tr.Nodes = append(tr.Nodes, nodeResult{PID: pid, RSSBefore: s0.NodeRSS[i], RSSReady: ready.NodeRSS[i], RSSIdle: si.NodeRSS[i],
				RSSPerConn: float64(si.NodeRSS[i]-s0.NodeRSS[i]) / float64(o.n)})
		}
	}
	if _, err := f.hist(); err != nil { // start the histograms afresh
		return tr, err
	}

	var specs []spec
	for _, k := range o.broadcasts {
		specs = append(specs, spec{fmt.Sprintf("broadcast x%d", k), k, false, ""})
	}
	if o.groups > 0 {
		specs = append(specs, spec{fmt.Sprintf("group push x%d (%d groups)", o.groupPushes, o.groups), o.groupPushes, true, ""})
	}
	if p, ok := t.(pusher); ok && o.pushes > 0 {
		for _, m := range p.pushWith(o) {
			name := pushName(m, o)
			if m == "publish" {
				name = fmt.Sprintf("push x%d (broadcasts, %d per connection)", o.pushes, o.pushPerConn)
			}
			specs = append(specs, spec{name, o.pushes, false, m})
		}
	}
	for _, sp := range specs {
		if err := runSpec(sp); err != nil {
			return tr, err
		}
	}
	setPhase("end")
	time.Sleep(300 * time.Millisecond)
	return tr, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// groupSize is how many of n connections are in group g of groups
// (connection i is in group i mod groups).
func groupSize(n, groups, g int) int {
	return n/groups + btoi(g < n%groups)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// makePayload appends a JSON object of size bytes: {"ts":<unix ns>,"p":"xx…"}.
func makePayload(dst []byte, size int) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, time.Now().UnixNano(), 10)
	dst = append(dst, `,"p":"`...)
	for len(dst) < size-2 {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

func selfCPU() time.Duration {
	s, err := readProc(os.Getpid())
	if err != nil {
		return 0
	}
	return s.CPU
}

func machineInfo() map[string]any {
	m := map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	return m
}

func (r *results) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\tconnect s\tRSS before MiB\tRSS idle MiB\tRSS/conn KiB\t\n")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.2f\t\n", t.Name, t.ConnectSecs, mib(t.RSSBefore), mib(t.RSSIdle), t.RSSPerConn/1024)
	}
	_ = tw.Flush()
	for _, t := range r.Targets {
		if len(t.Nodes) == 0 {
			continue
		}
		fmt.Fprintln(w)
		fmt.Fprintf(tw, "node\tpid\tRSS before MiB\tRSS ready MiB\tRSS idle MiB\tRSS/conn KiB\t\n")
		for i, n := range t.Nodes {
			fmt.Fprintf(tw, "%s %d\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t\n", t.Name, i+1, n.PID, mib(n.RSSBefore), mib(n.RSSReady), mib(n.RSSIdle), n.RSSPerConn/1024)
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "target\tscenario\tdelivered\texpected\twall s\tserver CPU s\tdeliveries/CPU-s\tserver µs/deliv\tdeliveries/s\twrites/deliv\treads/deliv\tclient CPU s\tcaller CPU s\tother CPU s\tp50 ms\tp99 ms\tmax ms\t\n")
	for _, t := range r.Targets {
		for _, s := range t.Scenarios {
			perDeliv := 0.0
			if s.Delivered > 0 {
				perDeliv = s.ServerCPU * 1e6 / float64(s.Delivered)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.0f\t%.2f\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t\n",
				t.Name, s.Name, s.Delivered, s.Expected, s.WallSecs, s.ServerCPU, s.PerCPUSec, perDeliv, s.PerSec, s.SyscW, s.SyscR, s.ClientCPU, s.CallerCPU, s.OtherCPU, s.P50, s.P99, s.Max)
		}
	}
	_ = tw.Flush()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Command clusterload measures the cluster (issue 9) on one machine: three
// wsbridge nodes in this process (each a hub, its Sender Service, its RPC
// server on loopback TCP and its cluster Member) on one redis-server this
// tool starts, and Go RPC clients (rpc.Client, JSON) that push:
//
//   - push to one fd: through the RPC of the node that holds the fd (local)
//     and through another node's RPC (remote), one sequential caller and 8
//     concurrent callers: calls/s, p50 and p99, and the CPU time per call
//     of this process, Redis and any wsbridge processes (/proc), Redis's
//     share and the whole machine's (local and remote alternate in short
//     rounds; the medians are reported);
//   - group push and broadcast across the three nodes, each with -members
//     connections: deliveries/s, and the Redis commands each push cost
//     (INFO commandstats before and after).
//
// The WebSocket clients are in-memory pipes (bench.MemListener) that read
// everything, so 9,000 of them fit under the open-file limit; the figures
// include routing, queueing and the writes to the pipes.
//
//	go run ./bench/clusterload                 # 7 rounds of 1 s per push case
//	go run ./bench/clusterload -rounds 11 -members 3000
//	go run ./bench/clusterload -processes      # push cases against two wsbridge processes
//	go run ./bench/clusterload -processes -link -rounds 1 -d 8s -cpuprofile /tmp/cl  # and where their CPU goes
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

var (
	dur      = flag.Duration("d", time.Second, "duration of each round of a push case")
	rounds   = flag.Int("rounds", 7, "rounds of each push case (local and remote alternate)")
	members  = flag.Int("members", 3000, "connections per node for the group and broadcast cases")
	fanouts  = flag.Int("fanouts", 50, "group pushes (and broadcasts) per fan-out case")
	redisBin = flag.String("redis-server", "redis-server", "the redis-server command")
	cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the first 8-caller remote round to this file; with -processes, profiles of each wsbridge process in the first 8-caller local and remote rounds, to this path with .local.b, .remote.a and .remote.b appended (through their admin API's pprof)")
	hold     = flag.Duration("batch-hold", cluster.DefaultBatchHold, "the nodes' WSBRIDGE_CLUSTER_BATCH_HOLD (0: never hold)")
	link     = flag.Bool("link", false, "the nodes take links from each other (WSBRIDGE_CLUSTER_LINK on loopback): calls for another node's fds skip Redis")
	procs    = flag.Bool("processes", false, "push cases against two wsbridge processes (built from this module) instead of nodes in this process")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "clusterload:", err)
		os.Exit(1)
	}
}

// node is one wsbridge node of the cluster, in this process.
type node struct {
	hub    *bridge.Hub
	svc    *sender.Service
	member *cluster.Member
	rpc    *rpc.Server
	ln     *bench.MemListener
	srv    *http.Server
}

func run() error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	redisAddr, stopRedis, err := startRedis()
	if err != nil {
		return err
	}
	defer stopRedis()
	if *procs {
		return runProcesses(redisAddr)
	}
	u, err := cluster.ParseURL("redis://" + redisAddr)
	if err != nil {
		return err
	}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for range 3 {
		n, err := startNode(u, quiet)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]

	// Push to one fd: each caller its own client, so that one client's
	// reading is not what is measured.
	stopClients, err := connect(b, 8, nil)
	if err != nil {
		return err
	}
	fds, _ := b.hub.FDs(0, 10)
	fmt.Printf("clusterload: 3 nodes in process, redis-server %s, %d cores; push cases: %d rounds of %s local then %s remote, medians\n\n",
		redisAddr, runtime.NumCPU(), *rounds, *dur, *dur)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if err := pushCases(tw, redisAddr, b.rpc.Addr(), a.rpc.Addr(), fds, profileThis); err != nil {
		return err
	}
	if os.Getenv("CLUSTERLOAD_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "node a %+v\nnode b %+v\n", a.member.Stats().Router, b.member.Stats().Router)
	}
	tw.Flush()
	stopClients()

	// Group push and broadcast across the nodes.
	var received atomic.Int64
	var stops []func()
	for _, n := range nodes {
		stop, err := connect(n, *members, &received)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		all, _ := n.hub.FDs(0, *members+10)
		for _, fd := range all {
			if _, err := n.svc.Join(&sender.GroupArgs{FD: fd, Group: "room"}); err != nil {
				return err
			}
		}
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	time.Sleep(200 * time.Millisecond) // the group channels subscribed
	fmt.Printf("\n%d group pushes and %d broadcasts from node 0 to 3 nodes × %d connections (%d-byte messages)\n\n", *fanouts, *fanouts, *members, len(payload))
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tdeliveries\tdeliveries/s\tSPUBLISH per push\tRedis commands per push\t")
	for _, c := range []struct {
		name string
		push func() (int, error)
	}{
		{"group push", func() (int, error) {
			n, _, err := a.svc.PushGroup(&sender.PushGroupArgs{Group: "room", Message: sender.Message{Data: payload}})
			return n, err
		}},
		{"broadcast", func() (int, error) {
			n, _, err := a.svc.Broadcast(&sender.BroadcastArgs{Message: sender.Message{Data: payload}})
			return n, err
		}},
	} {
		before, err := commandStats(redisAddr)
		if err != nil {
			return err
		}
		received.Store(0)
		want := int64(*fanouts * 3 * *members)
		start := time.Now()
		for range *fanouts {
			n, err := c.push()
			if err != nil {
				return err
			}
			if n != 3**members {
				return fmt.Errorf("%s accepted by %d, want %d", c.name, n, 3**members)
			}
		}
		for received.Load() < want && time.Since(start) < time.Minute {
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		after, err := commandStats(redisAddr)
		if err != nil {
			return err
		}
		spub := float64(after["spublish"]-before["spublish"]) / float64(*fanouts)
		var total int64
		for k, v := range after {
			total += v - before[k]
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t\n", c.name, received.Load(), float64(received.Load())/took.Seconds(), spub, float64(total)/float64(*fanouts))
	}
	tw.Flush()
	fmt.Println("\nSPUBLISH per push: the push's one publish plus one answer per other node in scope (batched with other answers under load);")
	fmt.Println("the other commands are the nodes' heartbeats, sweeps and health pings during the case.")
	return nil
}

const payload = `{"type":"chat","text":"hello everyone"}`

// pushCases measures pushes to fds (held by the node whose RPC is at
// local) through local and through remote, 1 and 8 callers, alternating
// in rounds; it writes the table to tw.
func pushCases(tw *tabwriter.Writer, redisAddr, local, remote string, fds []int64, prof profiler) error {
	fmt.Fprintln(tw, "case\tcallers\tcalls/s\tp50\tp99\tof local\tCPU µs/call\tof which Redis\tmachine CPU µs/call\tcalls per publish\t")
	for _, callers := range []int{1, 8} {
		// Local and remote alternate in short rounds, so that a change
		// in what else runs on the machine weighs on both alike; the
		// ratio is of the medians.
		var locals, remotes []pushResult
		for range *rounds {
			profile := *cpuprof != "" && callers > 1 && len(remotes) == 0
			stop, err := prof.start(profile, "local")
			if err != nil {
				return err
			}
			l, err := pushCase(local, fds, callers)
			if err := errors.Join(err, stop()); err != nil {
				return err
			}
			before, err := commandStats(redisAddr)
			if err != nil {
				return err
			}
			if stop, err = prof.start(profile, "remote"); err != nil {
				return err
			}
			r, err := pushCase(remote, fds, callers)
			if err := errors.Join(err, stop()); err != nil {
				return err
			}
			after, err := commandStats(redisAddr)
			if err != nil {
				return err
			}
			r.publishes = after["spublish"] - before["spublish"]
			locals, remotes = append(locals, l), append(remotes, r)
		}
		l, r := median(locals), median(remotes)
		for i, c := range []struct {
			name string
			res  pushResult
		}{{"push, local fd", l}, {"push, fd of another node", r}} {
			perPublish := "-" // a local push publishes nothing
			switch {
			case i == 0:
			case *link && c.res.publishes < int64(c.res.calls)/100:
				perPublish = "(links)" // the frames skip Redis
			case c.res.publishes > 0:
				// Each frame of calls has its frame of answers.
				perPublish = fmt.Sprintf("%.2f", 2*float64(c.res.calls)/float64(c.res.publishes))
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.2f\t%.1f\t%.1f\t%.1f\t%s\t\n", c.name, callers, c.res.rate(), c.res.pct(50), c.res.pct(99), c.res.rate()/l.rate(),
				c.res.cpuPerCall(c.res.cpu), c.res.cpuPerCall(c.res.redis), c.res.cpuPerCall(c.res.machine), perPublish)
		}
	}
	return nil
}

// profiler profiles a round of a push case ("local" or "remote") when
// asked to: start returns the function that ends the profile.
type profiler func(round string) (stop func() error, err error)

func (p profiler) start(profile bool, round string) (func() error, error) {
	if !profile || p == nil {
		return func() error { return nil }, nil
	}
	return p(round)
}

// profileThis profiles this process in the remote round: the nodes in
// process.
func profileThis(round string) (func() error, error) {
	if round != "remote" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(*cpuprof)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// profileProcesses profiles wsbridge processes through their admin API's
// /debug/pprof/profile for the length of a round (-d, whole seconds): the
// owner of the fds (b) in the local round, both in the remote round.
func profileProcesses(token string, admins map[string]string) profiler {
	return func(round string) (func() error, error) {
		seconds := max(1, int(dur.Round(time.Second)/time.Second))
		client := &http.Client{Timeout: time.Duration(seconds)*time.Second + 10*time.Second}
		var wg sync.WaitGroup
		errs := make(chan error, len(admins))
		for name, addr := range admins {
			if round == "local" && name != "b" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- fetchProfile(client, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), token, *cpuprof+"."+round+"."+name)
			}()
		}
		return func() error {
			wg.Wait()
			close(errs)
			var all []error
			for err := range errs {
				all = append(all, err)
			}
			return errors.Join(all...)
		}, nil
	}
}

func fetchProfile(client *http.Client, url, token, path string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// runProcesses runs the push cases against two wsbridge processes, A and
// B, on the Redis at redisAddr: 8 WebSocket clients on B over loopback TCP,
// pushes through B's RPC (local) and through A's (remote).
func runProcesses(redisAddr string) error {
	dir, err := os.MkdirTemp("", "clusterload-bin")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "wsbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wsbridge")
	build.Dir = bench.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	type proc struct {
		cmd     *exec.Cmd
		ws, rpc string
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	token := rand.Text() // the admin API's, which serves pprof with -cpuprofile
	admins := map[string]string{}
	for i := range 2 {
		p := &proc{ws: freeAddr(), rpc: freeAddr()}
		p.cmd = exec.Command(bin)
		admin := "off"
		if *cpuprof != "" {
			admin = freeAddr()
			admins[string(rune('a'+i))] = admin
		}
		p.cmd.Env = append(os.Environ(), "WSBRIDGE_REDIS_URL=redis://"+redisAddr, "WSBRIDGE_REDIS_PREFIX=clusterload",
			"WSBRIDGE_WS_ADDR="+p.ws, "WSBRIDGE_RPC_ADDR=tcp://"+p.rpc, "WSBRIDGE_ADMIN_ADDR="+admin,
			"WSBRIDGE_ADMIN_TOKEN="+token, "WSBRIDGE_ADMIN_PPROF=true",
			"WSBRIDGE_QUEUE_SIZE=65536", "WSBRIDGE_LOG_LEVEL=error", "WSBRIDGE_CLUSTER_BATCH_HOLD="+hold.String())
		if *link {
			p.cmd.Env = append(p.cmd.Env, "WSBRIDGE_CLUSTER_LINK=127.0.0.1:0")
		}
		if err := p.cmd.Start(); err != nil {
			return err
		}
		ps = append(ps, p)
		measured = append(measured, p.cmd.Process.Pid)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", p.rpc); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("wsbridge did not listen on %s", p.rpc)
			}
		}
	}
	a, b := ps[0], ps[1]
	var clients []*websocket.Conn
	for range 8 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.ws+"/", nil)
		if err != nil {
			return err
		}
		clients = append(clients, ws)
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	c, err := rpc.Dial("tcp://"+b.rpc, rpc.JSON, 10*time.Second)
	if err != nil {
		return err
	}
	var list sender.ConnectionList
	for deadline := time.Now().Add(10 * time.Second); len(list.Connections) < len(clients); time.Sleep(10 * time.Millisecond) {
		if err := c.Call("Sender.Connections", map[string]any{}, &list); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node B lists %d connections, want %d", len(list.Connections), len(clients))
		}
	}
	c.Close()
	fds := make([]int64, len(list.Connections))
	for i, conn := range list.Connections {
		fds[i] = conn.FD
	}
	fmt.Printf("clusterload: 2 wsbridge processes, redis-server %s, %d cores; push cases: %d rounds of %s local then %s remote, medians\n\n",
		redisAddr, runtime.NumCPU(), *rounds, *dur, *dur)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if err := pushCases(tw, redisAddr, "tcp://"+b.rpc, "tcp://"+a.rpc, fds, profileProcesses(token, admins)); err != nil {
		return err
	}
	return tw.Flush()
}

// freeAddr returns a free loopback address.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startNode(u cluster.RedisURL, log *slog.Logger) (*node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := cluster.Open(ctx, cluster.Config{URL: u, Prefix: "clusterload", NodeID: cluster.AutoNodeID, Address: "clusterload", BatchHold: cluster.BatchHoldSetting(*hold), Logger: log, Link: linkAddr()})
	if err != nil {
		return nil, err
	}
	n := &node{member: m, ln: bench.NewMemListener()}
	listener := m.UseEvents(nil, nil)
	n.hub, err = bridge.New(bridge.Config{NodeID: m.ID(), Sequence: m.Sequence(), Listener: listener, OnIndexChange: m.OnIndexChange,
		MaxConnections: 100000, QueueSize: 1 << 16, Logger: log})
	if err != nil {
		return nil, err
	}
	n.svc = sender.NewService(n.hub)
	if err := m.Start(ctx, n.hub, n.svc); err != nil {
		return nil, err
	}
	n.srv = n.hub.Server()
	go func() { _ = n.srv.Serve(n.ln) }()
	if n.rpc, err = rpc.New(n.svc, rpc.Config{Addr: "tcp://127.0.0.1:0", Logger: log}); err != nil {
		return nil, err
	}
	if err := n.rpc.Listen(); err != nil {
		return nil, err
	}
	go func() { _ = n.rpc.Serve() }()
	return n, nil
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.rpc.Shutdown(ctx)
	n.ln.Close()
	_ = n.hub.Shutdown(ctx)
	_ = n.member.Close(ctx)
}

// connect opens count in-memory clients to n that read (and count) every
// message; the returned func closes them.
func connect(n *node, count int, received *atomic.Int64) (func(), error) {
	d := websocket.Dialer{NetDialContext: n.ln.Dial, HandshakeTimeout: 10 * time.Second}
	var conns []*websocket.Conn
	var wg sync.WaitGroup
	before := n.hub.Stats().Connections
	for range count {
		ws, _, err := d.Dial("ws://mem/", nil)
		if err != nil {
			return nil, err
		}
		conns = append(conns, ws)
		wg.Go(func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				if received != nil {
					received.Add(1)
				}
			}
		})
	}
	for n.hub.Stats().Connections < before+count {
		time.Sleep(time.Millisecond)
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}, nil
}

type pushResult struct {
	calls      int
	took       time.Duration
	lat        []time.Duration
	cpu, redis time.Duration // CPU time of the measured processes (servers, callers, Redis), and of Redis alone
	machine    time.Duration // CPU time of the whole machine meanwhile
	publishes  int64         // SPUBLISH commands Redis ran meanwhile
}

// cpuPerCall is the CPU time of the measured processes per call, in µs.
func (r pushResult) cpuPerCall(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(max(r.calls, 1))
}

// measured are the processes whose CPU time a push case counts besides
// this one: Redis first, then any wsbridge processes.
var measured []int

func measuredCPU() (all, redis time.Duration) {
	self, _, _ := bench.ReadStat(0)
	all = self
	for i, pid := range measured {
		c, _, _ := bench.ReadStat(pid)
		all += c
		if i == 0 {
			redis = c
		}
	}
	return all, redis
}

func (r pushResult) rate() float64 { return float64(r.calls) / r.took.Seconds() }

// median returns the round with the median rate.
func median(rs []pushResult) pushResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b pushResult) int { return int(a.rate() - b.rate()) })
	return s[len(s)/2]
}

func (r pushResult) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)*p/100, len(r.lat)-1)].Round(time.Microsecond)
}

// pushCase pushes through the RPC at addr from callers goroutines, each
// with its own connection and its own fd of fds, for -d.
func pushCase(addr string, fds []int64, callers int) (pushResult, error) {
	var mu sync.Mutex
	var res pushResult
	var firstErr error
	var wg sync.WaitGroup
	cpu0, redis0 := measuredCPU()
	machine0 := bench.MachineCPU()
	start := time.Now()
	deadline := start.Add(*dur)
	for i := range callers {
		fd := fds[i%len(fds)]
		wg.Go(func() {
			c, err := rpc.Dial(addr, rpc.JSON, 10*time.Second)
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			defer c.Close()
			args := map[string]any{"fd": fd, "data": payload}
			var lat []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				var ok bool
				if err := c.Call("Sender.Push", args, &ok); err != nil || !ok {
					mu.Lock()
					firstErr = fmt.Errorf("push: %v, %v", ok, err)
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.calls += len(lat)
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	cpu1, redis1 := measuredCPU()
	res.cpu, res.redis, res.machine = cpu1-cpu0, redis1-redis0, bench.MachineCPU()-machine0
	slices.Sort(res.lat)
	return res, firstErr
}

// startRedis runs a redis-server on a free port in a temporary folder.
func startRedis() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "clusterload")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(*redisBin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s (apt-get install redis-server): %w", *redisBin, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	measured = append(measured, cmd.Process.Pid)
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server did not listen on %s", addr)
		}
	}
}

// commandStats reads INFO commandstats: calls per command.
func commandStats(addr string) (map[string]int64, error) {
	out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", addr[strings.LastIndex(addr, ":")+1:], "INFO", "commandstats").Output()
	if err != nil {
		return nil, fmt.Errorf("redis-cli (apt-get install redis-tools): %w", err)
	}
	stats := map[string]int64{}
	for line := range strings.SplitSeq(string(out), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		stats[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return stats, nil
}

// linkAddr is the nodes' cluster.Config.Link: with -link, loopback.
func linkAddr() string {
	if *link {
		return "127.0.0.1:0"
	}
	return ""
}

// Command load measures WebSocket fan-out from outside the server: N clients
// over loopback, in several processes, receive broadcasts and group pushes
// sent through each server's own API; the tool reads the server's CPU time,
// RSS and system calls from /proc, the end-to-end latency from a timestamp
// in each payload, and writes the results as JSON and as plots.
//
// The same clients, payloads and scenarios run against each target, one
// after the other, in one run:
//
//   - wsbridge: the binary of this module (built unless -wsbridge is given),
//     broadcasts and group pushes through the goridge RPC (Sender.Broadcast,
//     Sender.PushGroup, JSON codec, from Go);
//   - centrifugo: Centrifugo v6 (-centrifugo, installed by
//     bench/centrifugo.sh), clients subscribed to one channel, broadcasts
//     through its HTTP API publish;
//   - gorilla: a naive gorilla server (this binary, serve-gorilla), the
//     reference for what a plain Go server costs.
//
// Run `go run ./bench/load --help` for the flags; docs/BENCHMARKS.md has the
// commands and figures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "client":
			os.Exit(clientMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "serve-gorilla":
			os.Exit(gorillaMain(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// maxPerClient keeps each client process below the 20,000 open files a
// process may hold here.
const maxPerClient = 15000

type options struct {
	n             int
	targets       []string
	procs         int
	src           string
	concurrency   int
	broadcasts    []int
	preBroadcasts []int
	nodes         int
	redisURL      string
	redisBin      string
	groups        int
	groupPushes   int
	pushes        int
	pushBatch     int
	pushPerConn   int
	pushWith      []string
	phpProcs      int
	goCallers     int
	wsbridgeBase  string
	payload       int
	settle        time.Duration
	pause         time.Duration
	timeout       time.Duration
	out           string
	jsonPath      string
	centrifugoBin string
	wsbridgeBin   string
	wsbridgeEnv   []string
	plots         string
	quiet         bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `load: WebSocket fan-out measured from outside, side by side.

Usage:
  go run ./bench/load [flags]
  go run ./bench/load -n 10000 -targets wsbridge,centrifugo,gorilla -centrifugo /tmp/cf/centrifugo -out /tmp/load

Each target runs as its own process; N clients connect to it from client
processes of this binary (several past 15,000 connections), spread over the
-src loopback addresses; then, per entry of -broadcasts, that many broadcasts
are sent back to back and the tool waits until every client has received
every message (or -timeout). With -groups G, connection i joins group i mod G
and -group-pushes pushes go to the groups in turn. With -pushes K, each
scenario of -push-with sends K rounds of -push-per-conn messages to every
connection by its fd, through the RPC, from -go-callers Go callers (this
process) or from -php-procs PHP processes (php-client,
bench/php/loadpush.php), each on its share of the connections. Each payload
is a JSON object of -payload bytes with "ts", its sending time in unix
nanoseconds. -pre-broadcasts run the same way as -broadcasts right after
the clients connect, before the -settle idle period (with a long -settle: a
check that every client is reachable before and after it is held).

Targets: wsbridge (this module's binary), wsbridge-base (-wsbridge-base, an
earlier build, for before/after in one run), centrifugo, gorilla (a naive
gorilla server) and floor (one write system call per delivery from the
publishing request: the least a server can do; it takes push rounds as
broadcasts).

With -nodes K (target wsbridge alone) the target is a cluster of K wsbridge
processes on one redis-server (started by the tool, or -redis), with -n
clients connected to each node; broadcasts and pushes go through the first
node's RPC (the cluster routes a push to the node holding its fd) and must
reach every client of every node. RSS is reported per node.

Figures per scenario: messages delivered (counted by the clients) against
expected, the server's CPU time (/proc/PID/stat) and deliveries per server
CPU-second, write and read system calls (/proc/PID/io syscw, syscr) per
delivery, the clients' and the rest of the machine's CPU time, latency
quantiles. Per target: RSS before the clients and with them idle (after
-settle), per connection. Output: results.json, latency CDFs, deliveries/s
and RSS over time (PNG and SVG) in -out; for wsbridge also each node's admin
address and token (wsbridge-admin.txt), to look into a run while it holds.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.n, "n", 1000, "connections")
	targets := fs.String("targets", "wsbridge,gorilla", "comma-separated: wsbridge, centrifugo, gorilla")
	fs.IntVar(&o.procs, "procs", 2, "client processes (at least; more past 15,000 connections each)")
	fs.StringVar(&o.src, "src", "127.0.0.2-127.0.0.9", "source addresses of the clients (loopback)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "handshakes in flight per client process")
	bc := fs.String("broadcasts", "40,400", "broadcast scenarios: messages sent back to back in each")
	pre := fs.String("pre-broadcasts", "", "broadcast scenarios run after connecting, before the -settle idle period")
	fs.IntVar(&o.nodes, "nodes", 1, "wsbridge nodes: more than 1 runs a cluster on one redis-server, with -n connections to each node (no -groups)")
	fs.StringVar(&o.redisURL, "redis", "", "with -nodes > 1: the Redis URL of the cluster (default: a redis-server the tool starts)")
	fs.StringVar(&o.redisBin, "redis-server", "redis-server", "with -nodes > 1 and no -redis: the redis-server command")
	fs.IntVar(&o.groups, "groups", 0, "groups (0: no group scenario); connection i joins group i mod groups")
	fs.IntVar(&o.groupPushes, "group-pushes", 400, "group pushes, to the groups in turn")
	fs.IntVar(&o.pushes, "pushes", 0, "push rounds (0: none): -push-per-conn messages to every connection by its fd, through the RPC (wsbridge; the floor server broadcasts them)")
	fs.IntVar(&o.pushBatch, "push-batch", 500, "messages (fds) per PushBatch (PushMany) call")
	fs.IntVar(&o.pushPerConn, "push-per-conn", 1, "messages to each connection per push round")
	pushWith := fs.String("push-with", "go-batch", "push scenarios, comma-separated: go-push (Sender.Push from Go), go-batch (Sender.PushBatch from Go), go-many (Sender.PushMany from Go), php-push (Sender::push from PHP processes), php-batch (Sender::pushBatch from PHP processes)")
	fs.IntVar(&o.goCallers, "go-callers", 1, "Go callers of the go-* push scenarios (goroutines of this process, an RPC connection each), each pushing to its share of the connections")
	fs.IntVar(&o.phpProcs, "php-procs", 4, "PHP caller processes of the php-* push scenarios (php-client; make php-autoload), each pushing to its share of the connections")
	fs.StringVar(&o.wsbridgeBase, "wsbridge-base", "", "the wsbridge binary of target wsbridge-base (an earlier build, measured in the same run)")
	fs.IntVar(&o.payload, "payload", 40, "payload bytes (at least 34: the timestamp)")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "wait with every client idle before RSS is read")
	fs.DurationVar(&o.pause, "pause", time.Second, "pause between scenarios")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "a scenario ends when no message has arrived for this long")
	fs.StringVar(&o.out, "out", "", "directory of results.json, the plots and the servers' logs (default: a new temporary one)")
	fs.StringVar(&o.centrifugoBin, "centrifugo", os.Getenv("CENTRIFUGO"), "the Centrifugo binary (default $CENTRIFUGO)")
	fs.StringVar(&o.wsbridgeBin, "wsbridge", "", "the wsbridge binary (default: go build ./cmd/wsbridge)")
	env := fs.String("wsbridge-env", "", "comma-separated WSBRIDGE_*=value settings for the wsbridge target")
	fs.StringVar(&o.plots, "plots", "png,svg", "plot formats: png, svg, or none")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.n < 1 {
		return nil, errors.New("-n must be at least 1")
	}
	if o.pushBatch < 1 || o.pushBatch > 10000 {
		return nil, errors.New("-push-batch must be 1..10000 (sender.MaxBatch)")
	}
	if o.pushPerConn < 1 || o.phpProcs < 1 || o.goCallers < 1 {
		return nil, errors.New("-push-per-conn, -php-procs and -go-callers must be at least 1")
	}
	for m := range strings.SplitSeq(*pushWith, ",") {
		if m = strings.TrimSpace(m); !slices.Contains(pushMethods, m) {
			return nil, fmt.Errorf("-push-with: unknown %q (%s)", m, strings.Join(pushMethods, ", "))
		}
		o.pushWith = append(o.pushWith, m)
	}
	if o.payload < 34 {
		return nil, errors.New("-payload must be at least 34 bytes")
	}
	for t := range strings.SplitSeq(*targets, ",") {
		if _, err := newTarget(t); err != nil {
			return nil, err
		}
		o.targets = append(o.targets, strings.TrimSpace(t))
	}
	var err error
	if o.broadcasts, err = counts("-broadcasts", *bc); err != nil {
		return nil, err
	}
	if o.preBroadcasts, err = counts("-pre-broadcasts", *pre); err != nil {
		return nil, err
	}
	if o.nodes < 1 {
		return nil, errors.New("-nodes must be at least 1")
	}
	if o.nodes > 1 && (len(o.targets) != 1 || o.targets[0] != "wsbridge" || o.groups > 0) {
		return nil, errors.New("-nodes > 1 runs against -targets wsbridge alone (no -groups)")
	}
	if *env != "" {
		for kv := range strings.SplitSeq(*env, ",") {
			if !strings.HasPrefix(strings.TrimSpace(kv), "WSBRIDGE_") || !strings.Contains(kv, "=") {
				return nil, fmt.Errorf("-wsbridge-env: %q is not WSBRIDGE_NAME=value", kv)
			}
			o.wsbridgeEnv = append(o.wsbridgeEnv, strings.TrimSpace(kv))
		}
	}
	o.procs = max(o.procs, (o.n+maxPerClient-1)/maxPerClient, 1)
	o.procs = min(o.procs, o.n) // a client process holds at least one connection
	return o, nil
}

// counts parses a comma-separated list of positive counts.
func counts(flag, list string) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		k, err := strconv.Atoi(s)
		if err != nil || k < 1 {
			return nil, fmt.Errorf("%s: %q", flag, s)
		}
		out = append(out, k)
	}
	return out, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if _, ok := stderr.(*os.File); !ok {
		// The client processes' stderr is copied in by goroutines of
		// os/exec while the progress is written: one writer at a time.
		stderr = &syncWriter{w: stderr}
	}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 2
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "load-"); err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
	} else if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	procs := max((o.procs+o.nodes-1)/o.nodes, (o.n+maxPerClient-1)/maxPerClient, 1) * o.nodes // as startClients
	res := &results{Started: time.Now().UTC(), Conns: o.n * o.nodes, Nodes: o.nodes, Payload: o.payload, ClientProcs: procs, Machine: machineInfo()}
	for _, name := range o.targets {
		t, _ := newTarget(name)
		tr, err := runTarget(ctx, o, t, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "load: %s: %v\n", name, err)
			if tr == nil {
				return 1
			}
			tr.Error = err.Error()
		}
		res.Targets = append(res.Targets, tr)
		if ctx.Err() != nil {
			break
		}
	}
	res.Finished = time.Now().UTC()
	b, _ := json.MarshalIndent(res, "", "  ")
	path := filepath.Join(o.out, "results.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	if o.plots != "none" {
		if err := writePlots(res, o.out, strings.Split(o.plots, ",")); err != nil {
			fmt.Fprintln(stderr, "load: plots:", err)
			return 1
		}
	}
	res.print(stdout)
	fmt.Fprintf(stdout, "\nresults: %s\n", o.out)
	for _, t := range res.Targets {
		if t.Error != "" {
			return 1
		}
	}
	return 0
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

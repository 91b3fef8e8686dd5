// Command soak runs the real wsbridge binary under load on loopback and
// puts it through faults, one after the other, each bounded in time, and
// reports for each the bridge's memory high-water mark, what was lost and
// what was refused or dropped (and counted by the bridge), and the time to
// recover.
//
// The load: N WebSocket clients (gorilla, from several 127.x source
// addresses), pushes to them through RPC (Sender.PushBatch over goridge),
// each carrying the number of earlier pushes to that fd the bridge accepted,
// so a client sees a lost push as soon as a later one arrives; and
// messages from the clients, which the bridge delivers as events to an
// endpoint (php -S running endpoint.php, or a Go endpoint with -endpoint go)
// that records every event's fd and seq.
//
// The faults (-scenarios): baseline (load only), php-kill (the endpoint
// killed, then restarted), php-slow (it answers after -slow), stop-reading
// (every client stops reading), connect-flood (connect/close as fast as
// possible, on top of the N), slowloris (incomplete requests trickled on
// the WebSocket, RPC and admin ports), rpc-flood (RPC calls pipelined
// without reading replies) and sigterm (graceful shutdown under load; it
// ends the run).
//
// Before and after each fault the load pauses until everything queued has
// arrived (or -quiesce-timeout passes), so the counts between are exact:
//
//   - lost silently: a push the bridge accepted that never arrived on a
//     connection that stayed open or ended with 1000/1001, and an event
//     that was neither acknowledged by the endpoint, nor counted as dropped
//     by the bridge, nor still pending. Must be 0.
//   - refused/dropped: a push answered false or with an error, a push that
//     was queued on a connection the bridge then closed with another code
//     (counted by connections_closed_total), an event counted by
//     events_dropped_total: allowed, within the documented bounds.
//
// Every setting of the bridge can be given: WSBRIDGE_* variables of this
// process pass through, and -set NAME=VALUE adds more. The tool sets only
// the listen addresses (loopback, ports the kernel picks), the admin
// token, the events URL, the log format and, unless given,
// WSBRIDGE_MAX_CONNECTIONS.
//
//	go run ./bench/soak -n 500 -d 3s
//	go run ./bench/soak -n 10000 -d 30s -json soak.json
//	go run ./bench/soak -scenarios php-slow,sigterm -set WSBRIDGE_EVENTS_QUEUE_BYTES=16MiB
//
// See docs/BENCHMARKS.md.
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
	"strings"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// allScenarios in the order they run; sigterm ends the bridge, so it comes
// last.
var allScenarios = []string{"baseline", "php-kill", "php-slow", "stop-reading", "connect-flood", "slowloris", "rpc-flood", "sigterm"}

type options struct {
	n                int
	d                time.Duration
	scenarios        []string
	endpoint         string
	phpWorkers       int
	slow             time.Duration
	pushRate         int
	pushers          int
	batch            int
	pushSize         int
	msgRate          int
	src              string
	dialConcurrency  int
	floodConcurrency int
	floodHeaderBytes int
	slowloris        int
	slowMaxHold      time.Duration
	rcvBuf           int
	stopPushRate     int
	stopPushSize     int
	stopBcastRate    int
	sigtermIdleHTTP  int
	slowInterval     time.Duration
	rpcFloodConns    int
	rpcTimeout       time.Duration
	recoverTimeout   time.Duration
	quiesceTimeout   time.Duration
	shutdownWait     time.Duration
	rssBudgetMiB     float64
	bin              string
	race             bool
	bridgeLog        string
	jsonOut          string
	set              []string
	keep             bool
}

type setFlag struct{ p *[]string }

func (s setFlag) String() string { return "" }
func (s setFlag) Set(v string) error {
	name, _, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(name, "WSBRIDGE_") {
		return errors.New("want WSBRIDGE_NAME=VALUE")
	}
	*s.p = append(*s.p, v)
	return nil
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var scen string
	fs.IntVar(&o.n, "n", 1000, "WebSocket connections holding the load (10000 for the documented run)")
	fs.DurationVar(&o.d, "d", 10*time.Second, "duration of each fault (the load flows throughout)")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run, in this order: "+strings.Join(allScenarios, ", "))
	fs.StringVar(&o.endpoint, "endpoint", "php", "events endpoint: php (php -S running endpoint.php) or go (in this process)")
	fs.IntVar(&o.phpWorkers, "php-workers", 8, "PHP_CLI_SERVER_WORKERS of the php endpoint (the bridge sends WSBRIDGE_EVENTS_CONCURRENCY requests at once, default 8)")
	fs.DurationVar(&o.slow, "slow", 2*time.Second, "php-slow: how long the endpoint takes to answer each request")
	fs.IntVar(&o.pushRate, "push-rate", 1000, "pushes per second, all connections (0: none)")
	fs.IntVar(&o.pushers, "pushers", 4, "RPC connections pushing (each owns a share of the clients)")
	fs.IntVar(&o.batch, "batch", 50, "pushes per Sender.PushBatch call")
	fs.IntVar(&o.pushSize, "push-size", 64, "bytes per push (at least the 24-byte header is sent)")
	fs.IntVar(&o.msgRate, "msg-rate", 200, "messages per second the clients send, all connections (each is an event; 0: none)")
	fs.StringVar(&o.src, "src", "127.0.0.2-127.0.0.33", "client source addresses: comma-separated addresses and first-last ranges (loopback)")
	fs.IntVar(&o.rcvBuf, "client-rcvbuf", 32<<10, "SO_RCVBUF of each client socket (0: the kernel's autotuning, up to tcp_rmem's max): small, so a client that stops reading fills the bridge's queue in seconds, not minutes")
	fs.IntVar(&o.dialConcurrency, "dial-concurrency", 64, "handshakes in flight while connecting the N clients")
	fs.IntVar(&o.floodConcurrency, "flood-concurrency", 64, "connect-flood: dialers connecting and closing at once")
	fs.IntVar(&o.floodHeaderBytes, "flood-header-bytes", 4096, "connect-flood: bytes of extra handshake header per connection")
	fs.IntVar(&o.slowloris, "slowloris", 100, "slowloris: connections per port (WebSocket, RPC, admin)")
	fs.DurationVar(&o.slowMaxHold, "slowloris-max-hold", 30*time.Second, "slowloris: a connection the bridge still holds after this long is a problem (with -d shorter than this, nothing is judged)")
	fs.IntVar(&o.stopPushRate, "stop-reading-push-rate", 5000, "stop-reading: pushes per second while the clients do not read (enough to fill socket buffers and send queues)")
	fs.IntVar(&o.stopPushSize, "stop-reading-push-size", 16<<10, "stop-reading: bytes per push while the clients do not read")
	fs.IntVar(&o.stopBcastRate, "stop-reading-broadcast-rate", 20, "stop-reading: broadcasts per second (of -stop-reading-push-size bytes, to every connection) while the clients do not read")
	fs.IntVar(&o.sigtermIdleHTTP, "sigterm-idle-http", 10, "sigterm: HTTP requests held idle on the WebSocket port (a POST whose body never comes) when SIGTERM is sent")
	fs.DurationVar(&o.slowInterval, "slowloris-interval", time.Second, "slowloris: pause between two bytes")
	fs.IntVar(&o.rpcFloodConns, "rpc-flood-conns", 4, "rpc-flood: connections pipelining calls without reading")
	fs.DurationVar(&o.rpcTimeout, "rpc-timeout", 10*time.Second, "deadline of one PushBatch call")
	fs.DurationVar(&o.recoverTimeout, "recover-timeout", 60*time.Second, "after a fault, give up waiting for recovery after this long")
	fs.DurationVar(&o.quiesceTimeout, "quiesce-timeout", 30*time.Second, "before and after a fault, wait at most this long for what is queued to arrive")
	fs.DurationVar(&o.shutdownWait, "shutdown-wait", 60*time.Second, "sigterm: wait this long for the bridge to exit")
	fs.Float64Var(&o.rssBudgetMiB, "rss-budget-mib", 0, "flag a scenario whose RSS high-water mark exceeds this (the budget the settings imply; 0: no check)")
	fs.StringVar(&o.bin, "bin", "", "wsbridge binary to run (default: go build ./cmd/wsbridge into a temporary directory)")
	fs.BoolVar(&o.race, "race", false, "build the bridge with the race detector")
	fs.StringVar(&o.bridgeLog, "bridge-log", "", "write the bridge's log here (default: in the temporary directory, kept with -keep)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file (-: to stdout, after the table)")
	fs.Var(setFlag{&o.set}, "set", "WSBRIDGE_NAME=VALUE for the bridge (repeatable; added to the WSBRIDGE_* variables passed through)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binary, bridge log, endpoint log)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for s := range strings.SplitSeq(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !contains(allScenarios, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	// Run them in the canonical order (sigterm last).
	var ordered []string
	for _, s := range allScenarios {
		if contains(o.scenarios, s) {
			ordered = append(ordered, s)
		}
	}
	o.scenarios = ordered
	switch {
	case len(o.scenarios) == 0:
		return nil, errors.New("-scenarios: none given")
	case o.n < 1:
		return nil, fmt.Errorf("-n %d: at least 1", o.n)
	case o.d <= 0:
		return nil, fmt.Errorf("-d %s: must be positive", o.d)
	case o.endpoint != "php" && o.endpoint != "go":
		return nil, fmt.Errorf("-endpoint %q: php or go", o.endpoint)
	case o.pushers < 1 || o.batch < 1 || o.batch > 10000:
		return nil, errors.New("-pushers must be at least 1, -batch 1..10000")
	case o.rcvBuf < 0 || o.pushRate < 0 || o.msgRate < 0 || o.pushSize < 0 || o.stopPushRate < 0 || o.stopBcastRate < 0 || o.sigtermIdleHTTP < 0 || o.stopPushSize < 0:
		return nil, errors.New("-push-rate, -msg-rate, -push-size and the -stop-reading ones cannot be negative")
	case o.dialConcurrency < 1 || o.floodConcurrency < 1 || o.slowloris < 0 || o.rpcFloodConns < 1 || o.phpWorkers < 1:
		return nil, errors.New("-dial-concurrency, -flood-concurrency, -rpc-flood-conns and -php-workers must be at least 1, -slowloris at least 0")
	case o.slowInterval <= 0 || o.slow <= 0:
		return nil, errors.New("-slowloris-interval and -slow must be positive")
	}
	if _, err := bench.ParseLoopbackAddrs(o.src); err != nil {
		return nil, err
	}
	// This process holds the N clients, plus the flood's and slowloris's
	// sockets, below its open-file limit.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		need := uint64(o.n + o.floodConcurrency + 3*o.slowloris + o.rpcFloodConns + o.pushers + o.sigtermIdleHTTP + 64)
		if need > rl.Cur {
			return nil, fmt.Errorf("-n %d with the flood's and slowloris's sockets needs %d open files; this process may open %d", o.n, need, rl.Cur)
		}
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run is the whole tool; it returns the exit code: 0 when every scenario
// ran and nothing was lost silently, 1 when a scenario found a problem or
// could not run, 2 on bad flags.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 2
	}
	results, err := soak(ctx, o, environ, stderr)
	if len(results) > 0 {
		printTable(stdout, o, results)
		if o.jsonOut != "" {
			if jerr := writeJSON(o.jsonOut, stdout, o, results); jerr != nil && err == nil {
				err = jerr
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	}
	for _, r := range results {
		if len(r.Problems) > 0 {
			return 1
		}
	}
	return 0
}

func writeJSON(path string, stdout io.Writer, o *options, results []*result) error {
	doc := map[string]any{
		"connections": o.n, "fault_seconds": o.d.Seconds(), "endpoint": o.endpoint,
		"push_rate": o.pushRate, "msg_rate": o.msgRate, "push_size": o.pushSize,
		"settings": append([]string{}, o.set...), "rss_budget_mib": o.rssBudgetMiB, "scenarios": results,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

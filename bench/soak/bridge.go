package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/bench"
)

// buildBridge compiles ./cmd/wsbridge of this module into dir.
func buildBridge(ctx context.Context, dir string, race bool) (string, error) {
	out := filepath.Join(dir, "wsbridge")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/wsbridge")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = bench.ModuleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// bridgeProc is the running wsbridge binary.
type bridgeProc struct {
	cmd   *exec.Cmd
	pid   int
	token string

	wsAddr, rpcAddr, adminAddr string // host:port each

	exited  chan struct{} // closed once Wait has returned
	exitErr error

	mu        sync.Mutex
	warnings  int            // log lines at WARN or above
	lastWarn  []string       // the last few of them, for the report
	finalLogs map[string]any // the "events stopped" line's fields (at shutdown)
	stoppedAt time.Time      // when the "stopped" line came

	rss rssSampler
}

// startBridge runs bin with the given extra environment (WSBRIDGE_* pairs,
// passed through) and the listeners on loopback ports the kernel picks; it
// returns once the three listeners are up. Every log line goes to logw.
func startBridge(bin string, env []string, eventsURL string, maxConns int, logw io.Writer) (*bridgeProc, error) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	b := &bridgeProc{token: hex.EncodeToString(tok), exited: make(chan struct{})}
	args := []string{
		"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-admin-token", b.token, "-events-url", eventsURL, "-log-format", "json", "-log-level", "info",
	}
	if _, set := lookup(env, "WSBRIDGE_MAX_CONNECTIONS"); !set {
		args = append(args, "-max-connections", strconv.Itoa(maxConns))
	}
	b.cmd = exec.Command(bin, args...)
	b.cmd.Env = env
	// An os.Pipe, not StderrPipe: Wait runs while the log is still being
	// read, and the last lines (the shutdown's counts) must not be lost.
	stderr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	b.cmd.Stdout, b.cmd.Stderr = logw, pw
	err = b.cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = stderr.Close()
		return nil, err
	}
	b.pid = b.cmd.Process.Pid
	addrs := make(chan [2]string, 3)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		defer close(addrs)
		defer stderr.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = fmt.Fprintf(logw, "%s\n", line)
			var m map[string]any
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			msg, _ := m["msg"].(string)
			switch msg {
			case "websocket listening", "rpc listening", "admin listening":
				a, _ := m["addr"].(string)
				addrs <- [2]string{msg, strings.TrimPrefix(a, "tcp://")}
			case "events stopped":
				b.mu.Lock()
				b.finalLogs = m
				b.mu.Unlock()
			case "stopped":
				b.mu.Lock()
				b.stoppedAt = time.Now()
				b.mu.Unlock()
			}
			if lvl, _ := m["level"].(string); lvl == "WARN" || lvl == "ERROR" {
				b.mu.Lock()
				b.warnings++
				if len(b.lastWarn) < 20 {
					b.lastWarn = append(b.lastWarn, msg)
				}
				b.mu.Unlock()
			}
		}
	}()
	go func() {
		b.exitErr = b.cmd.Wait()
		<-logDone
		close(b.exited)
	}()
	timeout := time.After(60 * time.Second)
	for b.wsAddr == "" || b.rpcAddr == "" || b.adminAddr == "" {
		select {
		case a, ok := <-addrs:
			if !ok {
				<-b.exited
				return nil, fmt.Errorf("wsbridge exited before listening: %w (its log: see -bridge-log)", b.exitErr)
			}
			switch a[0] {
			case "websocket listening":
				b.wsAddr = a[1]
			case "rpc listening":
				b.rpcAddr = a[1]
			case "admin listening":
				b.adminAddr = a[1]
			}
		case <-timeout:
			b.kill()
			return nil, errors.New("wsbridge did not report its three listeners within 60s")
		}
	}
	go func() { // drain the rest so the scanner never blocks the bridge
		for range addrs {
		}
	}()
	b.rss.start(b.pid)
	return b, nil
}

func lookup(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, v != ""
		}
	}
	return "", false
}

// kill ends the bridge at once (error paths).
func (b *bridgeProc) kill() {
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.rss.stop()
}

// terminate sends SIGTERM and waits up to wait for the exit.
func (b *bridgeProc) terminate(wait time.Duration) (time.Duration, error) {
	t := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-b.exited:
		b.rss.stop()
		return time.Since(t), b.exitErr
	case <-time.After(wait):
		b.kill()
		return time.Since(t), fmt.Errorf("no exit within %s after SIGTERM: killed", wait)
	}
}

// metrics are one scrape of /metrics: series (name with its labels, as
// printed) to value.
type metrics map[string]float64

var adminClient = &http.Client{Timeout: 10 * time.Second}

// scrape reads the bridge's /metrics.
func (b *bridgeProc) scrape() (metrics, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+b.adminAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format: "name{labels} value".
func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds every series of the metric name (all label values).
func (m metrics) sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// with sums the series of name whose labels include every given
// label="value" pair.
func (m metrics) with(name string, pairs ...string) float64 {
	var t float64
outer:
	for k, v := range m {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(k, pairs[i]+`="`+pairs[i+1]+`"`) {
				continue outer
			}
		}
		t += v
	}
	return t
}

// counterDeltas returns the wsbridge counters (…_total) that changed
// between a and b, by series.
func counterDeltas(a, b metrics) map[string]float64 {
	out := map[string]float64{}
	for k, v := range b {
		name, _, _ := strings.Cut(k, "{")
		if !strings.HasPrefix(name, "wsbridge_") || !strings.HasSuffix(name, "_total") {
			continue
		}
		if d := v - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// dropCounters returns, among deltas, the counters that count something the
// bridge refused or dropped (by name: dropped, refused, rejected,
// overflow, timeout, limit, exceeded): each with the reason in its labels.
func dropCounters(deltas map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range deltas {
		name, _, _ := strings.Cut(k, "{")
		for _, w := range []string{"dropped", "refused", "rejected", "overflow", "timeout", "limit", "exceeded", "denied", "aborted"} {
			if strings.Contains(name, w) {
				out[k] = v
				break
			}
		}
		if name == "wsbridge_pushes_total" && !strings.Contains(k, `"queued"`) {
			out[k] = v
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rssSampler reads VmRSS and VmHWM of a process every 100 ms and keeps the
// highest value since the last reset.
type rssSampler struct {
	pid     int
	peak    atomic.Uint64 // bytes, since reset
	hwmOK   atomic.Bool   // the kernel let us reset VmHWM (clear_refs)
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func (s *rssSampler) start(pid int) {
	s.pid = pid
	s.done, s.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (s *rssSampler) stop() {
	s.once.Do(func() {
		if s.done != nil {
			close(s.done)
			<-s.stopped
		}
	})
}

func (s *rssSampler) sample() {
	rss, hwm, err := bench.ReadStatus(s.pid)
	if err != nil {
		return
	}
	v := rss
	if s.hwmOK.Load() {
		v = max(v, hwm)
	}
	for {
		old := s.peak.Load()
		if v <= old || s.peak.CompareAndSwap(old, v) {
			return
		}
	}
}

// reset starts a new high-water mark: the kernel's VmHWM is reset through
// /proc/PID/clear_refs (5); where that is refused, only the sampled VmRSS
// counts.
func (s *rssSampler) reset() {
	err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0)
	s.hwmOK.Store(err == nil)
	s.peak.Store(0)
	s.sample()
}

func mib(b uint64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

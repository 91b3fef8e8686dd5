package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

//go:embed endpoint.php
var endpointPHP []byte

// tracker counts the events the endpoint acknowledged: per fd the highest
// seq seen (delivery is in order per fd and at least once), so a repeat is
// a duplicate and a jump is a gap (events the bridge dropped: they take
// their seq too).
type tracker struct {
	mu    sync.Mutex
	last  map[int64]int64 // fd → highest seq acknowledged
	acked int64           // distinct events
	dups  int64           // repeated deliveries (retries after a lost answer)
	gaps  int64           // seqs never seen below one that was
	// onOpen learns a pool client's fd from its open event ("soak" query).
	onOpen func(id int, fd int64)
}

func newTracker(onOpen func(int, int64)) *tracker {
	return &tracker{last: map[int64]int64{}, onOpen: onOpen}
}

func (t *tracker) event(kind byte, fd, seq int64, id int) {
	t.mu.Lock()
	last := t.last[fd]
	switch {
	case seq <= last:
		t.dups++
	default:
		t.gaps += seq - last - 1
		t.last[fd] = seq
		t.acked++
	}
	t.mu.Unlock()
	if kind == 'o' && id >= 0 && t.onOpen != nil {
		t.onOpen(id, fd)
	}
}

type eventCounts struct{ acked, dups, gaps int64 }

func (t *tracker) counts() eventCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return eventCounts{t.acked, t.dups, t.gaps}
}

// line parses one line of the PHP endpoint's log.
func (t *tracker) line(b []byte) {
	f := bytes.Fields(b)
	if len(f) < 3 || len(f[0]) != 1 {
		return
	}
	fd, err1 := strconv.ParseInt(string(f[1]), 10, 64)
	seq, err2 := strconv.ParseInt(string(f[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	id := -1
	if f[0][0] == 'o' && len(f) > 3 {
		if n, err := strconv.Atoi(string(f[3])); err == nil {
			id = n
		}
	}
	t.event(f[0][0], fd, seq, id)
}

// endpoint is the application's events URL, which a scenario can kill,
// restart and slow down.
type endpoint interface {
	URL() string
	Kill() error
	Restart() error
	SetSlow(time.Duration) error
	// Sync makes every event acknowledged so far visible to the tracker.
	Sync()
	Close()
}

// phpEndpoint is php -S running endpoint.php.
type phpEndpoint struct {
	dir, addr string
	t         *tracker
	workers   int
	cmd       *exec.Cmd
	waited    chan struct{}

	mu   sync.Mutex // the log file's read state
	f    *os.File
	rest []byte

	stop, stopped chan struct{}
}

func startPHP(dir string, workers int, t *tracker) (*phpEndpoint, error) {
	if _, err := exec.LookPath("php"); err != nil {
		return nil, fmt.Errorf("php is not installed (Debian: apt-get install php-cli), or use -endpoint go: %w", err)
	}
	script := filepath.Join(dir, "endpoint.php")
	if err := os.WriteFile(script, endpointPHP, 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "events.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return nil, err
	}
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	// php -S takes an address, not a socket: the port is picked by a
	// listener closed just before (the only way to hand php -S a port).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := &phpEndpoint{dir: dir, addr: addr, t: t, workers: workers, f: f, stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := p.Restart(); err != nil {
		_ = f.Close()
		return nil, err
	}
	go p.tail()
	return p, nil
}

func (p *phpEndpoint) URL() string { return "http://" + p.addr + "/" }

// Restart starts php -S on the endpoint's address (again).
func (p *phpEndpoint) Restart() error {
	if p.cmd != nil {
		return errors.New("php endpoint already running")
	}
	var lastErr error
	for range 50 {
		cmd := exec.Command("php", "-d", "post_max_size=128M", "-d", "memory_limit=512M", "-d", "display_errors=stderr",
			"-S", p.addr, filepath.Join(p.dir, "endpoint.php"))
		cmd.Env = append(os.Environ(), "SOAK_DIR="+p.dir, "SOAK_EVENTS="+filepath.Join(p.dir, "events.log"),
			"PHP_CLI_SERVER_WORKERS="+strconv.Itoa(p.workers))
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &limitedBuffer{b: &errb, n: 4096}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers go with it
		if err := cmd.Start(); err != nil {
			return err
		}
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		if err := waitListening(p.addr, waited, 10*time.Second); err != nil {
			killGroup(cmd)
			<-waited
			lastErr = fmt.Errorf("php -S %s: %w: %s", p.addr, err, errb.String())
			time.Sleep(100 * time.Millisecond) // the port may still be held
			continue
		}
		p.cmd, p.waited = cmd, waited
		return nil
	}
	return lastErr
}

// Kill ends php -S and its workers with SIGKILL: requests under way get no
// answer.
func (p *phpEndpoint) Kill() error {
	if p.cmd == nil {
		return errors.New("php endpoint not running")
	}
	killGroup(p.cmd)
	<-p.waited
	p.cmd = nil
	return nil
}

func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

func (p *phpEndpoint) SetSlow(d time.Duration) error {
	path := filepath.Join(p.dir, "slow")
	if d <= 0 {
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.WriteFile(path, []byte(strconv.FormatInt(d.Milliseconds(), 10)), 0o644)
}

func (p *phpEndpoint) tail() {
	defer close(p.stopped)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		p.Sync()
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *phpEndpoint) Sync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	buf := make([]byte, 256<<10)
	for {
		n, err := p.f.Read(buf)
		if n > 0 {
			data := append(p.rest, buf[:n]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				p.t.line(data[:i])
				data = data[i+1:]
			}
			p.rest = append(p.rest[:0], data...)
		}
		if err != nil || n == 0 {
			return
		}
	}
}

func (p *phpEndpoint) Close() {
	if p.cmd != nil {
		_ = p.Kill()
	}
	close(p.stop)
	<-p.stopped
	p.Sync()
	_ = p.f.Close()
}

// waitListening waits until addr accepts a connection.
func waitListening(addr string, exited <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
	n  int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// goEndpoint is the same endpoint in this process (-endpoint go). It holds
// its address across Kill and Restart: the listener is closed and bound
// again on the same port.
type goEndpoint struct {
	t    *tracker
	addr string
	slow atomic.Int64 // nanoseconds

	mu     sync.Mutex
	srv    *http.Server
	served chan struct{}
}

func startGo(t *tracker) (*goEndpoint, error) {
	g := &goEndpoint{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g.addr = ln.Addr().String()
	g.serve(ln)
	return g, nil
}

func (g *goEndpoint) serve(ln net.Listener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.srv = &http.Server{Handler: http.HandlerFunc(g.handle), ReadHeaderTimeout: 10 * time.Second}
	g.served = make(chan struct{})
	srv, served := g.srv, g.served
	go func() { _ = srv.Serve(ln); close(served) }()
}

type wireEvent struct {
	Type  string `json:"type"`
	FD    int64  `json:"fd"`
	Seq   int64  `json:"seq"`
	Query string `json:"query"`
}

func (g *goEndpoint) handle(w http.ResponseWriter, r *http.Request) {
	var batch struct {
		Events []wireEvent `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if d := time.Duration(g.slow.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done(): // killed meanwhile: no answer, nothing recorded
			return
		}
	}
	for _, e := range batch.Events {
		id := -1
		if e.Type == "open" {
			if q, err := url.ParseQuery(e.Query); err == nil {
				if n, err := strconv.Atoi(q.Get("soak")); err == nil {
					id = n
				}
			}
		}
		if len(e.Type) > 0 {
			g.t.event(e.Type[0], e.FD, e.Seq, id)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *goEndpoint) URL() string { return "http://" + g.addr + "/" }

func (g *goEndpoint) Kill() error {
	g.mu.Lock()
	srv, served := g.srv, g.served
	g.srv = nil
	g.mu.Unlock()
	if srv == nil {
		return errors.New("go endpoint not running")
	}
	err := srv.Close()
	<-served
	return err
}

func (g *goEndpoint) Restart() error {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			g.serve(ln)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (g *goEndpoint) SetSlow(d time.Duration) error { g.slow.Store(int64(d)); return nil }
func (g *goEndpoint) Sync()                         {}
func (g *goEndpoint) Close() {
	g.mu.Lock()
	running := g.srv != nil
	g.mu.Unlock()
	if running {
		_ = g.Kill()
	}
}

// Package redistest starts real Redis servers for tests: a single
// redis-server, and a Redis Cluster of three masters made with
// redis-cli --cluster create. Each server runs in the test's temporary
// directory on a free port, without persistence, and is stopped by
// t.Cleanup.
//
// When redis-server or redis-cli is missing the test is skipped, except
// when CI=true: then it fails with a message that says what to install
// (make deps installs both).
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 10 * time.Second

// Require skips t, or fails it when CI=true, unless the commands are on
// the PATH.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			msg := fmt.Sprintf("%s is not installed (Debian: apt-get install redis-server redis-tools; or make deps)", c)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// Prefix returns a key prefix no other test uses: "t" and random hex.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Start starts a single redis-server on a free port.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t, "redis-server", "redis-cli")
	return startServer(t, t.TempDir())
}

func startServer(t testing.TB, dir string, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, dir: dir}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		s.args = append([]string{
			"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no",
			"--logfile", "", "--daemonize", "no",
		}, extra...)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 2 { // the port was taken between freePort and the bind
			t.Fatalf("redistest: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

// start runs redis-server with s.args and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	s.cmd, s.done, s.log = cmd, done, log
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start; its log: %s", s.Port, s.logText())
		default:
		}
		if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.Port), "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on port %d did not answer within %v; its log: %s", s.Port, startTimeout, s.logText())
}

func (s *Server) logText() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Stop kills the server and waits for it to exit; stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): its connections stay open and
// nothing answers, as with a machine that hangs. Resume undoes it; the
// test's cleanup resumes it before stopping it.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGSTOP)
		s.t.Cleanup(s.Resume)
	}
}

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Restart stops the server and starts it again on the same port, empty
// (nothing is persisted). pause is how long it stays down.
func (s *Server) Restart(pause time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(pause)
	if err := s.StartAgain(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// StartAgain starts a stopped server on its port.
func (s *Server) StartAgain() error {
	var err error
	for range 50 { // the old listener's port may take a moment to be free
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// CLI runs redis-cli against the server and returns its output.
func (s *Server) CLI(args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(s.Port)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	Servers []*Server
}

// URL names the cluster: the first node's address and the others as addr
// parameters (rueidis.ParseURL's form).
func (c *Cluster) URL() string {
	u := c.Servers[0].URL()
	for i, s := range c.Servers[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + s.Addr()
	}
	return u
}

// StartCluster starts three redis-server processes with cluster mode on,
// joins them with redis-cli --cluster create, and waits until every node
// says cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t, "redis-server", "redis-cli")
	c := &Cluster{}
	root := t.TempDir()
	for i := range 3 {
		dir := filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.Servers = append(c.Servers, startServer(t, dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Servers {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Servers {
		for {
			out, _ := s.CLI("cluster", "info")
			if clusterOK(out) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: node %s: cluster not ok after 20s:\n%s", s.Addr(), out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// ServerOf returns the master that holds the slot of key (a key or a
// sharded channel), after CLUSTER KEYSLOT and CLUSTER NODES.
func (c *Cluster) ServerOf(key string) (*Server, error) {
	out, err := c.Servers[0].CLI("cluster", "keyslot", key)
	if err != nil {
		return nil, fmt.Errorf("redistest: cluster keyslot: %w: %s", err, out)
	}
	slot, err := strconv.Atoi(out)
	if err != nil {
		return nil, fmt.Errorf("redistest: cluster keyslot: %q", out)
	}
	nodes, err := c.Servers[0].CLI("cluster", "nodes")
	if err != nil {
		return nil, fmt.Errorf("redistest: cluster nodes: %w: %s", err, nodes)
	}
	// <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slots>...
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			from, err1 := strconv.Atoi(lo)
			to, err2 := strconv.Atoi(hi)
			if hi == "" {
				to, err2 = from, nil
			}
			if err1 != nil || err2 != nil || slot < from || slot > to {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, s := range c.Servers {
				if s.Addr() == addr {
					return s, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("redistest: no master holds slot %d of %q:\n%s", slot, key, nodes)
}

func clusterOK(info string) bool {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "cluster_state:ok" {
			return true
		}
	}
	return false
}

// freePort returns a TCP port that was free a moment ago. Cluster mode
// also uses port+10000 (the cluster bus), so that one must be free too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("redistest: no free port pair")
	return 0
}

// Sentinel is a redis-server in sentinel mode that watches one master.
type Sentinel struct {
	*Server
	Master *Server
	Name   string // the master set's name
}

// URL is the sentinel's URL with the master set, as WSBRIDGE_REDIS_URL
// takes it.
func (s *Sentinel) URL() string { return "redis://" + s.Addr() + "?master_set=" + s.Name }

// StartSentinel starts a master and a sentinel that watches it.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	master := Start(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	const name = "wsbridge"
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\n", name, master.Port, name)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: dir}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		s.args = []string{conf, "--sentinel", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", dir,
			"--protected-mode", "no", "--logfile", "", "--daemonize", "no"}
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("redistest: sentinel: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return &Sentinel{Server: s, Master: master, Name: name}
}

// Kind is a kind of Redis a cluster runs on, for tests that run on each.
type Kind struct {
	Name  string
	Start func(t testing.TB) string // starts it and returns its WSBRIDGE_REDIS_URL
}

// Kinds are a single Redis and a 3-master Redis Cluster.
var Kinds = []Kind{
	{"redis", func(t testing.TB) string { return Start(t).URL() }},
	{"redis cluster", func(t testing.TB) string { return StartCluster(t).URL() }},
}

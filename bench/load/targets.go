package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// A target is one server under test, run as a process of its own so that
// its CPU time and RSS can be read from /proc. The same clients connect to
// each, one target after the other, with the same payloads.
type target interface {
	name() string
	// start runs the server; it returns once it accepts connections.
	start(ctx context.Context, o *options, dir string) error
	// pids are the server's processes (one per node of a wsbridge
	// cluster); urls the WebSocket URLs the clients connect to, one per
	// node, o.n clients each.
	pids() []int
	urls() []string
	proto() string // the clients' protocol: raw or centrifugo
	// prepare runs once every client is connected (wsbridge joins its fds
	// to the groups).
	prepare(ctx context.Context, o *options) error
	// publish sends payload to every connection (group < 0) or to the
	// connections of one group; it returns when the server has taken it.
	publish(group int, payload []byte) error
	stop()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListen waits until addr accepts TCP connections or the process exits.
func waitListen(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited before it listened on %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listens on %s after 30 s", addr)
}

// proc is a server process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

func startProc(dir, name, bin string, args []string, env []string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: logf}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and, after 10 s, SIGKILL.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	_ = p.log.Close()
}

// ---- wsbridge ----

// wsbridgeTarget is one wsbridge process, or with -nodes K a cluster of K
// (WSBRIDGE_REDIS_URL) on one redis-server, started here unless -redis
// names one. Broadcasts and pushes go through the first node's RPC.
// wsbridge-base is always one node.
type wsbridgeTarget struct {
	base  bool // wsbridge-base: the -wsbridge-base binary, one node
	nodes []*wsNode
	tok   string
	redis *proc   // the redis-server started for the cluster, if any
	all   []int64 // every connection's fd (of every node), for pushes
}

// wsNode is one wsbridge process.
type wsNode struct {
	p                *proc
	wsAddr, rpc, adm string
	cl               *rpc.Client
}

func (t *wsbridgeTarget) name() string {
	if t.base {
		return "wsbridge-base"
	}
	return "wsbridge"
}
func (t *wsbridgeTarget) proto() string { return "raw" }

func (t *wsbridgeTarget) pids() []int {
	var p []int
	for _, n := range t.nodes {
		p = append(p, n.p.pid())
	}
	return p
}

func (t *wsbridgeTarget) urls() []string {
	var u []string
	for _, n := range t.nodes {
		u = append(u, "ws://"+n.wsAddr+"/")
	}
	return u
}

func (t *wsbridgeTarget) start(ctx context.Context, o *options, dir string) error {
	bin := o.wsbridgeBin
	if t.base {
		bin = o.wsbridgeBase
		if bin == "" {
			return fmt.Errorf("wsbridge-base: no binary (-wsbridge-base)")
		}
	}
	if bin == "" {
		bin = filepath.Join(dir, "wsbridge")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/wsbridge")
		cmd.Dir = bench.ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/wsbridge: %w\n%s", err, out)
		}
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	t.tok = hex.EncodeToString(tok)
	env := o.wsbridgeEnv
	if o.nodes > 1 && !t.base {
		redisURL := o.redisURL
		if redisURL == "" {
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			host, port, _ := net.SplitHostPort(addr)
			rdir := filepath.Join(dir, "redis")
			if err := os.MkdirAll(rdir, 0o755); err != nil {
				return err
			}
			if t.redis, err = startProc(dir, "redis", o.redisBin, []string{"--port", port, "--bind", host, "--save", "", "--appendonly", "no", "--dir", rdir}, nil); err != nil {
				return fmt.Errorf("%w (Debian: apt-get install redis-server)", err)
			}
			if err := waitListen(ctx, addr, t.redis.exited); err != nil {
				return err
			}
			redisURL = "redis://" + addr
		}
		prefix := make([]byte, 4)
		_, _ = rand.Read(prefix)
		// A prefix of its own: a shared redis-server keeps no state of an earlier run for this one.
		env = append(slices.Clone(env), "WSBRIDGE_REDIS_URL="+redisURL, "WSBRIDGE_REDIS_PREFIX=load-"+hex.EncodeToString(prefix))
	}
	nodes := o.nodes
	if t.base {
		nodes = 1 // parseFlags allows -nodes > 1 with target wsbridge alone
	}
	for i := range nodes {
		n := &wsNode{}
		var err error
		for _, a := range []*string{&n.wsAddr, &n.rpc, &n.adm} {
			if *a, err = freeAddr(); err != nil {
				return err
			}
		}
		args := []string{
			"-ws-addr", n.wsAddr, "-rpc-addr", "tcp://" + n.rpc, "-admin-addr", n.adm, "-admin-token", t.tok,
			"-max-connections", strconv.Itoa(o.n + 1000), "-log-level", "warn",
		}
		logName := t.name()
		if nodes > 1 {
			logName = fmt.Sprintf("%s-%d", t.name(), i+1)
		}
		if n.p, err = startProc(dir, logName, bin, args, env); err != nil {
			return err
		}
		t.nodes = append(t.nodes, n)
		for _, a := range []string{n.wsAddr, n.rpc, n.adm} {
			if err := waitListen(ctx, a, n.p.exited); err != nil {
				return err
			}
		}
		if n.cl, err = rpc.Dial("tcp://"+n.rpc, rpc.JSON, 5*time.Second); err != nil {
			return err
		}
	}
	// The admin addresses and token, to look into a run while it holds
	// (/metrics; pprof with -wsbridge-env WSBRIDGE_ADMIN_PPROF=true).
	var adm strings.Builder
	for i, n := range t.nodes {
		fmt.Fprintf(&adm, "node %d pid %d http://%s token %s\n", i+1, n.p.pid(), n.adm, t.tok)
	}
	return os.WriteFile(filepath.Join(dir, t.name()+"-admin.txt"), []byte(adm.String()), 0o600)
}

// prepare lists the connections' fds (for pushes) and joins them to the
// groups, fd order round-robin.
func (t *wsbridgeTarget) prepare(ctx context.Context, o *options) error {
	t.all = t.all[:0]
	for i, n := range t.nodes {
		fds, err := n.fds(ctx, t.tok)
		if err != nil {
			return err
		}
		if len(fds) != o.n {
			return fmt.Errorf("node %d: the admin API lists %d connections, want %d", i+1, len(fds), o.n)
		}
		t.all = append(t.all, fds...)
	}
	fds := t.all
	if o.groups == 0 {
		return nil
	}
	for i, fd := range fds {
		var ok bool
		if err := t.nodes[0].cl.Call("Sender.Join", &sender.GroupArgs{FD: fd, Group: "g" + strconv.Itoa(i%o.groups)}, &ok); err != nil || !ok {
			return fmt.Errorf("join fd %d: %v %v", fd, ok, err)
		}
	}
	return nil
}

// fds lists the node's open connections through its admin API.
func (t *wsNode) fds(ctx context.Context, tok string) ([]int64, error) {
	var fds []int64
	after := int64(0)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/connections?after=%d&limit=1000", t.adm, after), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Connections []struct {
				FD int64 `json:"fd"`
			} `json:"connections"`
			NextAfter *int64 `json:"next_after"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET /v1/connections: %w", err)
		}
		for _, c := range page.Connections {
			fds = append(fds, c.FD)
		}
		if page.NextAfter == nil {
			return fds, nil
		}
		after = *page.NextAfter
	}
}

func (t *wsbridgeTarget) publish(group int, payload []byte) error {
	var n int
	if group < 0 {
		return t.nodes[0].cl.Call("Sender.Broadcast", &sender.BroadcastArgs{Message: sender.Message{Data: string(payload)}}, &n)
	}
	return t.nodes[0].cl.Call("Sender.PushGroup", &sender.PushGroupArgs{Group: "g" + strconv.Itoa(group), Message: sender.Message{Data: string(payload)}}, &n)
}

func (t *wsbridgeTarget) stop() {
	for _, n := range t.nodes {
		if n.cl != nil {
			_ = n.cl.Close()
		}
		n.p.stop()
	}
	t.redis.stop()
}

// ---- Centrifugo ----

type centrifugoTarget struct {
	p          *proc
	addr, key  string
	httpClient *http.Client
}

func (t *centrifugoTarget) name() string { return "centrifugo" }
func (t *centrifugoTarget) pids() []int  { return []int{t.p.pid()} }
func (t *centrifugoTarget) urls() []string {
	return []string{"ws://" + t.addr + "/connection/websocket"}
}
func (t *centrifugoTarget) proto() string { return "centrifugo" }

func (t *centrifugoTarget) start(ctx context.Context, o *options, dir string) error {
	if o.centrifugoBin == "" {
		return fmt.Errorf("centrifugo: no binary (-centrifugo; bench/centrifugo.sh installs one)")
	}
	var err error
	if t.addr, err = freeAddr(); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(t.addr)
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	t.key = hex.EncodeToString(k)
	// Anonymous clients that may subscribe to any channel without a
	// namespace; the HTTP API with a key. Everything else is Centrifugo's
	// default (no write delay, its default per-connection queue).
	cfg := map[string]any{
		"http_server": map[string]any{"address": host, "port": port},
		"client":      map[string]any{"insecure": true, "allowed_origins": []string{"*"}},
		"http_api":    map[string]any{"key": t.key},
		"channel":     map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true}},
		"log":         map[string]any{"level": "warn"},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	if t.p, err = startProc(dir, "centrifugo", o.centrifugoBin, []string{"--config", path}, nil); err != nil {
		return err
	}
	t.httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	return waitListen(ctx, t.addr, t.p.exited)
}

func (t *centrifugoTarget) prepare(context.Context, *options) error { return nil }

func (t *centrifugoTarget) publish(group int, payload []byte) error {
	ch := "bench"
	if group >= 0 {
		ch = "g" + strconv.Itoa(group)
	}
	body, _ := json.Marshal(map[string]any{"channel": ch, "data": json.RawMessage(payload)})
	req, _ := http.NewRequest(http.MethodPost, "http://"+t.addr+"/api/publish", bytes.NewReader(body))
	req.Header.Set("X-API-Key", t.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || bytes.Contains(rb, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %s %s", resp.Status, rb)
	}
	return nil
}

func (t *centrifugoTarget) stop() { t.p.stop() }

// ---- the naive gorilla server ----

type gorillaTarget struct {
	floor      bool // the write floor: serve-gorilla -floor
	p          *proc
	addr       string
	httpClient *http.Client
}

func (t *gorillaTarget) name() string {
	if t.floor {
		return "floor"
	}
	return "gorilla"
}
func (t *gorillaTarget) pids() []int                             { return []int{t.p.pid()} }
func (t *gorillaTarget) urls() []string                          { return []string{"ws://" + t.addr + "/"} }
func (t *gorillaTarget) proto() string                           { return "raw" }
func (t *gorillaTarget) prepare(context.Context, *options) error { return nil }

func (t *gorillaTarget) start(ctx context.Context, o *options, dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if t.addr, err = freeAddr(); err != nil {
		return err
	}
	args := []string{"serve-gorilla", "-addr", t.addr}
	if t.floor {
		args = append(args, "-floor")
	}
	if t.p, err = startProc(dir, t.name(), self, args, nil); err != nil {
		return err
	}
	t.httpClient = &http.Client{Timeout: 30 * time.Second}
	return waitListen(ctx, t.addr, t.p.exited)
}

func (t *gorillaTarget) publish(group int, payload []byte) error {
	u := "http://" + t.addr + "/publish"
	if group >= 0 {
		u += "?group=" + strconv.Itoa(group)
	}
	resp, err := t.httpClient.Post(u, "application/json", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("gorilla publish: %s", resp.Status)
	}
	return nil
}

func (t *gorillaTarget) stop() { t.p.stop() }

func newTarget(name string) (target, error) {
	switch strings.TrimSpace(name) {
	case "wsbridge":
		return &wsbridgeTarget{}, nil
	case "centrifugo":
		return &centrifugoTarget{}, nil
	case "gorilla":
		return &gorillaTarget{}, nil
	case "wsbridge-base":
		return &wsbridgeTarget{base: true}, nil
	case "floor":
		return &gorillaTarget{floor: true}, nil
	}
	return nil, fmt.Errorf("unknown target %q (wsbridge, wsbridge-base, centrifugo, gorilla, floor)", name)
}

// readLines feeds r's lines to f until EOF.
func readLines(r io.Reader, f func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wsbridge/wsbridge/internal/testutil"
)

// Bounds of the browser test; as the others, they turn hangs into failures.
const (
	browserTimeout = 3 * time.Minute  // the whole conversation, the browser's start included
	pageTimeout    = 30 * time.Second // one page shows what it waits for
)

// TestBrowserChat runs examples/chat as a user would: the real binary with
// events on, the example's PHP front controller under `php -S`, and headless
// Chromium with two tabs on the chat page. Alice's message goes from her
// browser to the bridge, to PHP as an event, back to the bridge as a group
// push and to Bob's browser, which must show it. Bob leaving shows in
// Alice's tab through the close event. Screenshots of both tabs go to
// tests/artifacts/.
func TestBrowserChat(t *testing.T) {
	chromium := needTool(t, "chromium", "/usr/bin/chromium", "chromium", "chromium-browser")
	php := needTool(t, "php-cli", "php")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ensureAutoload(t, root)

	const secret = "browser-test-secret"
	phpAddr := freeAddr(t)
	origin := "http://" + phpAddr
	bridge := startDefault(t, []string{
		"WSBRIDGE_EVENTS_URL=" + origin + "/wsbridge/events",
		"WSBRIDGE_EVENTS_SECRET=" + secret,
		"WSBRIDGE_ALLOWED_ORIGINS=" + origin, // the page is served from another port than the bridge's
	})
	rpcAddr, _ := bridge.waitFor("rpc listening")["addr"].(string)
	public := filepath.Join(root, "examples", "chat", "public")
	app := startPHPServer(t, php, phpAddr, public, filepath.Join(public, "index.php"),
		"WSBRIDGE_RPC_ADDR="+rpcAddr,
		"WSBRIDGE_EVENTS_SECRET="+secret,
		"CHAT_STATE_DIR="+t.TempDir(),
	)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("wsbridge's log:\n%s", bridge.log())
			t.Logf("php -S log:\n%s", app.log)
		}
	})

	b := newBrowser(t, chromium)
	page := func(name string) string {
		return origin + "/?" + url.Values{"ws": {"ws://" + bridge.addr + "/"}, "name": {name}}.Encode()
	}
	alice := b.tab("alice", page("alice"))
	alice.waitFor("ready", `document.getElementById('status').dataset.state === 'ready'`)
	bob := b.tab("bob", page("bob"))
	bob.waitFor("ready", `document.getElementById('status').dataset.state === 'ready'`)
	alice.waitFor(`the notice "bob joined"`, hasLine("li.notice", "bob joined"))

	// Not ASCII, and markup that the page must show as text.
	const text = "Hello Bob, ça va? <b>not bold</b>"
	alice.do("send a message", chromedp.SendKeys(chromedp.ID("input"), text), chromedp.Click(chromedp.ID("send")))
	bob.waitFor("alice's message", hasMessage("li.msg:not(.mine)", "alice", text))
	alice.waitFor("her own message, back from PHP", hasMessage("li.msg.mine", "alice", text))
	for _, p := range []*tab{alice, bob} {
		t.Logf("%s's tab shows:\n\t%s", p.name, strings.Join(p.lines(), "\n\t"))
		p.screenshot("chat-" + p.name + ".png")
	}

	bob.close()
	alice.waitFor(`the notice "bob left"`, hasLine("li.notice", "bob left"))
	alice.screenshot("chat-alice-after-bob-left.png")

	b.close()
	bridge.stop() // after delivering the last close events
	app.kill()
	app.checkLog()
}

// needTool returns the path of the first of candidates (absolute paths, or
// names looked up in PATH) that exists. Without one, the test fails when CI
// is "true" and is skipped otherwise.
func needTool(t *testing.T, pkg string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return c
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("none of %s is installed (Debian: apt-get install %s; make test installs it)", strings.Join(candidates, ", "), pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// ensureAutoload writes php-client's composer autoloader, which the example
// requires, when it is missing (make test writes it before go-test).
func ensureAutoload(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, "php-client")
	if _, err := os.Stat(filepath.Join(dir, "vendor", "autoload.php")); err == nil {
		return
	}
	composer := needTool(t, "composer", "composer")
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, composer, "dump-autoload", "--dev", "--quiet", "--no-interaction")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("composer dump-autoload --dev in %s: %v\n%s", dir, err, out)
	}
}

// freeAddr returns a loopback host:port that was free a moment ago, for a
// server that cannot listen on port 0 and report its port (php -S).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// phpServer is a running `php -S`.
type phpServer struct {
	tb     testing.TB
	cmd    *exec.Cmd
	log    *testutil.LogBuffer
	exited chan struct{}
}

// startPHPServer runs `php -S addr -t docroot router` with env (on top of
// environ()), PHP errors logged to its stderr, and waits until it answers
// GET /. It is killed at cleanup if it still runs.
func startPHPServer(tb testing.TB, php, addr, docroot, router string, env ...string) *phpServer {
	tb.Helper()
	s := &phpServer{tb: tb, log: &testutil.LogBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(php, "-d", "error_reporting=-1", "-d", "display_errors=0", "-d", "log_errors=1",
		"-S", addr, "-t", docroot, router)
	s.cmd.Env = environ(env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its group is killed, should it fork
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start %s -S: %v", php, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	tb.Cleanup(s.kill)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
			tb.Fatalf("php -S answers GET / with %s; its log:\n%s", resp.Status, s.log)
		}
		select {
		case <-s.exited:
			tb.Fatalf("php -S exited (%v) before answering; its log:\n%s", s.cmd.ProcessState, s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("php -S does not answer GET / within %s (%v); its log:\n%s", startTimeout, err, s.log)
		}
	}
}

// kill ends the server's process group and waits for it.
func (s *phpServer) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(exitTimeout):
		s.tb.Errorf("php -S (pid %d) still runs after SIGKILL", s.cmd.Process.Pid)
	}
}

var (
	// phpRequest is a request line of the log, as the example's router
	// writes them: "[Wed Nov 25 07:08:54 2026] 127.0.0.1:40312 [204]: POST /wsbridge/events".
	phpRequest = regexp.MustCompile(`\[(\d{3})\]: ([A-Z]+) (\S+)`)
	// phpProblem is what PHP reports: its errors, and what the events
	// handler (a refused request, a controller's exception) and the
	// example's router write with error_log.
	phpProblem = regexp.MustCompile(`PHP (Warning|Notice|Deprecated|Fatal error|Parse error|Stack trace)|Uncaught|wsbridge: |wsbridge chat: `)
)

// checkLog requires that PHP reported nothing (no warning, no exception
// from the controller, no refused request) and answered every event
// request with 204. (The test logs the whole log when it fails.)
func (s *phpServer) checkLog() {
	s.tb.Helper()
	log := s.log.String()
	events := 0
	for _, line := range strings.Split(log, "\n") {
		if phpProblem.MatchString(line) {
			s.tb.Errorf("PHP reported: %s", line)
		}
		m := phpRequest.FindStringSubmatch(line)
		if m == nil || m[3] != "/wsbridge/events" {
			continue
		}
		events++
		if m[1] != "204" {
			s.tb.Errorf("the events endpoint answered %s: %s", m[1], line)
		}
	}
	if events == 0 {
		s.tb.Errorf("php -S logged no request to /wsbridge/events")
	}
}

// browser is a headless Chromium with a fresh profile.
type browser struct {
	t      *testing.T
	log    *testutil.LogBuffer
	ctx    context.Context // the first tab's: the browser runs while it does
	cancel context.CancelFunc
	tabs   []*tab
}

// newBrowser starts nothing yet: the first tab starts the browser. It is
// closed at cleanup, after screenshots of every open tab if the test failed.
func newBrowser(t *testing.T, path string) *browser {
	b := &browser{t: t, log: &testutil.LogBuffer{}}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no user namespaces for the sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// This machine's network is closed: the browser must not try to
		// reach Google's services, or connections fail and stall pages.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 600),
		chromedp.CombinedOutput(b.log),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	timeoutCtx, cancelTimeout := context.WithTimeout(allocCtx, browserTimeout)
	ctx, cancelFirst := chromedp.NewContext(timeoutCtx)
	b.ctx = ctx
	b.cancel = sync.OnceFunc(func() {
		for _, p := range b.tabs {
			p.close()
		}
		cancelFirst() // closes the browser and waits for it
		cancelTimeout()
		cancelAlloc()
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range b.tabs {
				if !p.closed {
					t.Logf("%s's tab shows:\n\t%s", p.name, strings.Join(p.lines(), "\n\t"))
					p.screenshot("chat-" + p.name + "-failed.png")
				}
			}
			t.Logf("chromium's output:\n%s", b.log)
		}
		b.cancel()
	})
	return b
}

// close closes the browser and waits until its process has exited.
func (b *browser) close() { b.cancel() }

// tab is one page of the browser.
type tab struct {
	b      *browser
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
}

// tab opens pageURL in a new tab (the first one starts the browser).
func (b *browser) tab(name, pageURL string) *tab {
	b.t.Helper()
	p := &tab{b: b, name: name}
	if len(b.tabs) == 0 {
		p.ctx, p.cancel = b.ctx, func() {} // the browser's cancel closes it
	} else {
		p.ctx, p.cancel = chromedp.NewContext(b.ctx)
	}
	b.tabs = append(b.tabs, p)
	// The first run on a context starts the browser or opens the tab,
	// which live as long as the context it is given: not a shorter one.
	if err := chromedp.Do(p.ctx); err != nil {
		b.t.Fatalf("%s's tab: start: %v", name, err)
	}
	p.do("open "+pageURL, chromedp.Navigate(pageURL))
	return p
}

// do runs actions in the tab within pageTimeout.
func (p *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.b.t.Fatalf("%s's tab: %s: %v", p.name, what, err)
	}
}

// waitFor waits until the JavaScript expression cond is true in the tab.
func (p *tab) waitFor(what, cond string) {
	p.b.t.Helper()
	// An interval, not animation frames: a tab in the background gets none.
	p.do("wait for "+what, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(pageTimeout)))
}

// lines returns what the tab shows: its status line, then each line of the
// chat as "class: text".
func (p *tab) lines() []string {
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
		'status: ' + document.getElementById('status').textContent,
		...[...document.querySelectorAll('#messages li')].map((li) => li.className + ': ' + li.textContent),
	]`))
	if err != nil {
		return []string{fmt.Sprintf("(cannot read the page: %v)", err)}
	}
	return lines
}

// screenshot saves a PNG of the tab's viewport as tests/artifacts/name.
func (p *tab) screenshot(name string) {
	t := p.b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("%s's tab: screenshot: %v", p.name, err)
		return
	}
	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("artifacts", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot of %s's tab: %s", p.name, abs)
}

// close closes the tab (its WebSocket goes with it).
func (p *tab) close() {
	if !p.closed {
		p.closed = true
		p.cancel()
	}
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// hasLine is a condition: a line of the chat matching selector reads text.
func hasLine(selector, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages ' + %s)].some((li) => li.textContent === %s)`,
		jsString(selector), jsString(text))
}

// hasMessage is a condition: a chat message matching selector is from name
// and reads text.
func hasMessage(selector, name, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages ' + %s)].some((li) =>
		li.querySelector('.name')?.textContent === %s && li.querySelector('.text')?.textContent === %s)`,
		jsString(selector), jsString(name), jsString(text))
}

package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/rpc"
)

// Markup in every place an operator sees data from clients or the
// application; the console must show it as text and run none of it.
const (
	xssHeader = `<img src=x onerror="window.__xss='header'">`
	xssQuery  = `<svg onload="window.__xss='query'">`
	xssGroup  = `<script>window.__xss='group'</script>room`
	xssUser   = `<b onmouseover="window.__xss='user'">alice</b>`
	xssBody   = `<img src=y onerror="window.__xss='body'">hello`
)

// TestBrowserConsole drives the operator console (/ui/) of the real binary
// in headless Chromium: a wrong token is refused; the overview follows a
// client that connects and pushes that flow; a connection's page shows its
// handshake and, in its trace, a push the test made; a push from the
// console reaches the client; a disconnect from the console closes it.
// Markup in a header, the query, a group name, a user id and a message
// body shows as text. Screenshots go to tests/artifacts/console-*.png
// (docs/CONSOLE.md shows them).
func TestBrowserConsole(t *testing.T) {
	chromium := needTool(t, "chromium", "/usr/bin/chromium", "chromium", "chromium-browser")
	p, base := startAdmin(t, "-workers", "2")
	rpcAddr, _ := p.waitFor("rpc listening")["addr"].(string)
	rc, err := rpc.Dial(rpcAddr, rpc.JSON, readTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var rpcMu sync.Mutex
	call := func(method string, args map[string]any) {
		rpcMu.Lock()
		defer rpcMu.Unlock()
		var ok bool
		if err := rc.Call(method, args, &ok); err != nil || !ok {
			t.Errorf("%s(%v) = %v, %v", method, args, ok, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("wsbridge's log:\n%s", p.log())
		}
	})

	// Alice: a client with markup in her handshake, her user id and her
	// group; her messages are collected.
	alice, _, err := dialer.Dial("ws://"+p.addr+"/?who="+strings.NewReplacer("<", "%3C", ">", "%3E", " ", "%20", "=", "%3D", "'", "%27", "\"", "%22").Replace(xssQuery),
		http.Header{"X-Note": {xssHeader}})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	aliceFD := onlyFD(t, base)
	call("Sender.Bind", map[string]any{"fd": aliceFD, "user": xssUser})
	call("Sender.Join", map[string]any{"fd": aliceFD, "group": xssGroup})
	got := make(chan string, 1000)
	closed := make(chan int, 1)
	go func() {
		for {
			_, data, err := alice.ReadMessage()
			if err != nil {
				code := 0
				if ce, ok := err.(*websocket.CloseError); ok {
					code = ce.Code
				}
				closed <- code
				return
			}
			got <- string(data)
		}
	}()
	expect := func(what, want string) {
		t.Helper()
		deadline := time.After(readTimeout)
		for {
			select {
			case m := <-got:
				if m == want {
					return
				}
			case <-deadline:
				t.Fatalf("alice did not receive %s (%q)", what, want)
			}
		}
	}

	b := newBrowser(t, chromium)
	ui := b.tab("console", base+"/ui/")
	ui.do("viewport", chromedp.EmulateViewport(1280, 800))
	ui.waitFor("the login form", `!document.getElementById('login').hidden`)

	// A wrong token is refused and never kept.
	ui.js("log in with a wrong token", `document.getElementById('token').value = 'not-the-token-0123456789';
		document.getElementById('login-form').requestSubmit()`)
	ui.waitFor("the refusal", `document.getElementById('login-error').textContent.includes('Wrong token')`)
	ui.waitFor("no token kept", `sessionStorage.length === 0 && document.getElementById('nav').hidden`)
	ui.screenshot("console-login-refused.png")

	ui.js("log in", `document.getElementById('token').value = '`+adminToken+`';
		document.getElementById('login-form').requestSubmit()`)
	ui.waitFor("the overview", `!document.getElementById('nav').hidden && document.querySelector('[data-metric=connections] .value') !== null`)
	ui.waitFor("the live badge", `document.getElementById('live').dataset.state === 'live'`)
	ui.waitFor("one connection", metricIs("connections", "1"))
	ui.waitFor("the token in this tab only", `sessionStorage.getItem('wsbridge.admin.token') === '`+adminToken+`' && !location.href.includes('`+adminToken+`') && document.cookie === ''`)

	// Bob connects and talks; pushes flow to him until the overview shows them.
	bob, _, err := dialer.Dial("ws://"+p.addr+"/?who=bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	go func() {
		for {
			if _, _, err := bob.ReadMessage(); err != nil {
				return
			}
		}
	}()
	bobFD := otherFD(t, base, aliceFD)
	ui.waitFor("two connections", metricIs("connections", "2"))
	stop := make(chan struct{})
	flowDone := make(chan struct{})
	go func() {
		defer close(flowDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			call("Sender.Push", map[string]any{"fd": bobFD, "data": fmt.Sprint("flow ", i)})
			_ = bob.WriteMessage(websocket.TextMessage, []byte("hi"))
		}
	}()
	ui.waitFor("pushes per second", metricAbove("pushes", 0))
	ui.waitFor("messages in per second", metricAbove("messages_in", 0))
	time.Sleep(3 * time.Second) // a few samples for the sparklines
	ui.fullScreenshot("console-overview.png")
	close(stop)
	<-flowDone

	// Alice's page: her handshake as text, and her trace with a push.
	ui.js("open alice's page", fmt.Sprintf(`location.hash = '#/connection/%d'`, aliceFD))
	ui.waitFor("her headers", `document.getElementById('page').textContent.includes(`+jsString(xssHeader)+`)`)
	ui.waitFor("the trace recording", `document.getElementById('page').textContent.includes('Recording while this page is open')`)
	call("Sender.Push", map[string]any{"fd": aliceFD, "data": xssBody})
	expect("the traced push", xssBody)
	ui.waitFor("the push in her trace", `(document.querySelector('[data-trace=pushes]') || {textContent: ''}).textContent.includes(`+jsString(xssBody)+`)
		&& document.querySelector('[data-trace=out]').textContent.includes('written')`)
	for _, s := range []string{xssQuery, xssUser, xssGroup} {
		ui.waitFor("text "+s, `document.getElementById('page').textContent.includes(`+jsString(s)+`)`)
	}
	ui.fullScreenshot("console-connection.png")
	checkNoMarkup(t, ui)

	// A push from the console reaches her.
	ui.js("push from the console", `const f = document.querySelector('#page form');
		f.querySelector('textarea').value = 'from the console';
		f.requestSubmit()`)
	expect("the console's push", "from the console")
	ui.waitFor("queued", `document.querySelector('#page .result').textContent.includes('Queued')`)

	// Groups and users, markup as text.
	ui.js("open the groups", `location.hash = '#/groups'`)
	ui.waitFor("her group", `document.getElementById('page').textContent.includes(`+jsString(xssGroup)+`)`)
	ui.screenshot("console-groups.png")
	ui.js("open the user", `location.hash = '#/users/' + encodeURIComponent(`+jsString(xssUser)+`)`)
	ui.waitFor("her fd", fmt.Sprintf(`document.querySelector('#page a[href="#/connection/%d"]') !== null`, aliceFD))
	checkNoMarkup(t, ui)

	// Disconnect from the actions page with a code of our own.
	ui.js("open the actions", `location.hash = '#/actions'`)
	ui.waitFor("the disconnect form", `document.querySelector('[data-action=disconnect] form') !== null`)
	ui.js("disconnect alice", fmt.Sprintf(`const f = document.querySelector('[data-action=disconnect] form');
		f.querySelector('input[name=fd]').value = '%d';
		f.querySelector('input[name=code]').value = '4001';
		f.querySelector('input[name=reason]').value = 'bye from the console';
		f.requestSubmit()`, aliceFD))
	select {
	case code := <-closed:
		if code != 4001 {
			t.Errorf("alice closed with %d, want 4001", code)
		}
	case <-time.After(readTimeout):
		t.Fatal("the console's disconnect did not close alice")
	}
	ui.waitFor("disconnected", `document.querySelector('[data-action=disconnect] .result').textContent.includes('Disconnected')`)
	ui.fullScreenshot("console-actions.png")

	// The stream drops (the bridge restarts, as in a deploy): the page
	// says its data is stale, then, once the bridge is back on the same
	// address, reconnects with the token it kept and is live again.
	p.stop()
	ui.waitFor("the stale badge", `document.getElementById('live').dataset.state === 'stale'`)
	startAdmin(t, "-workers", "2", "-admin-addr", strings.TrimPrefix(base, "http://"))
	ui.waitFor("live again", `document.getElementById('live').dataset.state === 'live'`)
	b.close()
}

// fullScreenshot saves a PNG of the whole page as tests/artifacts/name.
func (p *tab) fullScreenshot(name string) {
	t := p.b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Errorf("%s's tab: screenshot: %v", p.name, err)
		return
	}
	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("artifacts", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s's page: tests/artifacts/%s", p.name, name)
}

// js runs a JavaScript statement in the tab.
func (p *tab) js(what, code string) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(() => {"+code+"; return true})()")); err != nil {
		p.b.t.Fatalf("%s's tab: %s: %v", p.name, what, err)
	}
}

func metricIs(id, v string) string {
	return fmt.Sprintf(`(document.querySelector('[data-metric=%s] .value') || {}).textContent === %s`, id, jsString(v))
}

func metricAbove(id string, v float64) string {
	return fmt.Sprintf(`parseFloat((document.querySelector('[data-metric=%s] .value') || {textContent: '0'}).textContent) > %v`, id, v)
}

// checkNoMarkup: none of the markup became elements or ran.
func checkNoMarkup(t *testing.T, p *tab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({xss: window.__xss || null,
		img: document.querySelectorAll('#page img').length, svg: document.querySelectorAll('#page svg:not(.spark)').length,
		script: document.querySelectorAll('#page script').length, b: document.querySelectorAll('#page b').length})`))
	if err != nil {
		t.Fatal(err)
	}
	if res != `{"xss":null,"img":0,"svg":0,"script":0,"b":0}` {
		t.Errorf("markup from the data became elements or ran: %s", res)
	}
}

// onlyFD returns the fd of the only connection.
func onlyFD(t *testing.T, base string) int64 {
	t.Helper()
	return otherFD(t, base, 0)
}

// otherFD waits for a connection other than not and returns its fd.
func otherFD(t *testing.T, base string, not int64) int64 {
	t.Helper()
	hc := adminClient()
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(readTimeout)
	for time.Now().Before(deadline) {
		_, body, err := adminCall(hc, "GET", base+"/v1/connections", "")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Connections []struct {
				FD int64 `json:"fd"`
			} `json:"connections"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		for _, c := range list.Connections {
			if c.FD != not {
				return c.FD
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no new connection listed")
	return 0
}

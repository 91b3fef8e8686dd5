package admin_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// TestConsoleFiles: the console's pages are served without the token
// (they hold no data), with a policy that runs no inline script.
func TestConsoleFiles(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	for _, c := range []struct{ path, ctype, has string }{
		{"/ui/", "text/html", `<script src="console.js"`},
		{"/ui/index.html", "text/html", "login-form"},
		{"/ui/console.js", "javascript", "sessionStorage"},
		{"/ui/console.css", "text/css", "--accent"},
	} {
		a := e.doAuth(t, "GET", c.path, "", "")
		if a.status != http.StatusOK || !strings.Contains(a.header.Get("Content-Type"), c.ctype) || !strings.Contains(string(a.body), c.has) {
			t.Errorf("GET %s: %d %s, body has %q: %v", c.path, a.status, a.header.Get("Content-Type"), c.has, strings.Contains(string(a.body), c.has))
		}
		csp := a.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || a.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: CSP %q, X-Frame-Options %q", c.path, csp, a.header.Get("X-Frame-Options"))
		}
	}
	want(t, "GET /ui/nope.js", e.doAuth(t, "GET", "/ui/nope.js", "", ""), http.StatusNotFound, sender.CodeNotFound)
	req, _ := http.NewRequest("GET", e.url+"/ui", nil)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The script never writes markup from data.
	js := string(e.doAuth(t, "GET", "/ui/console.js", "", "").body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
}

// TestAbout: build, settings and uptime, behind the token.
func TestAbout(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{
		Build:    admin.BuildInfo{Version: "v9.9.9", GoVersion: "go1.x"},
		Settings: []admin.Setting{{Name: "admin-token", Env: "WSBRIDGE_ADMIN_TOKEN", Group: "Admin", Value: "********"}},
	})
	want(t, "no token", e.doAuth(t, "GET", "/v1/about", "", ""), http.StatusUnauthorized, sender.CodeUnauthorized)
	var a admin.About
	e.do(t, "GET", "/v1/about", "").json(t, &a)
	if a.Build.Version != "v9.9.9" || len(a.Settings) != 1 || a.Settings[0].Value != "********" || a.UptimeSeconds < 0 || a.Started.IsZero() {
		t.Errorf("about: %+v", a)
	}
}

// TestTraceAPI: a trace is turned on, shows a push made through the API,
// and is turned off; bad requests are refused.
func TestTraceAPI(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	c, fd := e.dial(t, "traced")
	path := fmt.Sprintf("/v1/connections/%d/trace", fd)

	want(t, "GET before POST", e.do(t, "GET", path, ""), http.StatusNotFound, sender.CodeNotFound)
	want(t, "no token", e.doAuth(t, "POST", path, "", ""), http.StatusUnauthorized, sender.CodeUnauthorized)
	want(t, "seconds too many", e.do(t, "POST", path, `{"seconds": 601}`), http.StatusBadRequest, sender.CodeBadRequest)
	want(t, "seconds negative", e.do(t, "POST", path, `{"seconds": -1}`), http.StatusBadRequest, sender.CodeBadRequest)
	want(t, "unknown field", e.do(t, "POST", path, `{"second": 5}`), http.StatusBadRequest, sender.CodeBadRequest)
	want(t, "not open", e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/trace", fd+99), ""), http.StatusNotFound, sender.CodeNotFound)

	var on admin.TraceOn
	a := e.do(t, "POST", path, `{"seconds": 30}`)
	want(t, "POST trace", a, http.StatusOK, "")
	a.json(t, &on)
	if on.FD != fd || time.Until(on.Until) < 20*time.Second {
		t.Errorf("trace on: %+v", on)
	}
	want(t, "push", e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/push", fd), `{"data": "<script>alert(1)</script>"}`), http.StatusOK, "")
	if _, got := read(t, c); got != "<script>alert(1)</script>" {
		t.Fatalf("client read %q", got)
	}
	var tr admin.TraceAnswer
	deadline := time.Now().Add(wait)
	for len(tr.Out) == 0 && time.Now().Before(deadline) {
		e.do(t, "GET", path, "").json(t, &tr)
	}
	if len(tr.Pushes) != 1 || tr.Pushes[0].Preview != "<script>alert(1)</script>" || tr.Pushes[0].Outcome != "queued" || len(tr.Out) != 1 {
		t.Errorf("trace: %+v", tr)
	}
	if tr.Connection == nil || tr.Connection.BytesOut != 25 {
		t.Errorf("trace's connection: %+v", tr.Connection)
	}
	var about admin.About
	e.do(t, "GET", "/v1/about", "").json(t, &about)
	if len(about.Traced) != 1 || about.Traced[0] != fd {
		t.Errorf("about.traced = %v", about.Traced)
	}
	var stopped admin.TraceStopped
	e.do(t, "DELETE", path, "").json(t, &stopped)
	if !stopped.Stopped {
		t.Error("DELETE: not stopped")
	}
	e.do(t, "DELETE", path, "").json(t, &stopped)
	if stopped.Stopped {
		t.Error("second DELETE: stopped")
	}
}

// sseReader reads the events of a GET /v1/stream response.
type sseReader struct{ r *bufio.Reader }

func (s sseReader) next(t testing.TB) (event string, data []byte) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = []byte(line[len("data: "):])
		}
	}
}

// TestStream: samples arrive, carry the bridge's metrics, and follow the
// connections; the server's shutdown ends the stream.
func TestStream(t *testing.T) {
	reg := admin.NewRegistry()
	m, err := admin.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, bridge.Config{}, admin.Config{Gatherer: reg, StreamInterval: 20 * time.Millisecond})
	if err := m.Watch(admin.Sources{Hub: e.hub, Admin: e.admin}); err != nil {
		t.Fatal(err)
	}
	want(t, "no token", e.doAuth(t, "GET", "/v1/stream", "", ""), http.StatusUnauthorized, sender.CodeUnauthorized)
	want(t, "query", e.do(t, "GET", "/v1/stream?x=1", ""), http.StatusBadRequest, sender.CodeBadRequest)

	req, _ := http.NewRequest("GET", e.url+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sse := sseReader{bufio.NewReader(resp.Body)}
	connections := func() (float64, float64) {
		ev, data := sse.next(t)
		if ev != "sample" {
			t.Fatalf("event %q", ev)
		}
		var s struct {
			T      int64                `json:"t"`
			Series [][3]json.RawMessage `json:"series"`
		}
		if err := json.Unmarshal(data, &s); err != nil || s.T == 0 {
			t.Fatalf("sample %s: %v", data, err)
		}
		conns, viewers := -1.0, -1.0
		for _, x := range s.Series {
			var name string
			var v float64
			_ = json.Unmarshal(x[0], &name)
			_ = json.Unmarshal(x[2], &v)
			switch name {
			case "wsbridge_connections":
				conns = v
			case "wsbridge_console_stream_viewers":
				viewers = v
			}
		}
		return conns, viewers
	}
	if n, v := connections(); n != 0 || v != 1 {
		t.Errorf("first sample: %v connections, %v viewers; want 0, 1", n, v)
	}
	e.dial(t, "a")
	deadline := time.Now().Add(wait)
	for n, _ := connections(); n != 1; n, _ = connections() {
		if time.Now().After(deadline) {
			t.Fatal("the stream does not show the connection")
		}
	}
}

// TestStreamDropsViewerThatStopsReading: a viewer that reads nothing is
// dropped once it is StreamBuffer samples behind; the others go on.
func TestStreamDropsViewerThatStopsReading(t *testing.T) {
	// Samples of about 100 KB: the socket's buffers fill within a few.
	reg := prometheus.NewRegistry()
	fill := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsbridge_fill", Help: "test"}, []string{"n"})
	reg.MustRegister(fill)
	for i := range 2000 {
		fill.WithLabelValues(strings.Repeat("x", 20) + fmt.Sprint(i)).Set(float64(i))
	}
	e := newEnv(t, bridge.Config{}, admin.Config{Gatherer: reg, StreamInterval: time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096) // the kernel holds little for it
	}
	fmt.Fprintf(conn, "GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", token)

	deadline := time.Now().Add(wait)
	for {
		var a admin.About
		e.do(t, "GET", "/v1/about", "").json(t, &a)
		if a.Stream.Dropped == 1 && a.Stream.Viewers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer that does not read is not dropped: %+v", a.Stream)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamMaxViewers: past MaxViewers a viewer is refused with 503 and
// Retry-After.
func TestStreamMaxViewers(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{MaxViewers: 1, StreamInterval: time.Hour})
	req, _ := http.NewRequest("GET", e.url+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := e.do(t, "GET", "/v1/stream", "")
	want(t, "second viewer", a, http.StatusServiceUnavailable, sender.CodeTooManyViewers)
	if a.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

// FuzzTraceRequest: any body of POST /v1/connections/{fd}/trace gets a
// JSON answer with a status of the table, never a fault.
func FuzzTraceRequest(f *testing.F) {
	for _, s := range []string{"", "{}", `{"seconds": 5}`, `{"seconds": 0}`, `{"seconds": 1e99}`, `{"seconds": "5"}`, `[1]`, "{\"seconds\": 5}{}", "\xff"} {
		f.Add(s)
	}
	hub, err := bridge.New(bridge.Config{Logger: quietLog()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = hub.Shutdown(f.Context()) })
	srv, err := admin.New(hub, sender.NewService(hub), admin.Config{Token: token, Logger: quietLog()})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/connections/7/trace", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest && w.Code != http.StatusNotFound {
			t.Fatalf("body %q: status %d %s", body, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("body %q: answer is not JSON: %s", body, w.Body)
		}
	})
}

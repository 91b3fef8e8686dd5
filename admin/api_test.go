package admin_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
	"github.com/wsbridge/wsbridge/sender"
)

type queued struct {
	Queued bool `json:"queued"`
}

type accepted struct {
	Accepted int `json:"accepted"`
}

type disconnected struct {
	Disconnected bool `json:"disconnected"`
}

func TestProbes(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	for _, auth := range []string{"", "Bearer wrong", "Basic eDp5"} {
		a := e.doAuth(t, "GET", "/healthz", "", auth)
		var st struct {
			Status string `json:"status"`
		}
		a.json(t, &st)
		if a.status != 200 || st.Status != "ok" {
			t.Errorf("healthz with %q: %d %s", auth, a.status, a.body)
		}
		if a := e.doAuth(t, "GET", "/readyz", "", auth); a.status != 200 || !strings.Contains(string(a.body), `"ready"`) {
			t.Errorf("readyz with %q: %d %s", auth, a.status, a.body)
		}
	}
	e.admin.SetStopping()
	a := e.doAuth(t, "GET", "/readyz", "", "")
	var st struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	a.json(t, &st)
	if a.status != 503 || st.Status != "not_ready" || st.Reason != "shutting down" {
		t.Errorf("readyz while stopping: %d %s", a.status, a.body)
	}
	e.admin.SetReady() // no effect once stopping
	if a := e.doAuth(t, "GET", "/readyz", "", ""); a.status != 503 {
		t.Errorf("readyz after SetReady while stopping: %d", a.status)
	}
	if a := e.doAuth(t, "GET", "/healthz", "", ""); a.status != 200 {
		t.Errorf("healthz while stopping: %d", a.status)
	}
	if a := e.doAuth(t, "POST", "/healthz", "", ""); a.status != 405 || a.errorCode() != sender.CodeMethodNotAllowed {
		t.Errorf("POST /healthz: %d %s", a.status, a.body)
	}
}

func TestReadyzStartingAndCheck(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	var checkErr error
	srv, err := admin.New(e.hub, sender.NewService(e.hub), admin.Config{Token: token, Logger: quietLog(), ReadyCheck: func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the ready check's context has no deadline")
		}
		return checkErr
	}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 503 || !strings.Contains(body, `"starting"`) {
		t.Errorf("readyz before SetReady: %d %s", code, body)
	}
	srv.SetReady()
	if code, body := get(); code != 200 {
		t.Errorf("readyz after SetReady: %d %s", code, body)
	}
	checkErr = errors.New("redis: connection refused")
	if code, body := get(); code != 503 || !strings.Contains(body, "redis: connection refused") {
		t.Errorf("readyz with a failing check: %d %s", code, body)
	}
}

// protectedRoutes are a request for every route behind the token, with
// its parameters filled in.
var protectedRoutes = []struct{ method, path string }{
	{"GET", "/metrics"},
	{"GET", "/v1/connections"},
	{"GET", "/v1/connections/1"},
	{"POST", "/v1/connections/1/push"},
	{"POST", "/v1/connections/1/disconnect"},
	{"POST", "/v1/push"},
	{"POST", "/v1/broadcast"},
	{"GET", "/v1/groups"},
	{"GET", "/v1/groups/g"},
	{"POST", "/v1/groups/g/push"},
	{"GET", "/v1/users/u"},
	{"POST", "/v1/users/u/push"},
	{"GET", "/v1/nodes"},
	{"GET", "/v1/connections/1/trace"},
	{"POST", "/v1/connections/1/trace"},
	{"DELETE", "/v1/connections/1/trace"},
	{"GET", "/v1/stream"},
	{"GET", "/v1/about"},
	{"GET", "/debug/pprof/"},
	{"GET", "/debug/pprof/cmdline"},
	{"GET", "/debug/pprof/symbol"},
	{"POST", "/debug/pprof/symbol"},
	{"GET", "/debug/pprof/heap"},
	{"GET", "/v1/nope"}, // unknown routes under /v1 ask for the token first
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{Pprof: true})
	for _, r := range protectedRoutes {
		for _, auth := range []string{
			"",                                 // no header
			"Basic " + token,                   // another scheme
			"Bearer",                           // no token
			"Bearer ",                          // empty token
			"Bearer wrong",                     // wrong token
			"Bearer " + token + "x",            // longer
			"Bearer " + token[:len(token)-1],   // shorter
			"Bearer " + strings.ToUpper(token), // case matters in the token
			token,                              // no scheme
		} {
			a := e.doAuth(t, r.method, r.path, `{}`, auth)
			want(t, fmt.Sprintf("%s %s with Authorization %q", r.method, r.path, auth), a, http.StatusUnauthorized, sender.CodeUnauthorized)
			if a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", r.method, r.path)
			}
		}
	}
	// Two Authorization headers, one of them right: refused.
	req, _ := http.NewRequest("GET", e.url+"/v1/groups", nil)
	req.Header.Add("Authorization", "Bearer "+token)
	req.Header.Add("Authorization", "Bearer wrong")
	want(t, "two Authorization headers", send(t, req), http.StatusUnauthorized, sender.CodeUnauthorized)
	// The scheme is case-insensitive.
	if a := e.doAuth(t, "GET", "/v1/groups", "", "bearer "+token); a.status != 200 {
		t.Errorf("lower-case bearer: %d %s", a.status, a.body)
	}
	// The unknown route, with the token: 404.
	want(t, "GET /v1/nope", e.do(t, "GET", "/v1/nope", ""), http.StatusNotFound, sender.CodeNotFound)
	want(t, "GET /nope", e.doAuth(t, "GET", "/nope", "", ""), http.StatusNotFound, sender.CodeNotFound)
}

func TestTokenNotSet(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{Token: "-", Pprof: true})
	for _, r := range protectedRoutes {
		for _, auth := range []string{"", "Bearer ", "Bearer x"} {
			a := e.doAuth(t, r.method, r.path, `{}`, auth)
			want(t, fmt.Sprintf("%s %s without a token configured", r.method, r.path), a, http.StatusServiceUnavailable, sender.CodeTokenNotSet)
		}
	}
	if a := e.doAuth(t, "GET", "/healthz", "", ""); a.status != 200 {
		t.Errorf("healthz without a token configured: %d", a.status)
	}
}

func TestPprof(t *testing.T) {
	off := newEnv(t, bridge.Config{}, admin.Config{})
	want(t, "pprof off", off.do(t, "GET", "/debug/pprof/", ""), http.StatusNotFound, sender.CodeNotFound)
	on := newEnv(t, bridge.Config{}, admin.Config{Pprof: true})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
		if a := on.do(t, "GET", path, ""); a.status != 200 || len(a.body) == 0 {
			t.Errorf("GET %s: %d (%d bytes)", path, a.status, len(a.body))
		}
	}
}

// postRoutes are the routes with a JSON body, each with a valid body.
var postRoutes = []struct{ path, body string }{
	{"/v1/connections/{fd}/push", `{"data":"x"}`},
	{"/v1/connections/{fd}/disconnect", `{"code":4000}`},
	{"/v1/push", `{"fds":[{fd}],"data":"x"}`},
	{"/v1/broadcast", `{"data":"x"}`},
	{"/v1/groups/g/push", `{"data":"x"}`},
	{"/v1/users/u/push", `{"data":"x"}`},
}

// TestMalformedBodies: every route with a body refuses bad JSON, unknown
// fields, trailing data, wrong types, non-objects, invalid UTF-8 and
// oversized bodies with a JSON error, and sends nothing.
func TestMalformedBodies(t *testing.T) {
	const maxBody = 1024
	e := newEnv(t, bridge.Config{}, admin.Config{MaxBody: maxBody})
	ws, fd := e.dial(t, "a")
	fill := func(s string) string { return strings.ReplaceAll(s, "{fd}", fmt.Sprint(fd)) }
	bad := []struct {
		name, body, code string
		status           int
	}{
		{"bad JSON", `{"data":`, sender.CodeBadRequest, 400},
		{"not JSON", `data=x`, sender.CodeBadRequest, 400},
		{"syntax error", `{"data":"x",}`, sender.CodeBadRequest, 400},
		{"unknown field", `{"data":"x","nope":1}`, sender.CodeBadRequest, 400},
		{"misspelt field", `{"dta":"x"}`, sender.CodeBadRequest, 400},
		{"trailing object", `{"data":"x"}{"data":"y"}`, sender.CodeBadRequest, 400},
		{"trailing garbage", `{"data":"x"} x`, sender.CodeBadRequest, 400},
		{"wrong type", `{"data":1}`, sender.CodeBadRequest, 400},
		{"wrong type of opcode", `{"data":"x","opcode":"text"}`, sender.CodeBadRequest, 400},
		{"fractional opcode", `{"data":"x","opcode":1.5}`, sender.CodeBadRequest, 400},
		{"array", `[{"data":"x"}]`, sender.CodeBadRequest, 400},
		{"null", `null`, sender.CodeBadRequest, 400},
		{"string", `"x"`, sender.CodeBadRequest, 400},
		{"invalid UTF-8", "{\"data\":\"\xff\xfe\"}", sender.CodeBadRequest, 400},
		{"oversized", `{"data":"` + strings.Repeat("x", maxBody) + `"}`, sender.CodeTooLarge, 413},
	}
	for _, r := range postRoutes {
		path := fill(r.path)
		for _, b := range bad {
			want(t, fmt.Sprintf("POST %s with %s", path, b.name), e.do(t, "POST", path, b.body), b.status, b.code)
		}
		if !strings.Contains(r.path, "disconnect") {
			want(t, "POST "+path+" with no body", e.do(t, "POST", path, ""), 400, sender.CodeBadRequest)
		}
		// Wrong type of a route's own field.
		if strings.Contains(r.body, "fds") {
			want(t, "POST "+path+" with fds a string", e.do(t, "POST", path, `{"fds":"1","data":"x"}`), 400, sender.CodeBadRequest)
		}
	}
	want(t, "broadcast with except an object", e.do(t, "POST", "/v1/broadcast", `{"except":{},"data":"x"}`), 400, sender.CodeBadRequest)
	want(t, "disconnect with a string code", e.do(t, "POST", fill("/v1/connections/{fd}/disconnect"), `{"code":"1000"}`), 400, sender.CodeBadRequest)
	want(t, "push with a fd field", e.do(t, "POST", fill("/v1/connections/{fd}/push"), `{"fd":1,"data":"x"}`), 400, sender.CodeBadRequest)

	// Nothing reached the client: the next message it reads is this one.
	if a := e.do(t, "POST", fill("/v1/connections/{fd}/push"), `{"data":"first"}`); a.status != 200 {
		t.Fatalf("push: %d %s", a.status, a.body)
	}
	if _, got := read(t, ws); got != "first" {
		t.Errorf("the client read %q first, want %q: a refused request sent something", got, "first")
	}
	// The error message says what is wrong.
	a := e.do(t, "POST", "/v1/broadcast", `{"data":"x","nope":1}`)
	if !strings.Contains(string(a.body), `unknown field \"nope\"`) {
		t.Errorf("unknown field: message %s does not name the field", a.body)
	}
}

func TestPushToFD(t *testing.T) {
	e := newEnv(t, bridge.Config{MaxPushSize: 4096, QueueBytes: 1 << 20}, admin.Config{})
	ws, fd := e.dial(t, "a")
	path := fmt.Sprintf("/v1/connections/%d/push", fd)
	var q queued

	a := e.do(t, "POST", path, `{"data":"hello"}`)
	a.json(t, &q)
	if a.status != 200 || !q.Queued {
		t.Fatalf("push: %d %s", a.status, a.body)
	}
	if mt, got := read(t, ws); mt != websocket.TextMessage || got != "hello" {
		t.Errorf("read %d %q", mt, got)
	}
	bin := []byte{0, 1, 2, 0xff}
	a = e.do(t, "POST", path, `{"data":"`+base64.StdEncoding.EncodeToString(bin)+`","opcode":2,"encoding":"base64"}`)
	if a.status != 200 {
		t.Fatalf("binary push: %d %s", a.status, a.body)
	}
	if mt, got := read(t, ws); mt != websocket.BinaryMessage || got != string(bin) {
		t.Errorf("read %d %q", mt, got)
	}
	for _, part := range []string{`{"data":"frag","finish":false}`, `{"data":"men","opcode":0,"finish":false}`, `{"data":"ted"}`} {
		if a := e.do(t, "POST", path, part); a.status != 200 {
			t.Fatalf("fragment %s: %d %s", part, a.status, a.body)
		}
	}
	if _, got := read(t, ws); got != "fragmented" {
		t.Errorf("fragmented push read as %q", got)
	}

	for _, tt := range []struct {
		name, path, body, code string
		status                 int
	}{
		{"opcode 8", path, `{"data":"x","opcode":8}`, sender.CodeInvalidOpcode, 400},
		{"bad base64", path, `{"data":"***","encoding":"base64"}`, sender.CodeBadRequest, 400},
		{"unknown encoding", path, `{"data":"x","encoding":"hex"}`, sender.CodeBadRequest, 400},
		{"invalid UTF-8 text", path, `{"data":"/w==","encoding":"base64"}`, sender.CodeInvalidUTF8, 400},
		{"over max push size", path, `{"data":"` + strings.Repeat("x", 4097) + `"}`, sender.CodeTooLarge, 413},
		{"ping too large", path, `{"data":"` + strings.Repeat("x", 126) + `","opcode":9}`, sender.CodeTooLarge, 413},
		{"fd 0", "/v1/connections/0/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"fd -1", "/v1/connections/-1/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"fd abc", "/v1/connections/abc/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"fd 2^53", "/v1/connections/9007199254740992/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"fd with a leading zero", "/v1/connections/01/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"fd 1.0", "/v1/connections/1.0/push", `{"data":"x"}`, sender.CodeInvalidFD, 400},
		{"continuation without a message", path, `{"data":"x","opcode":0,"finish":false}`, "", 200}, // 0 is text: it opens one
	} {
		want(t, tt.name, e.do(t, "POST", tt.path, tt.body), tt.status, tt.code)
	}
	// The open continuation (opcode 0 taken as text, finish false) is
	// still open: finish it, so the client reads the pushes above.
	e.do(t, "POST", path, `{"data":"!"}`)
	if _, got := read(t, ws); got != "x!" {
		t.Errorf("read %q, want %q", got, "x!")
	}

	// Not open: false, no error.
	a = e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/push", fd+100), `{"data":"x"}`)
	a.json(t, &q)
	if a.status != 200 || q.Queued {
		t.Errorf("push to an unknown fd: %d %s", a.status, a.body)
	}
}

func TestConnectionInfoAndDisconnect(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	ws, fd := e.dial(t, "a")
	if err := e.hub.Join(fd, "room"); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Bind(fd, "42"); err != nil {
		t.Fatal(err)
	}
	a := e.do(t, "GET", fmt.Sprintf("/v1/connections/%d", fd), "")
	var info sender.Info
	a.json(t, &info)
	if a.status != 200 || !info.Connected || info.FD != fd || info.Path != "/" || info.Query["id"][0] != "a" ||
		info.Headers["X-Test"][0] != "yes" || !slices.Equal(info.Groups, []string{"room"}) || info.User != "42" {
		t.Errorf("info: %d %s", a.status, a.body)
	}
	if a := e.do(t, "GET", fmt.Sprintf("/v1/connections/%d/", fd), ""); a.status != 200 {
		t.Errorf("info with a trailing slash: %d", a.status)
	}
	want(t, "info of an unknown fd", e.do(t, "GET", fmt.Sprintf("/v1/connections/%d", fd+1), ""), 404, sender.CodeNotFound)
	want(t, "info of fd x", e.do(t, "GET", "/v1/connections/x", ""), 400, sender.CodeInvalidFD)

	path := fmt.Sprintf("/v1/connections/%d/disconnect", fd)
	want(t, "disconnect with code 1005", e.do(t, "POST", path, `{"code":1005}`), 400, sender.CodeInvalidCloseCode)
	want(t, "disconnect with a long reason", e.do(t, "POST", path, `{"reason":"`+strings.Repeat("r", 124)+`"}`), 413, sender.CodeTooLarge)
	var d disconnected
	a = e.do(t, "POST", path, `{"code":4000,"reason":"bye"}`)
	a.json(t, &d)
	if a.status != 200 || !d.Disconnected {
		t.Fatalf("disconnect: %d %s", a.status, a.body)
	}
	if ce := testutil.ReadClose(t, ws, wait); ce.Code != 4000 || ce.Text != "bye" {
		t.Errorf("close %d %q, want 4000 bye", ce.Code, ce.Text)
	}
	a = e.do(t, "POST", path, "")
	a.json(t, &d)
	if a.status != 200 || d.Disconnected {
		t.Errorf("disconnect of a closed fd: %d %s", a.status, a.body)
	}

	// An empty body means code 1000.
	ws2, fd2 := e.dial(t, "b")
	a = e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/disconnect", fd2), "")
	if a.status != 200 {
		t.Fatalf("disconnect without a body: %d %s", a.status, a.body)
	}
	if ce := testutil.ReadClose(t, ws2, wait); ce.Code != 1000 {
		t.Errorf("close %d, want 1000", ce.Code)
	}
}

func TestPushManyAndBroadcast(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	wa, fa := e.dial(t, "a")
	wb, fb := e.dial(t, "b")
	wc, fc := e.dial(t, "c")
	var n accepted

	a := e.do(t, "POST", "/v1/push", fmt.Sprintf(`{"fds":[%d,%d,%d,-5],"data":"many"}`, fa, fb, fc+100))
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 2 {
		t.Fatalf("push to many: %d %s", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/broadcast", fmt.Sprintf(`{"data":"all","except":[%d]}`, fb))
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 2 {
		t.Fatalf("broadcast: %d %s", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/broadcast", `{"data":"AAE=","opcode":2,"encoding":"base64"}`)
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 3 {
		t.Fatalf("binary broadcast: %d %s", a.status, a.body)
	}
	for _, c := range []struct {
		ws   *websocket.Conn
		want []string
	}{{wa, []string{"many", "all", "\x00\x01"}}, {wb, []string{"many", "\x00\x01"}}, {wc, []string{"all", "\x00\x01"}}} {
		for _, w := range c.want {
			if _, got := read(t, c.ws); got != w {
				t.Errorf("read %q, want %q", got, w)
			}
		}
	}

	tooMany := "[" + strings.TrimSuffix(strings.Repeat("1,", sender.MaxBatch+1), ",") + "]"
	for _, tt := range []struct {
		name, path, body, code string
		status                 int
	}{
		{"too many fds", "/v1/push", `{"fds":` + tooMany + `,"data":"x"}`, sender.CodeBadRequest, 400},
		{"too many except", "/v1/broadcast", `{"except":` + tooMany + `,"data":"x"}`, sender.CodeBadRequest, 400},
		{"ping to many", "/v1/push", `{"fds":[1],"data":"x","opcode":9}`, sender.CodeInvalidOpcode, 400},
		{"broadcast a ping", "/v1/broadcast", `{"data":"x","opcode":9}`, sender.CodeInvalidOpcode, 400},
		{"broadcast invalid UTF-8", "/v1/broadcast", `{"data":"/w==","encoding":"base64"}`, sender.CodeInvalidUTF8, 400},
	} {
		want(t, tt.name, e.do(t, "POST", tt.path, tt.body), tt.status, tt.code)
	}
}

func TestGroupsAndUsers(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	wa, fa := e.dial(t, "a")
	wb, fb := e.dial(t, "b")
	_, fc := e.dial(t, "c")
	odd := "room/1 %2F ü?#" // every character a path may not hold as it is
	for _, j := range []struct {
		fd    int64
		group string
	}{{fa, "lobby"}, {fb, "lobby"}, {fc, "lobby"}, {fa, odd}, {fb, "zoo"}} {
		if err := e.hub.Join(j.fd, j.group); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range []int64{fa, fb} {
		if err := e.hub.Bind(fd, "42"); err != nil {
			t.Fatal(err)
		}
	}

	var groups struct {
		Groups []struct {
			Name    string `json:"name"`
			Members int    `json:"members"`
		} `json:"groups"`
	}
	a := e.do(t, "GET", "/v1/groups", "")
	a.json(t, &groups)
	got := fmt.Sprint(groups.Groups)
	if wantList := fmt.Sprint([]struct {
		Name    string
		Members int
	}{{"lobby", 3}, {odd, 1}, {"zoo", 1}}); a.status != 200 || got != wantList {
		t.Errorf("groups: %d %s, want %s", a.status, got, wantList)
	}
	want(t, "groups with a query", e.do(t, "GET", "/v1/groups?limit=1", ""), 400, sender.CodeBadRequest)

	var members struct {
		Group   string  `json:"group"`
		Members []int64 `json:"members"`
	}
	a = e.do(t, "GET", "/v1/groups/"+url.PathEscape(odd), "")
	a.json(t, &members)
	if a.status != 200 || members.Group != odd || !slices.Equal(members.Members, []int64{fa}) {
		t.Errorf("members of %q: %d %s", odd, a.status, a.body)
	}
	a = e.do(t, "GET", "/v1/groups/lobby", "")
	a.json(t, &members)
	if !slices.Equal(members.Members, []int64{fa, fb, fc}) {
		t.Errorf("members of lobby: %s", a.body)
	}
	a = e.do(t, "GET", "/v1/groups/empty", "")
	a.json(t, &members)
	if a.status != 200 || members.Members == nil || len(members.Members) != 0 {
		t.Errorf("members of an empty group: %d %s", a.status, a.body)
	}

	var n accepted
	a = e.do(t, "POST", "/v1/groups/lobby/push", fmt.Sprintf(`{"data":"to lobby","except":[%d]}`, fc))
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 2 {
		t.Fatalf("group push: %d %s", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/groups/"+url.PathEscape(odd)+"/push", `{"data":"odd"}`)
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 1 {
		t.Fatalf("push to %q: %d %s", odd, a.status, a.body)
	}
	var fds struct {
		User string  `json:"user"`
		FDs  []int64 `json:"fds"`
	}
	a = e.do(t, "GET", "/v1/users/42", "")
	a.json(t, &fds)
	if a.status != 200 || fds.User != "42" || !slices.Equal(fds.FDs, []int64{fa, fb}) {
		t.Errorf("fds of user 42: %d %s", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/users/42/push", `{"data":"to user"}`)
	a.json(t, &n)
	if a.status != 200 || n.Accepted != 2 {
		t.Fatalf("user push: %d %s", a.status, a.body)
	}
	for _, c := range []struct {
		ws   *websocket.Conn
		want []string
	}{{wa, []string{"to lobby", "odd", "to user"}}, {wb, []string{"to lobby", "to user"}}} {
		for _, w := range c.want {
			if _, got := read(t, c.ws); got != w {
				t.Errorf("read %q, want %q", got, w)
			}
		}
	}
	long := strings.Repeat("g", bridge.MaxNameLength+1)
	want(t, "push to a group name too long", e.do(t, "POST", "/v1/groups/"+long+"/push", `{"data":"x"}`), 400, sender.CodeInvalidName)
	want(t, "push to a user id too long", e.do(t, "POST", "/v1/users/"+long+"/push", `{"data":"x"}`), 400, sender.CodeInvalidName)
	want(t, "user push with except", e.do(t, "POST", "/v1/users/42/push", `{"data":"x","except":[1]}`), 400, sender.CodeBadRequest)
}

type connList struct {
	Connections []struct {
		FD          int64    `json:"fd"`
		RemoteAddr  string   `json:"remote_addr"`
		Path        string   `json:"path"`
		Subprotocol string   `json:"subprotocol"`
		ConnectedAt int64    `json:"connected_at"`
		Worker      int      `json:"worker"`
		User        string   `json:"user"`
		Groups      []string `json:"groups"`
	} `json:"connections"`
	NextAfter *int64 `json:"next_after"`
}

func (l connList) fds() []int64 {
	var out []int64
	for _, c := range l.Connections {
		out = append(out, c.FD)
	}
	return out
}

// pages lists every connection with query (plus limit and after),
// following next_after; it returns the fds and the number of pages.
func (e *env) pages(t testing.TB, query string, limit int) ([]int64, int) {
	t.Helper()
	var all []int64
	after := "0"
	for pages := 1; ; pages++ {
		a := e.do(t, "GET", fmt.Sprintf("/v1/connections?limit=%d&after=%s%s", limit, after, query), "")
		var l connList
		a.json(t, &l)
		if a.status != 200 || len(l.Connections) > limit || l.Connections == nil {
			t.Fatalf("list: %d %s", a.status, a.body)
		}
		all = append(all, l.fds()...)
		if l.NextAfter == nil {
			return all, pages
		}
		after = fmt.Sprint(*l.NextAfter)
		if pages > 100 {
			t.Fatal("more than 100 pages")
		}
	}
}

func TestListConnections(t *testing.T) {
	e := newEnv(t, bridge.Config{Workers: 3}, admin.Config{})
	var fds []int64
	for i := range 5 {
		_, fd := e.dial(t, fmt.Sprint("c", i))
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	for _, fd := range fds[1:4] {
		if err := e.hub.Join(fd, "g"); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range []int64{fds[0], fds[2], fds[3]} {
		if err := e.hub.Bind(fd, "u"); err != nil {
			t.Fatal(err)
		}
	}

	a := e.do(t, "GET", "/v1/connections", "")
	var l connList
	a.json(t, &l)
	if a.status != 200 || !slices.Equal(l.fds(), fds) || l.NextAfter != nil {
		t.Fatalf("list: %d %s", a.status, a.body)
	}
	c := l.Connections[2]
	if c.Path != "/" || c.RemoteAddr == "" || c.ConnectedAt == 0 || c.User != "u" || !slices.Equal(c.Groups, []string{"g"}) {
		t.Errorf("entry %+v", c)
	}
	for _, tt := range []struct {
		query string
		limit int
		want  []int64
		pages int
	}{
		{"", 2, fds, 3},
		{"", 5, fds, 1},
		{"", 4, fds, 2},
		{"&group=g", 2, fds[1:4], 2},
		{"&user=u", 1, []int64{fds[0], fds[2], fds[3]}, 3},
		{"&group=g&user=u", 10, fds[2:4], 1},
		{"&group=none", 10, nil, 1},
	} {
		got, pages := e.pages(t, tt.query, tt.limit)
		if !slices.Equal(got, tt.want) || pages != tt.pages {
			t.Errorf("pages of %d with %q: %v in %d pages, want %v in %d", tt.limit, tt.query, got, pages, tt.want, tt.pages)
		}
	}
	// A closed connection is left out.
	if err := e.hub.Disconnect(fds[0], 0, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.pages(t, "", 10); !slices.Equal(got, fds[1:]) {
		t.Errorf("after a disconnect: %v, want %v", got, fds[1:])
	}
	a = e.do(t, "GET", fmt.Sprintf("/v1/connections?after=%d", fds[4]), "")
	a.json(t, &l)
	if len(l.Connections) != 0 || l.NextAfter != nil {
		t.Errorf("after the last fd: %s", a.body)
	}

	for _, q := range []struct{ query, code string }{
		{"after=abc", sender.CodeBadRequest},
		{"after=-1", sender.CodeBadRequest},
		{"after=9007199254740992", sender.CodeBadRequest},
		{"after=1&after=2", sender.CodeBadRequest},
		{"limit=0", sender.CodeBadRequest},
		{"limit=1001", sender.CodeBadRequest},
		{"limit=ten", sender.CodeBadRequest},
		{"limit=", sender.CodeBadRequest},
		{"cursor=1", sender.CodeBadRequest},
		{"after=%zz", sender.CodeBadRequest},
		{"group=", sender.CodeInvalidName},
		{"user=" + strings.Repeat("u", 257), sender.CodeInvalidName},
	} {
		want(t, "list with "+q.query, e.do(t, "GET", "/v1/connections?"+q.query, ""), 400, q.code)
	}
}

// TestShuttingDown: once the hub shuts down, pushes deliver nothing and
// say so as they do for closed fds: pushes to many connections answer
// accepted 0, pushes to one fd queued false; never 503 (an application's
// close handler pushes to a group during every deploy).
func TestShuttingDown(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	ws, fd := e.dial(t, "a")
	e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/push", fd), `{"data":"x"}`) // a connection with something queued
	if err := e.hub.Join(fd, "room"); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Bind(fd, "u"); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing, so the hub's drain waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- e.hub.Shutdown(ctx) }()
	for deadline := time.Now().Add(wait); e.hub.Check(fd); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fd still open after Shutdown started")
		}
	}
	for _, r := range []struct{ path, body string }{
		{"/v1/broadcast", `{"data":"x"}`},
		{"/v1/push", fmt.Sprintf(`{"fds":[%d],"data":"x"}`, fd)},
		{"/v1/groups/room/push", `{"data":"x"}`},
		{"/v1/users/u/push", `{"data":"x"}`},
	} {
		a := e.do(t, "POST", r.path, r.body)
		var n accepted
		if a.status == 200 {
			a.json(t, &n)
		}
		if a.status != 200 || n.Accepted != 0 {
			t.Errorf("POST %s during shutdown: %d %s; want 200 accepted 0", r.path, a.status, a.body)
		}
	}
	want(t, "bad opcode during shutdown", e.do(t, "POST", "/v1/broadcast", `{"data":"x","opcode":9}`), 400, sender.CodeInvalidOpcode)
	a := e.do(t, "POST", fmt.Sprintf("/v1/connections/%d/push", fd), `{"data":"x"}`)
	var q queued
	a.json(t, &q)
	if a.status != 200 || q.Queued {
		t.Errorf("push during shutdown: %d %s", a.status, a.body)
	}
	ws.Close()
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{})
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/push"}, {"DELETE", "/v1/connections/1"}, {"PUT", "/v1/broadcast"}, {"POST", "/v1/groups"},
	} {
		want(t, r.method+" "+r.path, e.do(t, r.method, r.path, ""), 405, sender.CodeMethodNotAllowed)
	}
}

// TestRequestIDsAndAccessLog: every answer has an X-Request-Id, the
// client's own when it is sane, and the access log has one line per
// request with it; the token is never logged, nor a wrong one.
func TestRequestIDsAndAccessLog(t *testing.T) {
	e := newEnv(t, bridge.Config{}, admin.Config{Pprof: true})
	req, _ := http.NewRequest("GET", e.url+"/v1/groups", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Request-Id", "my-id.1")
	a := send(t, req)
	if got := a.header.Get("X-Request-Id"); got != "my-id.1" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	req.Header.Set("X-Request-Id", "bad id with spaces")
	if got := send(t, req).header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("X-Request-Id %q, want a new one", got)
	}
	const wrong = "wr0ng-t0ken-never-logged"
	ids := map[string]bool{}
	for _, r := range []struct{ method, path, body, auth string }{
		{"GET", "/healthz", "", ""},
		{"GET", "/metrics", "", "Bearer " + token},
		{"POST", "/v1/broadcast", `{"data":"x"}`, "Bearer " + token},
		{"POST", "/v1/broadcast", `{"data":"x"}`, "Bearer " + wrong},
		{"GET", "/v1/nope?token=" + wrong, "", "Bearer " + wrong},
		{"GET", "/debug/pprof/cmdline", "", "Bearer " + token},
	} {
		a := e.doAuth(t, r.method, r.path, r.body, r.auth)
		id := a.header.Get("X-Request-Id")
		if id == "" || ids[id] {
			t.Errorf("%s %s: X-Request-Id %q missing or reused", r.method, r.path, id)
		}
		ids[id] = true
	}
	recs := e.logs.Records("admin request")
	if len(recs) != 2+6 {
		t.Errorf("%d access log lines for 8 requests:\n%s", len(recs), e.logs)
	}
	for _, rec := range recs {
		id, _ := rec["request_id"].(string)
		if id == "" || rec["status"] == nil || rec["method"] == nil || rec["took"] == nil {
			t.Errorf("access log line %v lacks a field", rec)
		}
		delete(ids, id)
	}
	if len(ids) != 0 {
		t.Errorf("requests %v have no access log line", ids)
	}
	logs := e.logs.String()
	for _, secret := range []string{token, wrong} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the token %q:\n%s", secret, logs)
		}
	}
}

// TestRouteListIsComplete: protectedRoutes covers every route the server
// has but the probes, so the authorization tests miss none.
func TestRouteListIsComplete(t *testing.T) {
	covered := map[string]bool{}
	for _, r := range protectedRoutes {
		covered[r.method+" "+r.path] = true
	}
	spec := openAPIRoutes(t)
	for _, r := range spec {
		if r == "GET /healthz" || r == "GET /readyz" || strings.HasPrefix(r, "GET /ui") {
			continue // open: the probes, and the console's files (no data; TestConsoleFiles)
		}
		method, path, _ := strings.Cut(r, " ")
		path = strings.NewReplacer("{fd}", "1", "{group}", "g", "{user}", "u", "{profile}", "heap", "/debug/pprof/profile", "", "/debug/pprof/trace", "").Replace(path)
		if path == "" {
			continue // a profile or trace takes seconds: TestPprof covers the index
		}
		if !covered[method+" "+path] && !covered[method+" "+path+"/"] {
			t.Errorf("%s (%s %s) is not in protectedRoutes", r, method, path)
		}
	}
}

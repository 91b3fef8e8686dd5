package bridge_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
)

func TestGroups(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 3, MaxGroupsPerConn: 2})
	const n = 6
	clients := make([]*websocket.Conn, n)
	fds := make([]int64, n)
	for i := range clients {
		clients[i], fds[i] = th.dial(t, fmt.Sprint(i))
	}
	for _, i := range []int{0, 2, 4} {
		if err := th.Join(fds[i], "even"); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.Join(fds[0], "even"); err != nil { // twice: no error
		t.Fatal(err)
	}
	if err := th.Join(fds[0], "first"); err != nil {
		t.Fatal(err)
	}
	if err := th.Join(fds[0], "third"); !errors.Is(err, bridge.ErrTooManyGroups) {
		t.Fatalf("third group: %v", err)
	}
	if got := th.GroupMembers("even"); !slices.Equal(got, []int64{fds[0], fds[2], fds[4]}) {
		t.Fatalf("members %v", got)
	}
	if g, ok := th.GroupsOf(fds[0]); !ok || !slices.Equal(g, []string{"even", "first"}) {
		t.Fatalf("GroupsOf = %v, %v", g, ok)
	}
	got, err := th.PushGroup("even", []byte("to evens"), bridge.OpText, []int64{fds[4]})
	if err != nil || got != 2 {
		t.Fatalf("PushGroup = %d, %v; want 2", got, err)
	}
	if was, err := th.Leave(fds[2], "even"); err != nil || !was {
		t.Fatalf("Leave = %v, %v", was, err)
	}
	if was, err := th.Leave(fds[2], "even"); err != nil || was {
		t.Fatalf("second Leave = %v, %v", was, err)
	}
	if got, _ := th.PushGroup("even", []byte("again"), bridge.OpText, nil); got != 2 {
		t.Fatalf("after a leave: %d members reached, want 2", got)
	}
	if got, _ := th.PushGroup("nobody", []byte("x"), bridge.OpText, nil); got != 0 {
		t.Fatalf("empty group: %d", got)
	}
	for i, fd := range fds {
		if err := th.Push(fd, []byte("end"), bridge.OpText, true); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			readText(t, clients[i], "to evens")
			readText(t, clients[i], "again")
		case 2:
			readText(t, clients[i], "to evens")
		case 4:
			readText(t, clients[i], "again")
		}
		readText(t, clients[i], "end")
	}
	// A closed connection leaves its groups.
	clients[0].Close()
	th.rec.closeOf(t, fds[0])
	if got := th.GroupMembers("even"); !slices.Equal(got, []int64{fds[4]}) {
		t.Fatalf("members after close %v", got)
	}
	if _, ok := th.Groups()["first"]; ok {
		t.Fatal("an empty group is still listed")
	}
	if err := th.Join(fds[0], "even"); !errors.Is(err, bridge.ErrUnknownFD) {
		t.Fatalf("join of a closed fd: %v", err)
	}
	for _, name := range []string{"", strings.Repeat("g", bridge.MaxNameLength+1), "\xff"} {
		if err := th.Join(fds[1], name); !errors.Is(err, bridge.ErrInvalidName) {
			t.Errorf("Join(%q) = %v", name, err)
		}
		if _, err := th.PushGroup(name, []byte("x"), bridge.OpText, nil); !errors.Is(err, bridge.ErrInvalidName) {
			t.Errorf("PushGroup(%q) = %v", name, err)
		}
	}
	if _, err := th.PushGroup("even", []byte("x"), bridge.OpPing, nil); !errors.Is(err, bridge.ErrInvalidOpcode) {
		t.Fatalf("PushGroup ping: %v", err)
	}
}

func TestUsers(t *testing.T) {
	th := startHub(t, bridge.Config{})
	a1, fdA1 := th.dial(t, "a1")
	a2, fdA2 := th.dial(t, "a2")
	b, fdB := th.dial(t, "b")
	for _, bind := range []struct {
		fd   int64
		user string
	}{{fdA1, "alice"}, {fdA2, "alice"}, {fdB, "alice"}, {fdB, "bob"}} { // b rebinds to bob
		if err := th.Bind(bind.fd, bind.user); err != nil {
			t.Fatal(err)
		}
	}
	if got := th.UserFDs("alice"); !slices.Equal(got, []int64{fdA1, fdA2}) {
		t.Fatalf("alice's fds %v", got)
	}
	if n, err := th.PushUser("alice", []byte("hi alice"), bridge.OpText); err != nil || n != 2 {
		t.Fatalf("PushUser = %d, %v", n, err)
	}
	readText(t, a1, "hi alice")
	readText(t, a2, "hi alice")
	if n, _ := th.PushUser("bob", []byte("hi bob"), bridge.OpText); n != 1 {
		t.Fatalf("PushUser bob = %d", n)
	}
	readText(t, b, "hi bob")
	info, ok := th.Info(fdB)
	if !ok || info.User != "bob" {
		t.Fatalf("info %+v", info)
	}
	if was, err := th.Unbind(fdA2); err != nil || !was {
		t.Fatalf("Unbind = %v, %v", was, err)
	}
	if was, _ := th.Unbind(fdA2); was {
		t.Fatal("second Unbind reported a binding")
	}
	a1.Close()
	th.rec.closeOf(t, fdA1)
	if got := th.UserFDs("alice"); len(got) != 0 {
		t.Fatalf("alice's fds after unbind and close: %v", got)
	}
	if _, err := th.PushUser("", []byte("x"), bridge.OpText); !errors.Is(err, bridge.ErrInvalidName) {
		t.Fatalf("PushUser empty: %v", err)
	}
}

func TestPushMany(t *testing.T) {
	th := startHub(t, bridge.Config{})
	c1, fd1 := th.dial(t, "1")
	c2, fd2 := th.dial(t, "2")
	n, err := th.PushMany([]int64{fd1, 424242, -3, fd2}, []byte{0, 1, 2}, bridge.OpBinary)
	if err != nil || n != 2 {
		t.Fatalf("PushMany = %d, %v; want 2", n, err)
	}
	for _, c := range []*websocket.Conn{c1, c2} {
		if _, data, err := c.ReadMessage(); err != nil || string(data) != "\x00\x01\x02" {
			t.Fatalf("read %q, %v", data, err)
		}
	}
}

// Joins racing with closes never leave a closed connection in a group.
func TestJoinRacingCloseLeavesNoStaleMember(t *testing.T) {
	th := startHub(t, bridge.Config{})
	for round := range 20 {
		c, fd := th.dial(t, fmt.Sprint(round))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 50 {
				_ = th.Join(fd, "race")
				_ = th.Bind(fd, "racer")
			}
		}()
		go func() {
			defer wg.Done()
			c.Close()
		}()
		wg.Wait()
		th.rec.closeOf(t, fd)
	}
	if m := th.GroupMembers("race"); len(m) != 0 {
		t.Fatalf("closed connections left in the group: %v", m)
	}
	if u := th.UserFDs("racer"); len(u) != 0 {
		t.Fatalf("closed connections left bound: %v", u)
	}
}

func TestAuthorize(t *testing.T) {
	asked := make(chan string, 10)
	th := startHub(t, bridge.Config{Authorize: func(r *http.Request) bridge.Authorization {
		asked <- r.URL.Query().Get("id")
		switch r.URL.Query().Get("token") {
		case "good":
			return bridge.Authorization{Allow: true, User: "u1", Groups: []string{"vip", "all"}}
		case "teapot":
			return bridge.Authorization{Status: http.StatusTeapot, Message: "no tea"}
		}
		return bridge.Authorization{}
	}})
	c, _, err := websocket.DefaultDialer.Dial(th.url+"/?id=a&token=good", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := th.rec.fdOf(t, "a")
	th.rec.mu.Lock()
	opened := th.rec.opens["a"]
	th.rec.mu.Unlock()
	if opened.User != "u1" || !slices.Equal(opened.Groups, []string{"all", "vip"}) {
		t.Fatalf("open event %+v: want the user and groups already bound", opened)
	}
	if got := th.UserFDs("u1"); !slices.Equal(got, []int64{fd}) {
		t.Fatalf("UserFDs = %v", got)
	}
	for _, tt := range []struct {
		query  string
		status int
		body   string
	}{{"id=b&token=teapot", http.StatusTeapot, "no tea"}, {"id=c", http.StatusForbidden, "Forbidden"}} {
		_, resp, err := websocket.DefaultDialer.Dial(th.url+"/?"+tt.query, nil)
		if err == nil || resp.StatusCode != tt.status {
			t.Fatalf("%s: %v, want HTTP %d", tt.query, err, tt.status)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), tt.body) {
			t.Fatalf("%s: body %q", tt.query, body)
		}
	}
	// Requests that are not upgrades, or from a refused origin, are not asked about.
	resp, err := http.Get("http" + th.url[len("ws"):] + "/?id=plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET: HTTP %d, want 400", resp.StatusCode)
	}
	h := http.Header{"Origin": {"http://evil.example"}}
	if _, _, err := websocket.DefaultDialer.Dial(th.url+"/?id=evil", h); err == nil {
		t.Fatal("a refused origin connected")
	}
	close(asked)
	var ids []string
	for id := range asked {
		ids = append(ids, id)
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Fatalf("asked about %v, want a, b, c", ids)
	}
	if th.Count() != 1 {
		t.Fatalf("%d connections, want 1", th.Count())
	}
}

// TestOnIndexChange: the hook hears of a group's first member and last
// leave (a leave, a close) and of a user's first and last fd (a bind, a
// rebind, an unbind), and only of those.
func TestOnIndexChange(t *testing.T) {
	var mu sync.Mutex
	var got []string
	th := startHub(t, bridge.Config{OnIndexChange: func(kind bridge.IndexKind, name string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprint(kind, ":", name))
	}})
	expect := func(what string, want ...string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: changes %q, want %q", what, got, want)
		}
		got = nil
	}
	a, fdA := th.dial(t, "a")
	_, fdB := th.dial(t, "b")
	g, u := fmt.Sprint(bridge.GroupIndex, ":room"), fmt.Sprint(bridge.UserIndex, ":")
	for _, fd := range []int64{fdA, fdB} {
		if err := th.Join(fd, "room"); err != nil {
			t.Fatal(err)
		}
	}
	expect("two joins", g)
	if !th.HasGroup("room") || th.HasGroup("other") {
		t.Fatal("HasGroup")
	}
	if _, err := th.Leave(fdB, "room"); err != nil {
		t.Fatal(err)
	}
	expect("one of two leaves")
	if err := th.Bind(fdA, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := th.Bind(fdB, "alice"); err != nil {
		t.Fatal(err)
	}
	expect("two binds", u+"alice")
	if err := th.Bind(fdB, "bob"); err != nil {
		t.Fatal(err)
	}
	expect("a rebind", u+"bob")
	if _, err := th.Unbind(fdB); err != nil {
		t.Fatal(err)
	}
	expect("an unbind", u+"bob")
	if !th.HasUser("alice") || th.HasUser("bob") {
		t.Fatal("HasUser")
	}
	a.Close()
	th.rec.closeOf(t, fdA)
	mu.Lock()
	slices.Sort(got)
	mu.Unlock()
	expect("the last member's close", g, u+"alice")
	if th.HasGroup("room") || th.HasUser("alice") {
		t.Fatal("a closed connection's group or user is still there")
	}
}

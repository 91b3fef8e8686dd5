package rpc_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	netrpc "net/rpc"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"
	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPushCheckDisconnect(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, codec := range []rpc.Codec{rpc.JSON, rpc.Msgpack} {
			t.Run(name(network, " codec ", codec), func(t *testing.T) {
				e := startEnv(t, network, bridge.Config{}, rpc.Config{})
				ws, fd := e.dial(t, "a")
				c := e.client(t, codec)
				if !call[bool](t, c, "Sender.Push", map[string]any{"fd": fd, "data": "hello"}) {
					t.Fatal("Push = false for an open fd")
				}
				readText(t, ws, "hello")
				if !call[bool](t, c, "Sender.Check", map[string]any{"fd": fd}) {
					t.Fatal("Check = false for an open fd")
				}
				if call[bool](t, c, "Sender.Push", map[string]any{"fd": 987654, "data": "x"}) {
					t.Fatal("Push = true for an unknown fd")
				}
				if call[bool](t, c, "Sender.Check", map[string]any{"fd": -4}) {
					t.Fatal("Check = true for a negative fd")
				}
				if !call[bool](t, c, "Sender.Disconnect", map[string]any{"fd": fd, "code": 4000, "reason": "bye"}) {
					t.Fatal("Disconnect = false for an open fd")
				}
				ws.SetReadDeadline(timeout())
				_, _, err := ws.ReadMessage()
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "bye" {
					t.Fatalf("close: %v", err)
				}
				if call[bool](t, c, "Sender.Push", map[string]any{"fd": fd, "data": "late"}) {
					t.Fatal("Push = true for a closed fd")
				}
				if call[bool](t, c, "Sender.Disconnect", map[string]any{"fd": fd}) {
					t.Fatal("Disconnect = true for a closed fd")
				}
			})
		}
	}
}

func TestFragmentedPush(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)
	for _, part := range []map[string]any{
		{"fd": fd, "data": "frag", "finish": false},
		{"fd": fd, "data": "men", "opcode": 0, "finish": false},
		{"fd": fd, "data": "ted", "finish": true},
	} {
		if !call[bool](t, c, "Sender.Push", part) {
			t.Fatalf("Push(%v) = false", part)
		}
	}
	readText(t, ws, "fragmented")
}

// Binary data travels intact: msgpack carries bytes, JSON uses base64.
func TestBinaryEveryByteValue(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	jc, mc := e.client(t, rpc.JSON), e.client(t, rpc.Msgpack)
	pushes := []struct {
		c    *rpc.Client
		args any
	}{
		{jc, map[string]any{"fd": fd, "data": base64.StdEncoding.EncodeToString(all), "opcode": 2, "encoding": "base64"}},
		{mc, map[string]any{"fd": fd, "data": all, "opcode": 2}},         // msgpack bin
		{mc, map[string]any{"fd": fd, "data": string(all), "opcode": 2}}, // msgpack str holding raw bytes
	}
	for i, p := range pushes {
		if !call[bool](t, p.c, "Sender.Push", p.args) {
			t.Fatalf("push %d = false", i)
		}
		mt, got := read(t, ws)
		if mt != websocket.BinaryMessage || !bytes.Equal(got, all) {
			t.Fatalf("push %d: type %d, %d bytes, want all 256 byte values as binary", i, mt, len(got))
		}
	}
}

func TestBatchManyBroadcastGroupsUsers(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{Workers: 2}, rpc.Config{})
	a, fa := e.dial(t, "a")
	b, fb := e.dial(t, "b")
	c := e.client(t, rpc.JSON)

	res := call[[]bool](t, c, "Sender.PushBatch", map[string]any{"messages": []map[string]any{
		{"fd": fa, "data": "batch a"}, {"fd": 999999, "data": "nobody"}, {"fd": fb, "data": "YmF0Y2ggYg==", "encoding": "base64", "opcode": 2},
	}})
	if !slices.Equal(res, []bool{true, false, true}) {
		t.Fatalf("PushBatch = %v", res)
	}
	readText(t, a, "batch a")
	readText(t, b, "batch b")

	if n := call[int](t, c, "Sender.PushMany", map[string]any{"fds": []int64{fa, fb, 12345}, "data": "many"}); n != 2 {
		t.Fatalf("PushMany = %d", n)
	}
	readText(t, a, "many")
	readText(t, b, "many")
	if n := call[int](t, c, "Sender.Broadcast", map[string]any{"data": "all but b", "except": []int64{fb}}); n != 1 {
		t.Fatalf("Broadcast = %d", n)
	}
	readText(t, a, "all but b")

	for _, fd := range []int64{fa, fb} {
		if !call[bool](t, c, "Sender.Join", map[string]any{"fd": fd, "group": "room"}) {
			t.Fatal("Join = false")
		}
	}
	if call[bool](t, c, "Sender.Join", map[string]any{"fd": 999999, "group": "room"}) {
		t.Fatal("Join of an unknown fd = true")
	}
	if m := call[[]int64](t, c, "Sender.GroupMembers", map[string]any{"group": "room"}); !slices.Equal(m, []int64{fa, fb}) {
		t.Fatalf("GroupMembers = %v", m)
	}
	if g := call[[]string](t, c, "Sender.GroupsOf", map[string]any{"fd": fa}); !slices.Equal(g, []string{"room"}) {
		t.Fatalf("GroupsOf = %v", g)
	}
	if g := call[map[string]int](t, c, "Sender.Groups", map[string]any{}); g["room"] != 2 {
		t.Fatalf("Groups = %v", g)
	}
	if n := call[int](t, c, "Sender.PushGroup", map[string]any{"group": "room", "data": "to room", "except": []int64{fa}}); n != 1 {
		t.Fatalf("PushGroup = %d", n)
	}
	readText(t, b, "to room")
	if !call[bool](t, c, "Sender.Leave", map[string]any{"fd": fb, "group": "room"}) {
		t.Fatal("Leave = false")
	}
	if call[bool](t, c, "Sender.Leave", map[string]any{"fd": fb, "group": "room"}) {
		t.Fatal("second Leave = true")
	}
	if m := call[[]int64](t, c, "Sender.GroupMembers", map[string]any{"group": "nobody"}); m == nil || len(m) != 0 {
		t.Fatalf("members of an empty group: %#v, want []", m)
	}

	if !call[bool](t, c, "Sender.Bind", map[string]any{"fd": fb, "user": "42"}) {
		t.Fatal("Bind = false")
	}
	if u := call[[]int64](t, c, "Sender.UserFds", map[string]any{"user": "42"}); !slices.Equal(u, []int64{fb}) {
		t.Fatalf("UserFds = %v", u)
	}
	if n := call[int](t, c, "Sender.PushUser", map[string]any{"user": "42", "data": "to user"}); n != 1 {
		t.Fatalf("PushUser = %d", n)
	}
	readText(t, b, "to user")

	info := call[sender.Info](t, c, "Sender.Info", map[string]any{"fd": fb})
	if !info.Connected || info.FD != fb || info.User != "42" || info.Query["id"][0] != "b" || !strings.HasPrefix(info.RemoteAddr, "127.0.0.1:") ||
		info.Headers["Sec-Websocket-Version"][0] != "13" || info.ConnectedAt == 0 || info.Path != "/" {
		t.Fatalf("Info = %+v", info)
	}
	if gone := call[sender.Info](t, c, "Sender.Info", map[string]any{"fd": 999999}); gone.Connected {
		t.Fatalf("Info of an unknown fd = %+v", gone)
	}
	// Connections: a page of this node's connections, filtered.
	all := call[sender.ConnectionList](t, c, "Sender.Connections", map[string]any{})
	if len(all.Connections) != 2 || all.NextAfter != nil || all.Connections[0].FD >= all.Connections[1].FD {
		t.Fatalf("Connections = %+v", all)
	}
	first := call[sender.ConnectionList](t, c, "Sender.Connections", map[string]any{"limit": 1})
	if len(first.Connections) != 1 || first.NextAfter == nil || *first.NextAfter != first.Connections[0].FD {
		t.Fatalf("Connections limit 1 = %+v", first)
	}
	rest := call[sender.ConnectionList](t, c, "Sender.Connections", map[string]any{"after": *first.NextAfter})
	if len(rest.Connections) != 1 || rest.Connections[0].FD == first.Connections[0].FD || rest.NextAfter != nil {
		t.Fatalf("Connections after = %+v", rest)
	}
	if u := call[sender.ConnectionList](t, c, "Sender.Connections", map[string]any{"user": "42"}); len(u.Connections) != 1 || u.Connections[0].FD != fb || u.Connections[0].User != "42" {
		t.Fatalf("Connections of user 42 = %+v", u)
	}
	for _, bad := range []map[string]any{{"limit": 1001}, {"limit": -1}, {"after": -5}, {"group": strings.Repeat("g", 257)}} {
		var out sender.ConnectionList
		if err := c.Call("Sender.Connections", bad, &out); err == nil {
			t.Errorf("Connections(%v) = %+v, want an error", bad, out)
		}
	}
	if !call[bool](t, c, "Sender.Unbind", map[string]any{"fd": fb}) || call[bool](t, c, "Sender.Unbind", map[string]any{"fd": fb}) {
		t.Fatal("Unbind results")
	}
	st := call[sender.Stats](t, c, "Sender.Stats", nil)
	if st.Connections != 2 || len(st.Workers) != 2 || st.RPCConnections != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

// A batch with one bad message is refused whole: nothing is sent.
func TestPushBatchRefusedWhole(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)
	for _, bad := range []map[string]any{
		{"fd": -1, "data": "x"},
		{"fd": fd, "data": "x", "opcode": 8},
		{"fd": fd, "data": "x", "opcode": 9, "finish": false},
	} {
		var out []bool
		err := c.Call("Sender.PushBatch", map[string]any{"messages": []map[string]any{{"fd": fd, "data": "first"}, bad}}, &out)
		var re *sender.Error
		if !errors.As(err, &re) || re.Code == sender.CodeBadRequest || !strings.HasPrefix(re.Message, "message 1: ") {
			t.Fatalf("batch with %v: %v, want a coded error about message 1", bad, err)
		}
	}
	if !call[bool](t, c, "Sender.Push", map[string]any{"fd": fd, "data": "only this"}) {
		t.Fatal("push = false")
	}
	readText(t, ws, "only this") // "first" was never sent
}

// goridge's own Go client (gob codec over net/rpc) calls the service unchanged.
func TestGoridgeGoClient(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	network, address, _ := rpc.ParseAddr(e.srv.Addr())
	conn, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	client := netrpc.NewClientWithCodec(goridge.NewClientCodec(conn))
	defer client.Close()
	var ok bool
	if err := client.Call("Sender.Push", sender.PushArgs{FD: fd, Message: sender.Message{Data: "from gob"}}, &ok); err != nil || !ok {
		t.Fatalf("Push = %v, %v", ok, err)
	}
	readText(t, ws, "from gob")
	if err := client.Call("Sender.Check", sender.FDArgs{FD: fd}, &ok); err != nil || !ok {
		t.Fatalf("Check = %v, %v", ok, err)
	}
	err = client.Call("Sender.Push", sender.PushArgs{FD: -1, Message: sender.Message{Data: "x"}}, &ok)
	if err == nil || !strings.HasPrefix(err.Error(), "invalid_fd: ") {
		t.Fatalf("Push(-1) error = %v, want invalid_fd", err)
	}
}

var serviceErrorTests = []struct {
	method string
	args   any
	code   string // "" when net/rpc answers (its own text)
	text   string
}{
	{"Sender.Push", map[string]any{"fd": 0, "data": "x"}, sender.CodeInvalidFD, "invalid fd"},
	{"Sender.Push", map[string]any{"fd": -1, "data": "x"}, sender.CodeInvalidFD, ""},
	{"Sender.Push", map[string]any{"fd": int64(1) << 60, "data": "x"}, sender.CodeInvalidFD, ""},
	{"Sender.Push", map[string]any{"fd": 1, "data": strings.Repeat("x", 2000)}, sender.CodeTooLarge, "limit is 1024"},
	{"Sender.Push", map[string]any{"fd": 1, "data": "x", "opcode": 8}, sender.CodeInvalidOpcode, ""},
	{"Sender.Push", map[string]any{"fd": 1, "data": "x", "opcode": 77}, sender.CodeInvalidOpcode, ""},
	{"Sender.Push", map[string]any{"fd": 1, "data": "%%%", "encoding": "base64"}, sender.CodeBadRequest, "base64"},
	{"Sender.Push", map[string]any{"fd": 1, "data": "x", "encoding": "rot13"}, sender.CodeBadRequest, "unknown encoding"},
	{"Sender.Push", map[string]any{"fd": "one", "data": "x"}, sender.CodeBadRequest, "cannot decode the arguments of Sender.Push"},
	{"Sender.Push", map[string]any{"fd": 1, "data": 12}, sender.CodeBadRequest, "cannot decode"},
	{"Sender.Push", map[string]any{"fd": 1.5, "data": "x"}, sender.CodeBadRequest, "cannot decode"},
	{"Sender.Push", []int{1, 2}, sender.CodeBadRequest, "cannot decode"},
	{"Sender.Disconnect", map[string]any{"fd": 1, "code": 1006}, sender.CodeInvalidCloseCode, ""},
	{"Sender.Push", map[string]any{"fd": 1, "data": "/w==", "encoding": "base64"}, sender.CodeInvalidUTF8, "UTF-8"},
	{"Sender.Join", map[string]any{"fd": 1, "group": ""}, sender.CodeInvalidName, ""},
	{"Sender.PushGroup", map[string]any{"group": "g", "data": "x", "opcode": 9}, sender.CodeInvalidOpcode, ""},
	{"Sender.PushBatch", map[string]any{"messages": []map[string]any{{"fd": 1, "data": "x", "encoding": "hex"}}}, sender.CodeBadRequest, "message 0"},
	{"Sender.PushMany", map[string]any{"fds": make([]int64, sender.MaxBatch+1), "data": "x"}, sender.CodeBadRequest, "limit"},
	{"Sender.Nope", map[string]any{}, "", "can't find method"},
	{"Nope.Push", map[string]any{}, "", "can't find service"},
	{"NoDot", map[string]any{}, "", "ill-formed"},
}

func TestServiceErrors(t *testing.T) {
	e := startEnv(t, "tcp", bridge.Config{MaxPushSize: 1024, QueueBytes: 1024}, rpc.Config{})
	ws, fd := e.dial(t, "a")
	c := e.client(t, rpc.JSON)
	for _, tt := range serviceErrorTests {
		var out any
		err := c.Call(tt.method, tt.args, &out)
		var re *sender.Error
		switch {
		case err == nil:
			t.Errorf("%s(%v) succeeded, want an error", tt.method, tt.args)
		case tt.code != "" && (!errors.As(err, &re) || re.Code != tt.code):
			t.Errorf("%s(%v) = %v, want code %s", tt.method, tt.args, err, tt.code)
		case !strings.Contains(err.Error(), tt.text):
			t.Errorf("%s(%v) = %v, want it to mention %q", tt.method, tt.args, err, tt.text)
		}
	}
	// The same connection, and the WebSocket client, are still served.
	if !call[bool](t, c, "Sender.Push", map[string]any{"fd": fd, "data": "still here"}) {
		t.Fatal("push after errors = false")
	}
	readText(t, ws, "still here")
}

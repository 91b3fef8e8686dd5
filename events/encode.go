package events

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/wsbridge/wsbridge/bridge"
)

// The events of a batch, as docs/PROTOCOL.md shows them. An event is
// encoded on its connection's reader goroutine, outside the Dispatcher's
// lock, except its head ({"type":…,"fd":…,"seq":…), which is written when a
// batch is built: seq is given under the lock, in queue order. The encoded
// event is kept until it is acknowledged, so a batch is a concatenation and
// its size is known before it is built.

// event is one encoded event.
type event struct {
	typ  string // open, message or close
	fd   int64
	seq  uint64
	path []byte // message and close: the connection's path, JSON-encoded (fdQueue.path); nil: left out
	rest []byte // the JSON object's other fields, without its opening brace
}

// size bounds the bytes e takes in a batch, its comma included.
func (e event) size() int { return len(e.rest) + len(e.path) + 80 }

// appendTo appends e as a JSON object.
func (e event) appendTo(b []byte) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, e.typ...)
	b = append(b, `","fd":`...)
	b = strconv.AppendInt(b, e.fd, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.seq, 10)
	b = append(b, ',')
	if e.path != nil {
		b = append(b, `"path":`...)
		b = append(b, e.path...)
		b = append(b, ',')
	}
	return append(b, e.rest...)
}

type openEvent struct {
	Time        int64       `json:"time"`
	Path        string      `json:"path"`
	Query       string      `json:"query"`
	Headers     http.Header `json:"headers"`
	RemoteAddr  string      `json:"remote_addr"`
	Subprotocol string      `json:"subprotocol"`
	User        *string     `json:"user"` // null without one
	Groups      []string    `json:"groups"`
}

type textEvent struct {
	Time   int64  `json:"time"`
	Opcode int    `json:"opcode"`
	Data   string `json:"data"`
}

type binaryEvent struct {
	Time     int64  `json:"time"`
	Opcode   int    `json:"opcode"`
	Data     []byte `json:"data"` // encoding/json writes standard base64
	Encoding string `json:"encoding"`
}

type closeEvent struct {
	Time     int64  `json:"time"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	By       string `json:"by"`
	LostNode *int   `json:"lost_node,omitempty"` // the close of an fd of a lost cluster node
}

func encodeOpen(info bridge.ConnInfo, ms int64) event {
	groups := info.Groups
	if groups == nil {
		groups = []string{}
	}
	headers := info.Header
	if headers == nil {
		headers = http.Header{}
	}
	var user *string
	if info.User != "" {
		user = &info.User
	}
	return event{typ: "open", fd: info.FD, rest: marshalRest(openEvent{
		Time: ms,
		Path: info.Path,
		// bridge.ConnInfo keeps the parsed query, not the raw string:
		// this is its canonical encoding (keys sorted), which parse_str
		// reads into the same array. See docs/PROTOCOL.md.
		Query:       info.RawQuery,
		Headers:     headers,
		RemoteAddr:  info.RemoteAddr,
		Subprotocol: info.Subprotocol,
		User:        user,
		Groups:      groups,
	})}
}

func encodeMessage(fd int64, ms int64, op bridge.Opcode, data []byte) event {
	if op == bridge.OpText {
		return event{typ: "message", fd: fd, rest: marshalRest(textEvent{Time: ms, Opcode: int(op), Data: string(data)})}
	}
	return event{typ: "message", fd: fd, rest: marshalRest(binaryEvent{Time: ms, Opcode: int(op), Data: data, Encoding: "base64"})}
}

// MaxCloseEventSize bounds the size of a close event: RFC 6455 allows a
// close reason of 123 bytes at most, each of which JSON may escape to six
// (\u0001), with a code that fits a close frame (two bytes). Each
// connection whose open event is accepted reserves this much for its close
// event (Stats.Reserved).
const MaxCloseEventSize = 1 << 10

// maxCloseReason is the longest close reason a close frame can carry.
const maxCloseReason = 123

func encodeClose(fd int64, ms int64, ev bridge.CloseEvent) event {
	by := "client"
	if ev.ByServer {
		by = "server"
	}
	// The bridge never passes a longer reason or a code outside 0..65535
	// (a close frame cannot carry them); cut here all the same, so that
	// the reserved room always holds the event.
	reason := ev.Reason
	if len(reason) > maxCloseReason {
		reason = strings.ToValidUTF8(reason[:maxCloseReason], "")
	}
	code := ev.Code
	if code < 0 || code > 0xffff {
		code = 1006
	}
	return event{typ: "close", fd: fd, rest: marshalRest(closeEvent{Time: ms, Code: code, Reason: reason, By: by})}
}

// encodeLost is the close event of an fd of a lost node.
func encodeLost(fd int64, ms int64, node int) event {
	return event{typ: "close", fd: fd, rest: marshalRest(closeEvent{Time: ms, Code: 1006, Reason: LostReason, By: "server", LostNode: &node})}
}

// marshalRest encodes v, a struct with at least one field, without HTML
// escaping (it is not HTML, and a message's text stays as the client sent
// it) and without the opening brace.
func marshalRest(v any) []byte {
	b := marshal(v)
	return b[1:]
}

// marshal encodes v without HTML escaping.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only the types of this package reach here; none of them can fail.
		panic("events: cannot encode: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
}

// batchBody is the request body of a batch of events.
func batchBody(node int, events []event) []byte {
	n := 32
	for _, e := range events {
		n += e.size() + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"node":`...)
	b = strconv.AppendInt(b, int64(node), 10)
	b = append(b, `,"events":[`...)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.appendTo(b)
	}
	return append(b, "]}"...)
}

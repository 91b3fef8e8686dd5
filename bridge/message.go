package bridge

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// Opcode is a WebSocket frame opcode, numbered as in RFC 6455 and Swoole.
type Opcode int

// Opcodes a push may use. OpContinuation is valid only while a fragmented
// message is open on the fd.
const (
	OpContinuation Opcode = 0
	OpText         Opcode = websocket.TextMessage
	OpBinary       Opcode = websocket.BinaryMessage
	OpPing         Opcode = websocket.PingMessage
	OpPong         Opcode = websocket.PongMessage
)

func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%d)", int(op))
}

func (op Opcode) isControl() bool { return op == OpPing || op == OpPong }

// maxControlPayload is RFC 6455's limit on a control frame's payload.
const maxControlPayload = 125

// ConnInfo is what the bridge keeps of a connection's handshake.
type ConnInfo struct {
	FD          int64
	Path        string
	RawQuery    string // the query string as the client sent it
	Query       url.Values
	Header      http.Header
	RemoteAddr  string
	Subprotocol string
	ConnectedAt time.Time
	Worker      int
	Groups      []string // sorted; filled by Hub.Info
	User        string   // the bound user id, if any; filled by Hub.Info
}

// validCloseCode reports whether code may be sent in a close frame
// (RFC 6455 section 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

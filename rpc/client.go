package rpc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/socket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/sender"
)

// Codec selects how a Client encodes calls.
type Codec byte

// Codecs a Client can use.
const (
	JSON    Codec = Codec(frame.CodecJSON)
	Msgpack Codec = Codec(frame.CodecMsgpack)
)

// Client calls the Sender service over one connection, for Go programs and
// tests. It speaks the goridge v3 frame protocol with JSON or msgpack
// bodies (goridge's own Go client speaks gob). Calls are serialized; a
// Client is safe for concurrent use.
type Client struct {
	codec Codec
	conn  net.Conn
	relay *socket.Relay

	mu  sync.Mutex
	seq uint32
}

// Dial connects to addr (tcp://host:port or unix:///path).
func Dial(addr string, codec Codec, timeout time.Duration) (*Client, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	return NewClient(conn, codec), nil
}

// NewClient wraps an open connection. Replies are read through a buffer:
// goridge's relay reads a frame's header, options and payload separately,
// one system call each without it.
func NewClient(conn net.Conn, codec Codec) *Client {
	rwc := struct {
		io.Reader
		io.Writer
		io.Closer
	}{bufio.NewReader(conn), conn, conn}
	return &Client{codec: codec, conn: conn, relay: socket.NewSocketRelay(rwc)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call invokes method (e.g. "Sender.Push") with args and decodes the reply
// into reply. A service error comes back as *sender.Error when it carries a code.
func (c *Client) Call(method string, args, reply any) error {
	var body []byte
	var err error
	if c.codec == Msgpack {
		body, err = msgpack.Marshal(args)
	} else {
		body, err = json.Marshal(args)
	}
	if err != nil {
		return fmt.Errorf("rpc: encode %s: %w", method, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if err := c.relay.Send(RequestFrame(byte(c.codec), c.seq, method, body)); err != nil {
		return fmt.Errorf("rpc: send %s: %w", method, err)
	}
	fr := frame.NewFrame()
	if err := c.relay.Receive(fr); err != nil {
		return fmt.Errorf("rpc: receive %s: %w", method, err)
	}
	opts := fr.ReadOptions(fr.Header())
	if len(opts) != 2 || int(opts[1]) > len(fr.Payload()) {
		return errors.New("rpc: malformed response frame")
	}
	if opts[0] != c.seq {
		return fmt.Errorf("rpc: response sequence %d, want %d", opts[0], c.seq)
	}
	payload := fr.Payload()[opts[1]:]
	if fr.ReadFlags()&frame.ERROR != 0 {
		return parseError(string(payload))
	}
	if c.codec == Msgpack {
		return msgpack.Unmarshal(payload, reply)
	}
	return json.Unmarshal(payload, reply)
}

// RequestFrame encodes one goridge RPC request frame.
func RequestFrame(codec byte, seq uint32, method string, body []byte) *frame.Frame {
	fr := frame.NewFrame()
	fr.WriteVersion(fr.Header(), frame.Version1)
	fr.WriteFlags(fr.Header(), codec)
	fr.WriteOptions(fr.HeaderPtr(), seq, uint32(len(method)))
	fr.WritePayloadLen(fr.Header(), uint32(len(method)+len(body)))
	fr.WritePayload(append([]byte(method), body...))
	fr.WriteCRC(fr.Header())
	return fr
}

// parseError reads "code: message" back into an *sender.Error; other texts (from
// net/rpc itself, e.g. an unknown method) stay plain errors.
func parseError(s string) error {
	code, msg, ok := strings.Cut(s, ": ")
	if ok && code != "" && strings.Trim(code, "abcdefghijklmnopqrstuvwxyz0123456789_") == "" {
		return &sender.Error{Code: code, Message: msg}
	}
	return errors.New(s)
}

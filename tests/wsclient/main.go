// Command wsclient is a WebSocket client for tests written in other
// languages (the PHP client's end-to-end tests): it connects to a URL with
// gorilla/websocket and prints one JSON line per event on stdout:
//
//	{"event":"open"}
//	{"event":"message","opcode":1,"data":"<base64>"}
//	{"event":"close","code":1000,"text":"..."}
//	{"event":"error","error":"..."}
//
// It exits after the connection ends, or when its stdin closes.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

type event struct {
	Event  string `json:"event"`
	Opcode int    `json:"opcode,omitempty"`
	Data   []byte `json:"data,omitempty"` // base64 in JSON
	Code   int    `json:"code,omitempty"`
	Text   string `json:"text,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	url := flag.String("url", "", "ws:// URL to connect to")
	flag.Parse()
	out := json.NewEncoder(os.Stdout)
	emit := func(e event) { _ = out.Encode(e) }

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(*url, nil)
	if err != nil {
		emit(event{Event: "error", Error: err.Error()})
		os.Exit(1)
	}
	go func() { // the test ends the client by closing stdin
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = c.Close()
	}()
	emit(event{Event: "open"})
	for {
		op, data, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				emit(event{Event: "close", Code: ce.Code, Text: ce.Text})
			} else {
				emit(event{Event: "error", Error: err.Error()})
			}
			return
		}
		emit(event{Event: "message", Opcode: op, Data: data})
	}
}

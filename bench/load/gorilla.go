package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The naive server: what a Go programmer writes first with gorilla, after
// its chat example. A reader and a writer goroutine per connection, a
// buffered channel of 256 messages between them (a full one closes the
// connection: the slow client is dropped), one global lock around the set
// of connections. POST /publish?group=<k> sends its body to every
// connection (of group k) as one text message, encoded once
// (PreparedMessage). It is the reference for what a plain gorilla server
// costs on this machine, not a product: no keepalive, no limits.
//
// With -floor it is the write floor instead: no writer goroutines and no
// channels; POST /publish encodes the frame once and writes it to each
// connection's socket with one write system call, one connection after the
// other, from the request's goroutine. That is the least a server can do
// per delivery (BenchmarkLoopbackWriteFloor in bench/ measures the same
// without WebSocket clients), measured from outside with the same clients
// as the others.
func gorillaMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load serve-gorilla", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	floor := fs.Bool("floor", false, "write each delivery with one write system call from the publishing request (no writer goroutines)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	s := &naive{conns: make(map[*naiveConn]struct{})}
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		g := -1
		if v := r.URL.Query().Get("group"); v != "" {
			g, _ = strconv.Atoi(v)
		}
		c := &naiveConn{ws: ws, group: g}
		if !*floor {
			c.send = make(chan *websocket.PreparedMessage, 256)
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		if !*floor {
			go c.writePump()
		}
		c.readPump(s)
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g := -1
		if v := r.URL.Query().Get("group"); v != "" {
			g, _ = strconv.Atoi(v)
		}
		if *floor {
			fmt.Fprintf(w, "%d\n", s.writeAll(g, textFrame(body)))
			return
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		n := 0
		s.mu.Lock()
		for c := range s.conns {
			if g >= 0 && c.group != g {
				continue
			}
			select {
			case c.send <- pm:
				n++
			default:
				delete(s.conns, c)
				close(c.send)
			}
		}
		s.mu.Unlock()
		fmt.Fprintf(w, "%d\n", n)
	})
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	_ = srv.Serve(ln)
	return 0
}

type naive struct {
	mu    sync.Mutex
	conns map[*naiveConn]struct{}
}

type naiveConn struct {
	ws    *websocket.Conn
	group int
	send  chan *websocket.PreparedMessage
}

// writeAll writes frame to every connection (of group g) with one write
// each (the -floor server) and returns how many took it.
func (s *naive) writeAll(g int, frame []byte) int {
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if g >= 0 && c.group != g {
			continue
		}
		if _, err := c.ws.NetConn().Write(frame); err == nil {
			n++
		}
	}
	return n
}

// textFrame is one unmasked, final text frame of data, as a server sends it.
func textFrame(data []byte) []byte {
	n := len(data)
	var f []byte
	switch {
	case n <= 125:
		f = []byte{0x81, byte(n)}
	case n <= 0xffff:
		f = []byte{0x81, 126, byte(n >> 8), byte(n)}
	default:
		f = []byte{0x81, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(f, data...)
}

func (c *naiveConn) readPump(s *naive) {
	defer func() {
		s.mu.Lock()
		if _, ok := s.conns[c]; ok {
			delete(s.conns, c)
			if c.send != nil {
				close(c.send)
			}
		}
		s.mu.Unlock()
		_ = c.ws.Close()
	}()
	for {
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

func (c *naiveConn) writePump() {
	defer c.ws.Close()
	for pm := range c.send {
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.ws.WritePreparedMessage(pm); err != nil {
			return
		}
	}
	_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
}

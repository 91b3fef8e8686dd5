package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bench"
)

// A client process holds a share of the connections. The driver starts it
// (this binary, "client" as its first argument) and talks to it by lines:
//
//	driver → client (stdin):  go | hist | EOF (close everything and exit)
//	client → driver (stdout): o <opened>   while dialing, every 100 ms
//	                          ready <n>    all n open (and subscribed)
//	                          c <received> every 100 ms once ready: messages received so far
//	                          h <json>     the latency histogram since the last one (answers hist)
//	                          closed <n>   connections that ended before EOF (reported once, at EOF)
//
// Each message carries "ts":<unix ns> of its sending; the latency is the
// receive time minus it (same machine, same clock). A frame may hold several
// messages (Centrifugo batches pushes into one frame, one JSON a line):
// every "ts": in it counts.
func clientMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 0, "client process number")
	first := fs.Int("first", 0, "global index of this process's first connection")
	n := fs.Int("n", 0, "connections to open")
	url := fs.String("url", "", "WebSocket URL")
	src := fs.String("src", "127.0.0.2-127.0.0.9", "source addresses")
	proto := fs.String("proto", "raw", "raw (wsbridge, gorilla) or centrifugo")
	groups := fs.Int("groups", 0, "connection i joins group i mod groups (centrifugo: subscribes to channel g<k>; gorilla: ?group=<k>)")
	concurrency := fs.Int("concurrency", 32, "handshakes in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addrs, err := bench.ParseLoopbackAddrs(*src)
	if err != nil || *n < 1 || *url == "" {
		fmt.Fprintf(stderr, "load client: bad arguments (%v)\n", err)
		return 2
	}
	in := bufio.NewReader(stdin)
	if line, err := in.ReadString('\n'); err != nil || line != "go\n" {
		return 0
	}
	out := &lineWriter{w: stdout}
	cl := &client{proto: *proto, out: out}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var opened atomic.Int64
	stopTicks := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTicks:
				return
			case <-t.C:
				out.printf("o %d", opened.Load())
			}
		}
	}()
	conns := make([]*websocket.Conn, *n)
	next := make(chan int)
	errs := make(chan error, *concurrency)
	var dialers sync.WaitGroup
	for range *concurrency {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range next {
				g := -1
				if *groups > 0 {
					g = (*first + i) % *groups
				}
				u := *url
				if g >= 0 && *proto == "raw" {
					u += "?group=" + strconv.Itoa(g)
				}
				ws, err := dial(ctx, u, addrs[(*first+i)%len(addrs)].AsSlice())
				if err == nil && *proto == "centrifugo" {
					err = cl.subscribe(ws, g)
				}
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", *first+i, err)
					cancel()
					return
				}
				conns[i] = ws
				opened.Add(1)
				cl.readers.Add(1)
				go cl.read(ws)
			}
		}()
	}
feed:
	for i := range *n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	dialers.Wait()
	close(stopTicks)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}
	select {
	case err := <-errs:
		fmt.Fprintf(stderr, "load client %d: %v\n", *id, err)
		closeAll()
		cl.readers.Wait()
		return 1
	default:
	}
	out.printf("ready %d", *n)

	done := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				out.printf("c %d", cl.received.Load())
			}
		}
	}()
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			break
		}
		if line == "hist\n" {
			b, _ := json.Marshal(cl.lat.snapshot())
			for i := range cl.lat.counts {
				cl.lat.counts[i].Store(0)
			}
			out.printf("c %d", cl.received.Load())
			out.printf("h %s", b)
		}
	}
	close(done)
	out.printf("closed %d", cl.ended.Load())
	closeAll()
	cl.readers.Wait()
	return 0
}

// lineWriter writes whole lines from many goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

type client struct {
	proto    string
	out      *lineWriter
	readers  sync.WaitGroup
	received atomic.Int64 // messages (a "ts": each)
	ended    atomic.Int64 // connections that ended
	lat      hist
}

// subscribe sends Centrifugo's connect and subscribe commands (protocol
// v2, JSON) and waits for the subscribe reply: the channel "bench", and
// "g<group>" when group ≥ 0.
func (cl *client) subscribe(ws *websocket.Conn, group int) error {
	cmds := `{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"bench"}}`
	if group >= 0 {
		cmds += "\n" + `{"id":3,"subscribe":{"channel":"g` + strconv.Itoa(group) + `"}}`
	}
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(cmds)); err != nil {
		return err
	}
	want := 2
	if group >= 0 {
		want = 3
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < want; {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if bytes.Contains(line, []byte(`"error"`)) {
				return fmt.Errorf("centrifugo refused: %s", line)
			}
			if bytes.HasPrefix(line, []byte(`{"id":`)) {
				got++
			}
		}
	}
	_ = ws.SetReadDeadline(time.Time{})
	return nil
}

var tsKey = []byte(`"ts":`)

// read counts the messages of one connection until it ends. It reads each
// frame into a buffer of its own, reused: the clients' CPU time is not the
// figure measured, but it shares the machine with the server's.
func (cl *client) read(ws *websocket.Conn) {
	defer cl.readers.Done()
	defer cl.ended.Add(1)
	buf := make([]byte, 0, 512)
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			k, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		now := time.Now().UnixNano()
		if cl.proto == "centrifugo" && (len(buf) == 2 && string(buf) == "{}") {
			_ = ws.WriteMessage(websocket.TextMessage, buf) // the server's ping: pong
			continue
		}
		for p := buf; ; {
			i := bytes.Index(p, tsKey)
			if i < 0 {
				break
			}
			p = p[i+len(tsKey):]
			var ts int64
			j := 0
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				ts = ts*10 + int64(p[j]-'0')
				j++
			}
			p = p[j:]
			cl.received.Add(1)
			cl.lat.add(time.Duration(now - ts))
		}
	}
}

// dial opens one connection from the source address ip, retrying errors a
// loaded loopback can produce (a full accept queue, a port in use).
func dial(ctx context.Context, url string, ip []byte) (*websocket.Conn, error) {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  512,
	}
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		var ws *websocket.Conn
		var resp *http.Response
		ws, resp, err = d.DialContext(ctx, url, nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			return ws, nil
		}
		if ctx.Err() != nil || (errors.Is(err, websocket.ErrBadHandshake) && (resp == nil || resp.StatusCode != http.StatusServiceUnavailable)) {
			break
		}
	}
	return nil, err
}

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bench"
)

// clientMain is a client process: on the line "go" on stdin it opens n
// connections to url, spread over the source addresses, answers the hub's pings (gorilla's default ping
// handler) and otherwise stays idle. It prints "ready <n>" once all are
// open; then, when they have all ended, "closed <a> <b>": how many ended
// with the hub's close 1001 and how many otherwise. It exits when stdin
// reaches EOF, closing what is still open.
func clientMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idlemem -client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 0, "client process number")
	n := fs.Int("n", 0, "connections to open")
	url := fs.String("url", "", "the hub's WebSocket URL")
	src := fs.String("src", "127.0.0.2-127.0.0.9", "source addresses")
	concurrency := fs.Int("concurrency", 32, "handshakes in flight")
	compression := fs.Bool("compression", false, "offer permessage-deflate")
	browser := fs.Bool("browser-headers", false, "send a browser's handshake headers")
	expect := fs.Int("expect", 0, `print "received" once every connection has received this many messages`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addrs, err := bench.ParseLoopbackAddrs(*src)
	if err != nil || *n < 1 || *url == "" || *n > maxPerClient {
		fmt.Fprintf(stderr, "idlemem -client: bad arguments (%v)\n", err)
		return 2
	}
	in := bufio.NewReader(stdin)
	if line, err := in.ReadString('\n'); err != nil || line != "go\n" {
		return 0 // the hub process gave up before the start
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(stderr, "idlemem client %d: "+format+"\n", append([]any{*id}, args...)...)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "idlemem client %d: %v\n", *id, err)
		return 1
	}

	var (
		conns   = make([]*websocket.Conn, *n)
		readers sync.WaitGroup
		going   atomic.Int64 // ended with close 1001
		other   atomic.Int64
		allDone = make(chan struct{})
		got     atomic.Int64 // messages received, all connections
		gotAll  = make(chan struct{})
	)
	want := int64(*n) * int64(*expect)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}
	// Dial, concurrency at a time; connection i binds source address
	// i mod len(addrs) (and an ephemeral port of that address).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := make(chan int)
	errs := make(chan error, *concurrency)
	var dialers sync.WaitGroup
	for range *concurrency {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range next {
				var h http.Header
				if *browser {
					h = browserHeaders(*url, *id, i)
				}
				ws, err := dial(ctx, *url, addrs[(i+*id)%len(addrs)].AsSlice(), *compression, h, logf)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					cancel()
					return
				}
				conns[i] = ws
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						if _, _, err := ws.ReadMessage(); err != nil {
							if websocket.IsCloseError(err, websocket.CloseGoingAway) {
								going.Add(1)
							} else {
								other.Add(1)
							}
							_ = ws.Close()
							return
						}
						if got.Add(1) == want {
							close(gotAll)
						}
					}
				}()
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
	select {
	case err := <-errs:
		closeAll()
		readers.Wait()
		return fail(err)
	default:
	}
	fmt.Fprintf(stdout, "ready %d\n", *n)
	if want > 0 {
		go func() {
			<-gotAll
			fmt.Fprintf(stdout, "received %d\n", want)
		}()
	}

	go func() {
		readers.Wait()
		close(allDone)
	}()
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, in)
		close(eof)
	}()
	select {
	case <-allDone:
		fmt.Fprintf(stdout, "closed %d %d\n", going.Load(), other.Load())
		<-eof
	case <-eof:
		closeAll()
		readers.Wait()
	}
	return 0
}

// dial opens one connection from the source address ip, retrying a few
// times on errors a loaded loopback can produce (a full accept queue, a
// port still in use).
func dial(ctx context.Context, url string, ip []byte, compression bool, h http.Header, logf func(string, ...any)) (*websocket.Conn, error) {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	d := websocket.Dialer{
		NetDialContext:    nd.DialContext,
		HandshakeTimeout:  10 * time.Second,
		ReadBufferSize:    512, // a client reads pings and a close frame only
		WriteBufferSize:   512,
		EnableCompression: compression,
	}
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		var ws *websocket.Conn
		var resp *http.Response
		ws, resp, err = d.DialContext(ctx, url, h)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			return ws, nil
		}
		if ctx.Err() != nil || errors.Is(err, websocket.ErrBadHandshake) {
			break
		}
		logf("dial from %s, attempt %d: %v", net.IP(ip), attempt+1, err)
	}
	return nil, err
}

// browserHeaders returns the headers a desktop Chrome adds to a WebSocket
// handshake (besides those gorilla's Dialer sets itself), with a short
// session cookie: about 400 bytes, which the hub keeps if it keeps the
// handshake's headers.
func browserHeaders(url string, id, i int) http.Header {
	host := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/")
	return http.Header{
		"Origin":          {"http://" + host},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		"Accept-Encoding": {"gzip, deflate, br, zstd"},
		"Accept-Language": {"en-US,en;q=0.9,de;q=0.8"},
		"Cache-Control":   {"no-cache"},
		"Pragma":          {"no-cache"},
		"Cookie":          {fmt.Sprintf("PHPSESSID=%016x%016x; _ga=GA1.1.%d.1732500000; theme=dark", id, i, 100000000+i)},
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/rpc"

	"github.com/wsbridge/wsbridge/bench"
)

// connectFlood opens and closes WebSocket connections as fast as
// o.floodConcurrency dialers can for d: half end with a close frame, half
// with a bare TCP close. Each handshake carries o.floodHeaderBytes of
// headers (kept by the bridge for the open event).
func connectFlood(ctx context.Context, o *options, wsAddr string, d time.Duration) map[string]any {
	srcs, _ := bench.ParseLoopbackAddrs(o.src)
	var attempts, upgraded, other atomic.Int64
	var mu sync.Mutex
	statuses := map[string]int64{}
	errs := map[string]int64{}
	h := http.Header{}
	if o.floodHeaderBytes > 0 {
		h.Set("X-Soak-Pad", strings.Repeat("h", o.floodHeaderBytes))
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for k := range o.floodConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; ctx.Err() == nil; i += o.floodConcurrency {
				nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: srcs[i%len(srcs)].AsSlice()}, Timeout: 5 * time.Second}
				dl := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 5 * time.Second, ReadBufferSize: 256, WriteBufferSize: 256}
				ws, resp, err := dl.DialContext(ctx, "ws://"+wsAddr+"/?flood="+strconv.Itoa(i), h)
				if resp != nil && resp.Body != nil {
					_ = resp.Body.Close()
				}
				if err != nil {
					// The dial's own deadline is the context's and may fire
					// a moment before the context reports it.
					if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
						return // cut by the fault's end: not an attempt
					}
					attempts.Add(1)
					mu.Lock()
					if resp != nil {
						key := strconv.Itoa(resp.StatusCode)
						if ra := resp.Header.Get("Retry-After"); ra != "" {
							key += " Retry-After " + ra
						}
						statuses[key]++
					} else {
						errs[errClass(err)]++
					}
					mu.Unlock()
					other.Add(1)
					continue
				}
				attempts.Add(1)
				upgraded.Add(1)
				if i%2 == 0 {
					_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				}
				_ = ws.Close()
			}
		}()
	}
	wg.Wait()
	return map[string]any{
		"attempts": attempts.Load(), "upgraded": upgraded.Load(), "refused_by_status": statuses, "errors": errs,
		"concurrency": o.floodConcurrency, "header_bytes": o.floodHeaderBytes,
	}
}

// errClass names an error for counting: the last part of its text,
// without addresses.
func errClass(err error) string {
	s := err.Error()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s = "timeout: " + s
	}
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// slowloris holds o.slowloris connections on each port for d, each sending
// an incomplete request one byte every o.slowInterval: on the WebSocket
// and admin ports an HTTP request whose headers never end, on the RPC port
// a goridge frame that announces a 1 MiB payload that never completes. It
// reports per port how many the bridge closed, and how fast.
func slowloris(ctx context.Context, o *options, b *bridgeProc, d time.Duration) map[string]any {
	srcs, _ := bench.ParseLoopbackAddrs(o.src)
	frame := rpc.RequestFrame(8, 1, "Sender.Check", make([]byte, 1<<20))
	rpcHead := frame.Bytes()[:12+8+len("Sender.Check")+64] // header, options, method, the payload's start
	ports := []struct{ name, addr, first, trickle string }{
		{"websocket", b.wsAddr, "GET /?slowloris=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n", "X-Slow: " + strings.Repeat("s", 4096)},
		{"rpc", b.rpcAddr, string(rpcHead[:12]), string(rpcHead[12:]) + strings.Repeat("\x00", 4096)},
		{"admin", b.adminAddr, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n", "X-Slow: " + strings.Repeat("s", 4096)},
	}
	out := map[string]any{"per_port": o.slowloris, "interval": o.slowInterval.String()}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type portResult struct {
		opened, failed, closed atomic.Int64
		mu                     sync.Mutex
		times                  []time.Duration
	}
	results := make([]*portResult, len(ports))
	var wg sync.WaitGroup
	for pi, port := range ports {
		r := &portResult{}
		results[pi] = r
		for i := range o.slowloris {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: srcs[(i+pi)%len(srcs)].AsSlice()}, Timeout: 5 * time.Second}
				c, err := nd.DialContext(ctx, "tcp", port.addr)
				if err != nil {
					r.failed.Add(1)
					return
				}
				defer c.Close()
				r.opened.Add(1)
				start := time.Now()
				_, err = c.Write([]byte(port.first))
				buf := make([]byte, 512)
				for j := 0; err == nil; j++ {
					_ = c.SetReadDeadline(time.Now().Add(o.slowInterval))
					var n int
					n, err = c.Read(buf)
					if n > 0 { // an answer (408, 400, an RPC error) ends it too
						err = errors.New("answered")
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						if ctx.Err() != nil {
							return // still held at the end: not closed by the bridge
						}
						_, err = c.Write([]byte{port.trickle[j%len(port.trickle)]})
					}
				}
				r.closed.Add(1)
				r.mu.Lock()
				r.times = append(r.times, time.Since(start))
				r.mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for pi, port := range ports {
		r := results[pi]
		sort.Slice(r.times, func(a, b int) bool { return r.times[a] < r.times[b] })
		pr := map[string]any{
			"opened": r.opened.Load(), "connect_failed": r.failed.Load(),
			"closed_by_bridge": r.closed.Load(), "held_to_the_end": r.opened.Load() - r.closed.Load(),
		}
		if len(r.times) > 0 {
			pr["median_seconds_to_close"] = round2(r.times[len(r.times)/2].Seconds())
			pr["max_seconds_to_close"] = round2(r.times[len(r.times)-1].Seconds())
		}
		out[port.name] = pr
	}
	return out
}

// rpcFlood opens o.rpcFloodConns RPC connections that pipeline
// Sender.Check calls for d without reading a single reply.
func rpcFlood(ctx context.Context, o *options, rpcAddr string, d time.Duration) map[string]any {
	frame := rpc.RequestFrame(8, 0, "Sender.Check", []byte(`{"fd":1}`)).Bytes()
	var written, blocked, closed, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range o.rpcFloodConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", rpcAddr)
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			// 64 frames per write; sequence numbers need not differ for a
			// flood (the bridge answers each).
			chunk := make([]byte, 0, 64*len(frame))
			for range 64 {
				chunk = append(chunk, frame...)
			}
			for ctx.Err() == nil {
				_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := c.Write(chunk); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						blocked.Add(1) // the bridge stopped reading: backpressure
						continue
					}
					closed.Add(1)
					return
				}
				written.Add(64)
			}
		}()
	}
	wg.Wait()
	return map[string]any{
		"connections": o.rpcFloodConns, "connect_failed": failed.Load(), "calls_written": written.Load(),
		"writes_blocked_500ms": blocked.Load(), "closed_by_bridge": closed.Load(),
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// holdIdleHTTP opens o.sigtermIdleHTTP connections to the WebSocket port,
// each with a request whose announced body never comes (POST with
// Content-Length: 10): the clients that used to hold a graceful shutdown
// for its whole deadline. It returns them once all are sent.
func holdIdleHTTP(o *options, wsAddr string) []net.Conn {
	var conns []net.Conn
	for range o.sigtermIdleHTTP {
		c, err := net.DialTimeout("tcp", wsAddr, 5*time.Second)
		if err != nil {
			continue
		}
		if _, err := c.Write([]byte("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n")); err != nil {
			_ = c.Close()
			continue
		}
		conns = append(conns, c)
	}
	return conns
}

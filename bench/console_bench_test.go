package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/sender"
)

// BenchmarkPushWithConsoleViewers is BenchmarkPush (100 connections over
// pipes) while the console's live stream (GET /v1/stream) has viewers:
// none; 100 that read every sample; 100 that never read (each is dropped
// once StreamBuffer samples behind, and reconnects at once, as a browser
// would not, to keep them there). The stream samples every 100 ms here,
// ten times the default, to make its cost visible. ns/op and cpu-ns/op
// compared with viewers=0 are what the viewers cost the pushes.
func BenchmarkPushWithConsoleViewers(b *testing.B) {
	for _, c := range []struct {
		viewers int
		reading bool
	}{{0, true}, {100, true}, {100, false}} {
		name := fmt.Sprintf("viewers=%d", c.viewers)
		if !c.reading {
			name += "/stalled"
		}
		b.Run(name, func(b *testing.B) {
			const n = 100
			f := newFixture(b, pipe, n, benchConfig(n))
			reg := admin.NewRegistry()
			m, err := admin.NewMetrics(reg)
			if err != nil {
				b.Fatal(err)
			}
			srv, err := admin.New(f.hub, sender.NewService(f.hub), admin.Config{Addr: "127.0.0.1:0", Token: benchToken,
				Gatherer: reg, StreamInterval: 100 * time.Millisecond, Logger: f.hub.Config().Logger})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Watch(admin.Sources{Hub: f.hub, Admin: srv}); err != nil {
				b.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				b.Fatal(err)
			}
			go func() { _ = srv.Serve() }()
			stop := make(chan struct{})
			done := make(chan struct{}, c.viewers)
			for range c.viewers {
				go viewer(srv.Addr(), c.reading, stop, done)
			}
			b.Cleanup(func() {
				close(stop)
				_ = srv.Shutdown(b.Context())
				for range c.viewers {
					<-done
				}
			})
			deadline := time.Now().Add(10 * time.Second)
			for {
				var st admin.StreamStats
				if st = streamStats(b, srv); st.Viewers >= c.viewers || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			pushLoop(b, f, n)
			b.ReportMetric(float64(streamStats(b, srv).Dropped), "viewers-dropped")
		})
	}
}

const benchToken = "bench-admin-token-0123456789abcdef"

// viewer watches GET /v1/stream over raw TCP until stop, reading what comes
// when reading, else nothing; a dropped viewer comes back.
func viewer(addr string, reading bool, stop <-chan struct{}, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		go func() { <-stop; c.Close() }()
		fmt.Fprintf(c, "GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", benchToken)
		if !reading {
			<-stop
			return
		}
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadSlice('\n'); err != nil && err != bufio.ErrBufferFull {
				break
			}
		}
		c.Close()
	}
}

func streamStats(b *testing.B, srv *admin.Server) admin.StreamStats {
	req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/v1/about", nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var a admin.About
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		b.Fatal(err)
	}
	return a.Stream
}

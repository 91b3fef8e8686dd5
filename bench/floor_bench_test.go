package bench

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkLoopbackWriteFloor is the floor under any push to a connection
// whose queue was empty: one write system call of a small WebSocket frame
// (64 bytes of data, 66 on the wire) to a loopback TCP socket, with no
// WebSocket library, no hub and no RPC. GOMAXPROCS goroutines write to n
// connections round-robin, each to its own share of them; the receiving
// ends read in bulk every 10 ms, as bench/rpcload's clients do by default.
// So ns/op is the best rate at which this machine can write one message
// per connection, and cpu-ns/op what each such write costs, the kernel's
// work for the receiving socket included (on loopback it is done inside
// the sender's write).
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	for _, n := range []int{1, 10, 100, 5000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { benchWriteFloor(b, n) })
	}
}

func benchWriteFloor(b *testing.B, n int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var readers sync.WaitGroup
	stop := make(chan struct{})
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = s
		readers.Add(1)
		go func() { // reads in bulk until the end
			defer readers.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				select {
				case <-stop:
					_, _ = io.Copy(io.Discard, c)
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	frame := make([]byte, 66)
	frame[0], frame[1] = 0x81, 64
	writers := runtime.GOMAXPROCS(0)
	var ops sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for w := range writers {
		ops.Add(1)
		go func() {
			defer ops.Done()
			// Writer w takes ops w, w+writers, ...; op k writes to connection k mod n.
			for k := w; k < b.N; k += writers {
				if _, err := conns[k%n].Write(frame); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	ops.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	close(stop)
	for _, s := range conns {
		s.Close()
	}
	readers.Wait()
}

package bench

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// The benchmarks' transports and connection counts: a small count that runs
// in a moment (-bench '/conns=100/'), the 10k of the issue over in-memory
// pipes, and loopback TCP for comparison, where one process holding both
// ends of 5000 connections uses 10,000 of its 20,000 file descriptors.
var benchCases = []struct {
	transport string
	conns     int
}{
	{pipe, 100}, {pipe, 10000},
	{tcp, 100}, {tcp, 5000},
}

// payload is the message every benchmark sends: 32 bytes, binary (a text
// message would add a UTF-8 check of the payload to every push).
var payload = bytes.Repeat([]byte{'x'}, 32)

// BenchmarkPush pushes to the open connections round-robin (fd 1, 2, ...,
// n, 1, ...): each op is one hub.Push, that is, fd validation, routing to the
// worker (read lock, map lookup), the connection's queue lock and append,
// and starting the connection's writer goroutine when its queue was empty.
// The writers write to the pipes concurrently, on the same 2 cores, and
// their CPU time and allocations are in ns/op and allocs/op (allocations
// are counted process-wide). The loop keeps at most window messages
// unwritten, so ns/op is the sustained rate at which pushes are routed,
// queued AND written, not a burst into ever longer queues. cpu-ns/op is the
// CPU time of the whole process per op (hub, writers, clients, and for TCP
// the kernel), enqueue-ns/op the wall time spent in the push loop itself,
// without the waits for the writers.
func BenchmarkPush(b *testing.B) {
	for _, c := range benchCases {
		b.Run(fmt.Sprintf("conns=%d/%s", c.conns, c.transport), func(b *testing.B) { benchPush(b, c.transport, c.conns) })
	}
}

func benchPush(b *testing.B, transport string, n int) {
	pushLoop(b, newFixture(b, transport, n, benchConfig(n)), n)
}

// pushLoop is BenchmarkPush's loop over f's n connections.
func pushLoop(b *testing.B, f *fixture, n int) {
	const window = 1024 // messages pushed but not yet written, at most (plus 63)
	frame := frameLen(len(payload))
	base := f.total.Load()
	var (
		sent    int64
		fd      int64
		waiting time.Duration
	)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	start := time.Now()
	for b.Loop() {
		fd++
		if fd > int64(n) {
			fd = 1
		}
		if err := f.hub.Push(fd, payload, bridge.OpBinary, true); err != nil {
			b.Fatalf("push %d to fd %d: %v", sent, fd, err)
		}
		sent++
		if sent&63 == 0 && sent-(f.total.Load()-base)/frame > window {
			t := time.Now()
			if err := f.waitTotal(base+(sent-window/2)*frame, 30*time.Second); err != nil {
				b.Fatal(err)
			}
			waiting += time.Since(t)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(elapsed-waiting)/float64(b.N), "enqueue-ns/op")
	// Leave nothing in flight for the teardown (outside the timing: at most
	// window+63 messages, well under 0.1% of a 1s run).
	if err := f.waitTotal(base+sent*frame, 30*time.Second); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBroadcast sends one broadcast to all n connections per op: the
// frame is encoded once (a gorilla PreparedMessage), queued on every
// connection (one worker snapshot per worker, one queue lock and append per
// connection, a writer goroutine started per connection) and written by the
// n writers. An op ends when every client has received the frame, so ns/op
// is the time to deliver a broadcast to n connections on 2 cores and
// cpu-ns/op the CPU time it takes (the whole process, as for Push);
// enqueue-ns/op is the time spent in the hub.Broadcast call, during which
// the writers it has started already run on the other core.
func BenchmarkBroadcast(b *testing.B) {
	for _, c := range benchCases {
		b.Run(fmt.Sprintf("conns=%d/%s", c.conns, c.transport), func(b *testing.B) { benchBroadcast(b, c.transport, c.conns) })
	}
}

func benchBroadcast(b *testing.B, transport string, n int) {
	f := newFixture(b, transport, n, benchConfig(n))
	frame := frameLen(len(payload))
	want := f.total.Load()
	var enqueue time.Duration
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		t := time.Now()
		got, err := f.hub.Broadcast(payload, bridge.OpBinary, nil)
		enqueue += time.Since(t)
		if err != nil || got != n {
			b.Fatalf("broadcast reached %d of %d connections: %v", got, n, err)
		}
		want += int64(n) * frame
		if err := f.waitTotal(want, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(enqueue)/float64(b.N), "enqueue-ns/op")
}

// cpuTime returns the CPU time (user and system) this process has used: the
// hub, the clients and the kernel's work for both (TCP) all count. On a
// machine shared with other work it is steadier than wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

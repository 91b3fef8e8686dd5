package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// TestHarness checks what the benchmarks rely on: client i holds fd i+1, a
// push to an fd reaches exactly that client, a broadcast reaches every
// client, the byte counts match the frames on the wire, and closing the
// fixture leaves no goroutine behind (TestMain).
func TestHarness(t *testing.T) {
	for _, transport := range []string{pipe, tcp} {
		t.Run(transport, func(t *testing.T) { testHarness(t, transport) })
	}
}

func testHarness(t *testing.T, transport string) {
	const n = 50
	f := newFixture(t, transport, n, benchConfig(n))
	msg := bytes.Repeat([]byte{'x'}, 32)
	frame := frameLen(len(msg))

	for i := range n {
		fd := int64(i + 1)
		if err := f.hub.Push(fd, msg, bridge.OpBinary, true); err != nil {
			t.Fatalf("push fd %d: %v", fd, err)
		}
		if err := f.waitTotal(int64(i+1)*frame, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		for j := range n {
			want := int64(0)
			if j <= i {
				want = frame
			}
			if got := f.perConn[j].Load(); got != want {
				t.Fatalf("after pushing to fd %d, client %d received %d bytes, want %d", fd, j, got, want)
			}
		}
	}

	got, err := f.hub.Broadcast(msg, bridge.OpBinary, nil)
	if err != nil || got != n {
		t.Fatalf("broadcast reached %d connections (%v), want %d", got, err, n)
	}
	if err := f.waitTotal(2*n*frame, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for j := range n {
		if got := f.perConn[j].Load(); got != 2*frame {
			t.Fatalf("client %d received %d bytes, want %d", j, got, 2*frame)
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	if c := f.hub.Stats().Connections; c != 0 {
		t.Fatalf("%d connections left after close", c)
	}
}

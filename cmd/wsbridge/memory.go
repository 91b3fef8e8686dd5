package main

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// burstConns is how many connections must open or close for a burst after
// which the freed memory is returned to the OS.
const burstConns = 1000

// releaseAfterBursts returns freed memory to the OS once after each burst
// of connections: when burstConns or more have opened or closed since the
// last release and none for quiet. A burst of handshakes leaves their
// garbage (request buffers, headers, the handshake's readers and writers:
// several KiB each) in heap pages that the Go runtime keeps mapped as long
// as they fit its heap goal, which the connections' own stacks inflate;
// without this, 10,000 idle connections hold about 2 KiB each of such
// pages (docs/BENCHMARKS.md). The release costs one garbage collection
// per burst, none while connections come and go slowly.
func releaseAfterBursts(ctx context.Context, hub *bridge.Hub, quiet time.Duration, release func()) {
	if quiet <= 0 {
		return
	}
	t := time.NewTicker(min(quiet/2, time.Second))
	defer t.Stop()
	b := burstWatch{quiet: quiet}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if b.tick(now, churn(hub)) {
				release()
			}
		}
	}
}

// churn is the count of connections opened and closed since the Hub started.
func churn(hub *bridge.Hub) uint64 {
	var n uint64
	for _, w := range hub.Stats().Workers {
		n += w.Opened + w.Closed
	}
	return n
}

// freeOSMemory is releaseAfterBursts's release.
func freeOSMemory() { debug.FreeOSMemory() }

// burstWatch decides, from the churn seen at each tick, when a burst is
// over.
type burstWatch struct {
	quiet    time.Duration
	released uint64    // churn at the last release
	last     uint64    // churn at the last tick
	since    time.Time // when churn last changed
}

func (b *burstWatch) tick(now time.Time, churn uint64) bool {
	if churn != b.last {
		b.last, b.since = churn, now
		return false
	}
	if churn-b.released >= burstConns && now.Sub(b.since) >= b.quiet {
		b.released = churn
		return true
	}
	return false
}

package bridge

import "errors"

// Keepalive pings without a writer goroutine. Each worker's keepalive
// goroutine pings its connections once per PingInterval. A ping to a
// connection with nothing queued and no writer (the common case: an idle
// connection) is written at once, by the keepalive goroutine, as a fixed
// 2-byte frame with one non-blocking write system call (bufConn.writeDirect,
// as the flushers write). Queued like a message, each ping would start a
// writer goroutine, whose stack grows in gorilla's write path, take a
// gather buffer, and give both back a moment later: a round of pings to
// every connection allocated several KiB per connection at once, which the
// runtime then kept mapped (RSS 6.0 → 10.3 KiB per idle connection at
// 10,000 with pings, docs/BENCHMARKS.md).
//
// Every guarantee of the queue stays:
//   - one writer at a time: the ping is written under the connection's
//     lock while no writer runs and nothing is queued (writing is false),
//     and under the socket's (bufConn.mu), which every other write takes;
//   - fragments: not while a fragmented message is open (msgw), whose
//     writer follows it: such a ping is queued, as before;
//   - order and the queue's bounds: a connection with something queued or
//     being written gets its ping queued behind it, as before, and skipped
//     when the queue is full;
//   - slow clients: a socket whose buffer is full (the write would block)
//     or fails gets its ping queued, so its writer waits under the write
//     deadline or fails the connection, as before; a write that fits in
//     part (1 of 2 bytes) leaves the rest owed, written first by a writer.
//
// It needs the socket's descriptor: under TLS pings are queued.

// pingFrame is the keepalive ping: final, opcode 9, unmasked, no payload.
var pingFrame = []byte{0x80 | byte(OpPing), 0}

// ping sends the keepalive ping (the worker's keepalive goroutine; w is
// its writer callback).
func (c *conn) ping(w *rawWriter) {
	if c.pingDirect(w) {
		c.worker.pingsDirect.Add(1)
		return
	}
	switch err := c.enqueue(item{kind: itemControl, op: OpPing}, false); {
	case err == nil:
		c.worker.pingsQueued.Add(1)
	case errors.Is(err, ErrQueueFull):
		c.worker.pingsSkipped.Add(1)
	}
}

// pingDirect writes the ping at once when c has nothing queued, no writer
// and no open fragmented message; false when it must be queued.
func (c *conn) pingDirect(w *rawWriter) bool {
	if c.bc == nil || c.bc.raw == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen || c.writing || c.head < len(c.q) || c.msgw != nil {
		return false
	}
	n, err := c.bc.writeDirect(w, pingFrame, c.hub.cfg.WriteTimeout)
	if err != nil || n == 0 {
		return false // a full socket or an error: a writer waits or fails
	}
	if r := c.tr.ring.Load(); r != nil {
		it := item{kind: itemControl, op: OpPing}
		c.tr.frameOut(&it, nil)
	}
	if n < len(pingFrame) {
		// The rest is owed (bufConn.owed): charged as an item in the queue
		// until its writer has written it, as the flusher does.
		owed := item{kind: itemOwed, size: len(pingFrame) - n}
		c.hub.chargeForced(&owed)
		c.size.Add(int64(owed.size))
		c.own.Add(int64(owed.size))
		c.q = append(c.q, owed)
		c.queuedBytes += owed.size
		c.writing = true
		c.hub.startWriter(c)
	}
	return true
}

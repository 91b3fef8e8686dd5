package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsbridge/wsbridge/bridge"
)

// FDs is the key of the set of node id's open fds in its run gen: what a
// survivor needs to post their close events when the node is lost. Each
// node's set has a hash tag of its own, so the sets spread over a Redis
// Cluster's masters.
func (k Keys) FDs(id int, gen int64) string {
	return k.p + ":fds:{" + strconv.Itoa(id) + ":" + strconv.FormatInt(gen, 10) + "}"
}

// fdOp is one change of the set: an fd opened (add) or closed.
type fdOp struct {
	fd   int64
	add  bool
	done chan struct{} // an open's: closed once the batch with it was written (or failed)
}

// recordTimeout bounds an open's wait for its fd to be in Redis.
const recordTimeout = time.Second

// Bounds of the Tracker.
const (
	trackerQueue = 1 << 16 // changes waiting for Redis
	trackerBatch = 1000    // changes per round trip
)

// Tracker keeps this node's open fds in Redis (Keys.FDs), so that when the
// node is lost a survivor can tell the application that each of them
// closed. It is a bridge.Listener in front of the application's (events):
// every open adds to the set and every close removes, in batches, off the
// connections' goroutines. When Redis was away or the queue overflowed,
// the set is written anew from the hub's connections once Redis is back.
type Tracker struct {
	next bridge.Listener // the events dispatcher, or nil
	adm  bridge.Admitter
	up   func() bool // whether Redis is reachable: opens wait for their write only then
	// subscribed, when set, is Subscriptions.Settled: an open waits for
	// the channels of the user and groups its authorization gave it too.
	subscribed func(kind bridge.IndexKind, name string, within time.Duration) <-chan struct{}
	log        *slog.Logger

	ops    chan fdOp
	resync atomic.Bool
	stats  struct{ written, dropped, resyncs, errors atomic.Uint64 }

	mu     sync.Mutex
	client rueidis.Client
	key    string
	hub    *bridge.Hub
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ bridge.Listener = (*Tracker)(nil)
	_ bridge.Admitter = (*Tracker)(nil)
)

// NewTracker returns a Tracker; setNext gives it the Listener it passes
// every event on to, before the hub starts.
func NewTracker(log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.Default()
	}
	return &Tracker{log: log, ops: make(chan fdOp, trackerQueue), done: make(chan struct{})}
}

// setNext makes the Tracker pass every event on to next (nil: none), and
// Admit too when next is a bridge.Admitter.
func (t *Tracker) setNext(next bridge.Listener) {
	t.next = next
	t.adm, _ = next.(bridge.Admitter)
}

// Admit implements bridge.Admitter for the next Listener.
func (t *Tracker) Admit() error {
	if t.adm == nil {
		return nil
	}
	return t.adm.Admit()
}

func (t *Tracker) queue(op fdOp) bool {
	select {
	case t.ops <- op:
		return true
	default:
		t.stats.dropped.Add(1)
		t.resync.Store(true)
		return false
	}
}

// OnOpen implements bridge.Listener. While Redis is up, the open event
// goes on to the application only once the fd is in Redis (the opens of
// that moment share one write): if the application heard of a
// connection, a survivor will tell it of the close should this node die.
// It also waits for this node's subscriptions to the user and groups the
// authorization gave the connection, so that the application's first
// push to them, from any node, reaches it. Both waits end within
// recordTimeout.
func (t *Tracker) OnOpen(info bridge.ConnInfo) {
	op := fdOp{fd: info.FD, add: true}
	if t.up != nil && t.up() {
		op.done = make(chan struct{})
	}
	var waits []<-chan struct{}
	if t.queue(op) && op.done != nil {
		waits = append(waits, op.done)
	}
	if t.subscribed != nil {
		if info.User != "" {
			waits = append(waits, t.subscribed(bridge.UserIndex, info.User, recordTimeout))
		}
		for _, g := range info.Groups {
			waits = append(waits, t.subscribed(bridge.GroupIndex, g, recordTimeout))
		}
	}
	if len(waits) > 0 {
		timer := time.NewTimer(recordTimeout)
	wait:
		for _, ch := range waits {
			if ch == nil {
				continue
			}
			select {
			case <-ch:
			case <-timer.C:
				break wait
			}
		}
		timer.Stop()
	}
	if t.next != nil {
		t.next.OnOpen(info)
	}
}

// OnMessage implements bridge.Listener.
func (t *Tracker) OnMessage(fd int64, op bridge.Opcode, data []byte) {
	if t.next != nil {
		t.next.OnMessage(fd, op, data)
	}
}

// OnClose implements bridge.Listener.
func (t *Tracker) OnClose(fd int64, ev bridge.CloseEvent) {
	t.queue(fdOp{fd: fd})
	if t.next != nil {
		t.next.OnClose(fd, ev)
	}
}

// Start begins writing this node's set (key) through client; hub is read
// to write the set anew, up says whether Redis is reachable. Close stops
// it.
func (t *Tracker) Start(client rueidis.Client, key string, hub *bridge.Hub, up func() bool) {
	ctx, cancel := context.WithCancel(context.Background())
	t.mu.Lock()
	t.client, t.key, t.hub, t.cancel = client, key, hub, cancel
	t.mu.Unlock()
	t.up = up
	t.resync.Store(true) // connections may have opened before Start
	go t.loop(ctx)
}

func (t *Tracker) loop(ctx context.Context) {
	defer close(t.done)
	backoff := 100 * time.Millisecond
	batch := make([]fdOp, 0, trackerBatch)
	for {
		if t.resync.Load() {
			if err := t.rewrite(ctx); err != nil {
				t.stats.errors.Add(1)
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case op := <-t.ops:
			batch = append(batch[:0], op)
		}
	fill:
		for len(batch) < trackerBatch {
			select {
			case op := <-t.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		err := t.write(ctx, batch)
		release(batch)
		if err != nil {
			t.stats.errors.Add(1)
			t.resync.Store(true) // these changes are lost: write the set anew
			continue
		}
		t.stats.written.Add(uint64(len(batch)))
	}
}

// release lets the opens of ops that wait for their write go on.
func release(ops []fdOp) {
	for _, op := range ops {
		if op.done != nil {
			close(op.done)
		}
	}
}

// write applies a batch of changes in order, one round trip.
func (t *Tracker) write(ctx context.Context, ops []fdOp) error {
	c := t.client
	cmds := make(rueidis.Commands, 0, 2)
	for i := 0; i < len(ops); {
		j := i
		members := []string{}
		for j < len(ops) && ops[j].add == ops[i].add {
			members = append(members, strconv.FormatInt(ops[j].fd, 10))
			j++
		}
		if ops[i].add {
			cmds = append(cmds, c.B().Sadd().Key(t.key).Member(members...).Build())
		} else {
			cmds = append(cmds, c.B().Srem().Key(t.key).Member(members...).Build())
		}
		i = j
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cluster: write the open fds: %w", err)
		}
	}
	return nil
}

// rewrite writes the set anew from the hub's connections.
func (t *Tracker) rewrite(ctx context.Context) error {
	t.resync.Store(false)
	var drained []fdOp // the snapshot below has what they said; their opens go on once it is written
	defer func() { release(drained) }()
	for empty := false; !empty; {
		select {
		case op := <-t.ops:
			drained = append(drained, op)
		default:
			empty = true
		}
	}
	// Written to a key of its own first and renamed over the set at the
	// end (the same hash tag: the same slot), so that the set is never
	// missing fds while it is rewritten: a survivor may read it any time.
	c := t.client
	tmp := t.key + ":new"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Do(ctx, c.B().Del().Key(tmp).Build()).Error(); err != nil {
		t.resync.Store(true)
		return err
	}
	var after int64
	written := 0
	for {
		fds, more := t.hub.FDs(after, trackerBatch)
		if len(fds) > 0 {
			members := make([]string, len(fds))
			for i, fd := range fds {
				members[i] = strconv.FormatInt(fd, 10)
			}
			if err := c.Do(ctx, c.B().Sadd().Key(tmp).Member(members...).Build()).Error(); err != nil {
				t.resync.Store(true)
				return err
			}
			written += len(fds)
			after = fds[len(fds)-1]
		}
		if !more {
			break
		}
	}
	cmd := c.B().Rename().Key(tmp).Newkey(t.key).Build()
	if written == 0 {
		cmd = c.B().Del().Key(t.key).Build()
	}
	if err := c.Do(ctx, cmd).Error(); err != nil {
		t.resync.Store(true)
		return err
	}
	t.stats.resyncs.Add(1)
	return nil
}

// TrackerStats are a Tracker's counters.
type TrackerStats struct {
	Written, Dropped, Rewrites, Errors uint64
}

// Stats returns the Tracker's counters.
func (t *Tracker) Stats() TrackerStats {
	return TrackerStats{Written: t.stats.written.Load(), Dropped: t.stats.dropped.Load(), Rewrites: t.stats.resyncs.Load(), Errors: t.stats.errors.Load()}
}

// Close stops the writer; a graceful shutdown deletes the set (the node
// closed its connections and the application heard of each).
func (t *Tracker) Close(ctx context.Context, deleteSet bool) {
	t.mu.Lock()
	cancel, started := t.cancel, t.client != nil
	t.mu.Unlock()
	if !started {
		return
	}
	cancel()
	<-t.done
	if deleteSet {
		_ = t.client.Do(ctx, t.client.B().Del().Key(t.key).Build()).Error()
	}
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// PostLostFDs is the cleanup of a lost node: it reads the lost node's set,
// a thousand fds at a time, posts a close event for each through post
// (events.Dispatcher's PostLost), which takes what fits, and removes the
// posted ones from the set; the rest is posted as room frees, until ctx
// ends. Then the set is deleted.
func PostLostFDs(ctx context.Context, client rueidis.Client, key string, node int, post func(node int, fds []int64) int) (int, error) {
	posted := 0
	for {
		members, err := client.Do(ctx, client.B().Srandmember().Key(key).Count(trackerBatch).Build()).AsStrSlice()
		if err != nil {
			return posted, fmt.Errorf("cluster: read the lost node's fds: %w", err)
		}
		if len(members) == 0 {
			break
		}
		var fds []int64
		var done []string // posted, or not an fd of that node: removed from the set
		for _, s := range members {
			if fd, err := strconv.ParseInt(s, 10, 64); err == nil && bridge.ValidFD(fd) && bridge.NodeOf(fd) == node {
				fds = append(fds, fd)
			} else {
				done = append(done, s)
			}
		}
		n := post(node, fds)
		posted += n
		for _, fd := range fds[:n] {
			done = append(done, strconv.FormatInt(fd, 10))
		}
		// What was posted leaves the set at once: a survivor that takes
		// this cleanup on after a failure posts only the rest.
		if len(done) > 0 {
			if err := client.Do(ctx, client.B().Srem().Key(key).Member(done...).Build()).Error(); err != nil {
				return posted, fmt.Errorf("cluster: remove the posted fds: %w", err)
			}
		}
		if n < len(fds) && !sleepCtx(ctx, 50*time.Millisecond) { // the events queue is full: wait for room
			return posted, ctx.Err()
		}
	}
	if err := client.Do(ctx, client.B().Del().Key(key).Build()).Error(); err != nil {
		return posted, fmt.Errorf("cluster: delete the lost node's fds: %w", err)
	}
	return posted, nil
}

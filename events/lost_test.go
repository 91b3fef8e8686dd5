package events_test

import (
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
)

// TestPostLost: the close events a surviving node posts for the fds of a
// lost node reach the application as closes with code 1006, reason
// node_lost, the lost node's id and the largest seq (so a receiver that
// keeps the last seq per fd takes them after anything the lost node
// sent); past the queue's room only the first ones are taken.
func TestPostLost(t *testing.T) {
	s := newSink(t)
	d, _ := newDispatcher(t, events.Config{URL: s.url, QueueTotal: 3, QueueBytes: 1 << 20})
	lost := int64(7) << 43
	fds := []int64{lost | 1, lost | 2, lost | 3, lost | 4}
	if n := d.PostLost(7, fds); n != 3 {
		t.Fatalf("PostLost took %d of 4 with room for 3", n)
	}
	s.waitClosed(t, fds[:3]...)
	waitStats(t, d, "the first three acknowledged", func(st events.Stats) bool { return st.Pending == 0 })
	if n := d.PostLost(7, fds[3:]); n != 1 {
		t.Fatalf("PostLost took %d of the last one once the first were delivered", n)
	}
	s.waitClosed(t, fds[3])
	waitStats(t, d, "all acknowledged", func(st events.Stats) bool { return st.Pending == 0 })
	for _, fd := range fds {
		evs := s.ackedOf(fd)
		if len(evs) != 1 {
			t.Fatalf("fd %d: %d events, want one close: %+v", fd, len(evs), evs)
		}
		e := evs[0]
		if e.Type != "close" || e.Code != 1006 || e.Reason != "node_lost" || e.By != "server" || e.Seq != events.LostSeq || e.LostNode == nil || *e.LostNode != 7 {
			t.Errorf("fd %d: %+v, want a close 1006 node_lost by server, seq %d, lost_node 7", fd, e, events.LostSeq)
		}
	}
	if st := d.Stats(); st.Delivered != 4 || st.Reserved != 0 {
		t.Errorf("after delivery: %+v", st)
	}
}

// TestEventsCarryPath: with several upgrade paths, every event of a
// connection (message and close too) carries its path, so the application
// routes each to its path's controller without keeping state.
func TestEventsCarryPath(t *testing.T) {
	s := newSink(t)
	d, _ := newDispatcher(t, events.Config{URL: s.url})
	th := startHub(t, d, false, bridge.Config{Paths: []string{"/", "/chat"}})
	c := th.dial(t, "/chat?id=c", nil)
	fd := s.fdOf(t, "c")
	send(t, c, "hi")
	closeClient(t, c, 1000, "")
	s.waitClosed(t, fd)
	evs := s.ackedOf(fd)
	checkRun(t, fd, evs, []string{"hi"})
	for _, e := range evs {
		if e.Path != "/chat" {
			t.Errorf("%s event: path %q, want /chat", e.Type, e.Path)
		}
	}
}

package bridge_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
)

// sumWorkers adds up one counter of every worker.
func sumWorkers(st bridge.Stats, f func(bridge.WorkerStats) uint64) uint64 {
	var n uint64
	for _, w := range st.Workers {
		n += f(w)
	}
	return n
}

// waitStats polls Stats until cond holds.
func waitStats(t testing.TB, h *bridge.Hub, what string, cond func(bridge.Stats) bool) bridge.Stats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := h.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStatsCounters: bytes in and out, pushes that found no open
// connection, and closes by code and side count exactly what happened.
func TestStatsCounters(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 3})
	a, fdA := th.dial(t, "a")
	b, fdB := th.dial(t, "b")
	c, fdC := th.dial(t, "c")

	// In: 5 + 3 bytes from a, 4 from b.
	for _, m := range []struct {
		ws   *websocket.Conn
		data string
	}{{a, "hello"}, {a, "abc"}, {b, "wxyz"}} {
		if err := m.ws.WriteMessage(websocket.TextMessage, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	th.rec.waitFor(t, "3 messages", func() bool { return len(th.rec.messages[fdA]) == 2 && len(th.rec.messages[fdB]) == 1 })

	// Out: 6 bytes to a; a broadcast of 2 bytes to a, b and c; 3 bytes to
	// b and c by PushMany.
	if err := th.Push(fdA, []byte("push-a"), bridge.OpText, true); err != nil {
		t.Fatal(err)
	}
	readText(t, a, "push-a")
	if n, err := th.Broadcast([]byte("bc"), bridge.OpText, nil); err != nil || n != 3 {
		t.Fatalf("Broadcast = %d, %v; want 3", n, err)
	}
	for _, ws := range []*websocket.Conn{a, b, c} {
		readText(t, ws, "bc")
	}
	// Not open: an unknown fd by Push, two unknown fds in PushMany.
	if err := th.Push(fdC+1000, []byte("x"), bridge.OpText, true); !bridge.IsNotDelivered(err) {
		t.Fatalf("Push to an unknown fd: %v", err)
	}
	if n, err := th.PushMany([]int64{fdB, fdC, fdC + 1000, -1}, []byte("pm!"), bridge.OpText); err != nil || n != 2 {
		t.Fatalf("PushMany = %d, %v; want 2", n, err)
	}
	readText(t, b, "pm!")
	readText(t, c, "pm!")

	// Closes: a by Disconnect with 4001, b by the client with 1000.
	if err := th.Disconnect(fdA, 4001, "bye"); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, a, wait)
	if err := b.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")); err != nil {
		t.Fatal(err)
	}
	testutil.ReadClose(t, b, wait)
	th.rec.closeOf(t, fdA)
	th.rec.closeOf(t, fdB)

	// A write is counted once it returned, which may be after its client
	// read it: wait for the count as well as for the closes.
	st := waitStats(t, th.Hub, "2 closes and 18 bytes out", func(st bridge.Stats) bool {
		return sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.Closed }) == 2 &&
			sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.BytesOut }) >= 6+3*2+2*3
	})
	if got := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.BytesIn }); got != 12 {
		t.Errorf("bytes in = %d, want 12", got)
	}
	if got := sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.BytesOut }); got != 6+3*2+2*3 {
		t.Errorf("bytes out = %d, want %d", got, 6+3*2+2*3)
	}
	if st.NotOpen != 3 {
		t.Errorf("NotOpen = %d, want 3", st.NotOpen)
	}
	want := []bridge.CloseCount{{Code: "1000", Count: 1}, {Code: "4000-4999", ByServer: true, Count: 1}}
	if !reflect.DeepEqual(st.Closes, want) {
		t.Errorf("Closes = %+v, want %+v", st.Closes, want)
	}
	if st.Connections != 1 {
		t.Errorf("Connections = %d, want 1", st.Connections)
	}
}

// TestStatsCloseCodes: every code the bridge can see lands in its slot.
func TestStatsCloseCodes(t *testing.T) {
	th := startHub(t, bridge.Config{})
	codes := []int{1001, 3000, 3999, 4000, 4999}
	for i, code := range codes {
		ws, fd := th.dial(t, fmt.Sprint("c", i))
		if err := th.Disconnect(fd, code, ""); err != nil {
			t.Fatal(err)
		}
		testutil.ReadClose(t, ws, wait)
		th.rec.closeOf(t, fd)
	}
	st := waitStats(t, th.Hub, "closes", func(st bridge.Stats) bool {
		return sumWorkers(st, func(w bridge.WorkerStats) uint64 { return w.Closed }) == uint64(len(codes))
	})
	want := []bridge.CloseCount{
		{Code: "1001", ByServer: true, Count: 1},
		{Code: "3000-3999", ByServer: true, Count: 2},
		{Code: "4000-4999", ByServer: true, Count: 2},
	}
	if !reflect.DeepEqual(st.Closes, want) {
		t.Errorf("Closes = %+v, want %+v", st.Closes, want)
	}
}

// TestFDs pages through the open connections in fd order.
func TestFDs(t *testing.T) {
	th := startHub(t, bridge.Config{Workers: 4})
	if fds, more := th.FDs(0, 10); len(fds) != 0 || more {
		t.Fatalf("FDs of an empty hub = %v, %v", fds, more)
	}
	var all []int64
	for i := range 7 {
		_, fd := th.dial(t, fmt.Sprint("p", i))
		all = append(all, fd)
	}
	slices.Sort(all)
	// Close the third: it is left out.
	p2 := th.rec.fdOf(t, "p2")
	if err := th.Disconnect(p2, 0, ""); err != nil {
		t.Fatal(err)
	}
	open := slices.DeleteFunc(slices.Clone(all), func(fd int64) bool { return fd == p2 })

	var got []int64
	after := int64(0)
	pages := 0
	for {
		fds, more := th.FDs(after, 2)
		pages++
		if len(fds) > 2 {
			t.Fatalf("FDs(%d, 2) returned %d fds", after, len(fds))
		}
		got = append(got, fds...)
		if !more {
			break
		}
		after = fds[len(fds)-1]
	}
	if !slices.Equal(got, open) {
		t.Errorf("paged FDs = %v, want %v", got, open)
	}
	if pages != 3 {
		t.Errorf("%d pages of 2 for %d fds, want 3", pages, len(open))
	}
	if fds, more := th.FDs(open[len(open)-1], 5); len(fds) != 0 || more {
		t.Errorf("FDs after the last = %v, %v", fds, more)
	}
	if fds, _ := th.FDs(0, 0); fds != nil {
		t.Errorf("FDs with limit 0 = %v", fds)
	}
}

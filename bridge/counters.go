package bridge

import (
	"slices"
	"strconv"
)

// Close codes are counted in fixed slots, so that counting a close is one
// atomic add and a client cannot grow the counters by sending many
// different application codes: one slot per code of 1000..1015 (RFC 6455's
// range), one for the registered codes 3000..3999, one for the private
// codes 4000..4999, and one for anything else.
const (
	numCloseSlots  = 16 + 3
	slotRegistered = 16
	slotPrivate    = 17
	slotOther      = 18
)

func closeSlot(code int) int {
	switch {
	case code >= 1000 && code <= 1015:
		return code - 1000
	case code >= 3000 && code <= 3999:
		return slotRegistered
	case code >= 4000 && code <= 4999:
		return slotPrivate
	}
	return slotOther
}

// closeSlotName is the CloseCount.Code of a slot.
func closeSlotName(slot int) string {
	switch slot {
	case slotRegistered:
		return "3000-3999"
	case slotPrivate:
		return "4000-4999"
	case slotOther:
		return "other"
	}
	return strconv.Itoa(1000 + slot)
}

// CloseCount is the number of connections that ended with a close code.
type CloseCount struct {
	// Code is the close code ("1000" .. "1015"; the application ranges
	// are counted together as "3000-3999" and "4000-4999"; "other").
	// 1006 means the connection ended without a close frame.
	Code string `json:"code"`
	// ByServer: the bridge started the close (a Disconnect, a shutdown,
	// an overflow, a fault); otherwise the client did or the connection
	// was lost.
	ByServer bool   `json:"by_server"`
	Count    uint64 `json:"count"`
}

// countClose records how a connection ended.
func (w *worker) countClose(ev CloseEvent) {
	side := 0
	if ev.ByServer {
		side = 1
	}
	w.closes[side][closeSlot(ev.Code)].Add(1)
}

// closeCounts sums the close counters of every worker: the non-zero ones,
// by code slot, the client's before the server's.
func (h *Hub) closeCounts() []CloseCount {
	var out []CloseCount
	for slot := range numCloseSlots {
		for side := range 2 {
			var n uint64
			for _, w := range h.workers {
				n += w.closes[side][slot].Load()
			}
			if n > 0 {
				out = append(out, CloseCount{Code: closeSlotName(slot), ByServer: side == 1, Count: n})
			}
		}
	}
	return out
}

// FDs returns the fds of open connections greater than after, in
// increasing order, at most limit of them, and whether more follow. fds
// only grow, so a caller pages through every connection with after set to
// the last fd of the previous page; connections that open or close
// meanwhile may or may not be listed. It copies each worker's fds under its
// read lock, one worker at a time, like a broadcast.
func (h *Hub) FDs(after int64, limit int) ([]int64, bool) {
	if limit <= 0 {
		return nil, false
	}
	var fds []int64
	var buf []*conn
	for _, w := range h.workers {
		buf = w.snapshot(buf[:0])
		for i, c := range buf {
			if c.fd > after && c.isOpen() {
				fds = append(fds, c.fd)
			}
			buf[i] = nil
		}
	}
	slices.Sort(fds)
	if len(fds) > limit {
		return slices.Clip(fds[:limit]), true
	}
	return fds, false
}

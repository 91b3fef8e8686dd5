package bridge

import "errors"

// errPollNeedsLinux: the poll read mode uses epoll (poll.go).
var errPollNeedsLinux = errors.New("poll read mode needs Linux")

// PollStats are the poll mode's counters (Stats.Poll; nil in goroutine mode).
type PollStats struct {
	// Workers is the size of the pool (Config.PollWorkers); Busy how many
	// goroutines are reading a connection now (the pool's, and those
	// started for a new connection after its open event, which read it
	// until it is idle); Queued how many connections wait for a pool goroutine.
	Workers int   `json:"workers"`
	Busy    int64 `json:"busy"`
	Queued  int   `json:"queued"`
	// Parked is the number of connections armed in the epoll set, with no
	// goroutine.
	Parked int64 `json:"parked"`
	// Wakeups counts the connections taken from the epoll set to be read.
	Wakeups uint64 `json:"wakeups"`
	// Requeued counts the turns that read pollBudget messages (a client's
	// ping or pong counts as one) of one connection and put it back at the end of the queue.
	Requeued uint64 `json:"requeued"`
	// ReadTimeouts counts the connections closed (1008) because a message
	// did not arrive within Config.PollReadTimeout once the pool began
	// reading it (half a frame, a message too slow).
	ReadTimeouts uint64 `json:"read_timeouts"`
	// PartialWaits counts the times a connection was parked with part of a
	// message (of at most 8 KiB) in its socket, until the rest arrives,
	// instead of a pool goroutine waiting for it.
	PartialWaits uint64 `json:"partial_waits"`
	// Fallbacks counts the connections read by a goroutine of their own
	// because their socket has no descriptor to poll (TLS).
	Fallbacks uint64 `json:"fallbacks"`
}

package sender

import (
	"fmt"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// The traces of connections (bridge.Hub.Trace) are per node: the console
// of the node that holds an fd shows its trace. A call for an fd of
// another node is refused with not_found, naming that node.

// notHere refuses a trace call for an fd of another node.
func (s *Service) notHere(fd int64) error {
	if n, remote := s.remoteNode(fd); remote {
		return &Error{Code: CodeNotFound, Message: fmt.Sprintf("fd %d is on node %d: its trace is on that node's admin API", fd, n)}
	}
	return nil
}

// Trace turns fd's trace on for d (bounded by bridge.MaxTraceDuration), or
// renews it, and returns when it stops unless renewed.
func (s *Service) Trace(fd int64, d time.Duration) (time.Time, error) {
	if err := s.notHere(fd); err != nil {
		return time.Time{}, err
	}
	until, err := s.hub.Trace(fd, d)
	if bridge.IsNotDelivered(err) {
		return until, &Error{Code: CodeNotFound, Message: fmt.Sprintf("fd %d is not an open connection", fd)}
	}
	return until, ToError(err)
}

// TraceOf returns fd's trace and, while the connection is open, its queue
// and byte counts (nil once it closed). A trace that is off or whose time
// is up is not_found.
func (s *Service) TraceOf(fd int64) (bridge.Trace, *bridge.ConnStats, error) {
	if err := s.notHere(fd); err != nil {
		return bridge.Trace{}, nil, err
	}
	tr, ok := s.hub.TraceOf(fd)
	if !ok {
		return tr, nil, &Error{Code: CodeNotFound, Message: fmt.Sprintf("fd %d has no trace (turn it on with POST)", fd)}
	}
	if st, open := s.hub.ConnStats(fd); open {
		return tr, &st, nil
	}
	return tr, nil, nil
}

// StopTrace turns fd's trace off; false when it had none.
func (s *Service) StopTrace(fd int64) (bool, error) {
	if err := s.notHere(fd); err != nil {
		return false, err
	}
	return s.hub.StopTrace(fd), nil
}

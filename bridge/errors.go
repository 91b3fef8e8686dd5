package bridge

import "errors"

// Errors returned by the Hub's push API. Callers test them with errors.Is;
// the RPC and admin layers map ErrUnknownFD and ErrQueueFull to a plain
// false result and the others to typed errors.
var (
	// ErrUnknownFD: no open connection has this fd on this node (it never
	// existed, is closed, or is closing).
	ErrUnknownFD = errors.New("bridge: unknown or closed fd")
	// ErrInvalidFD: the fd is outside the valid range (not in 1..2^53-1).
	ErrInvalidFD = errors.New("bridge: invalid fd")
	// ErrTooLarge: the message is larger than Config.MaxPushSize (or 125
	// bytes for a control frame). Nothing is sent; nothing is cut.
	ErrTooLarge = errors.New("bridge: message too large")
	// ErrInvalidOpcode: the opcode is not one a push may use.
	ErrInvalidOpcode = errors.New("bridge: invalid opcode")
	// ErrInvalidCloseCode: the close code may not be sent in a close frame.
	ErrInvalidCloseCode = errors.New("bridge: invalid close code")
	// ErrQueueFull: the connection's send queue is at its bound; the push
	// was refused and the overflow policy applied.
	ErrQueueFull = errors.New("bridge: send queue full")
	// ErrHubClosed: the Hub is shutting down or shut down.
	ErrHubClosed = errors.New("bridge: hub closed")
	// ErrFDSpaceExhausted: this node has handed out every fd it can.
	ErrFDSpaceExhausted = errors.New("bridge: fd space exhausted")
)

// IsNotDelivered reports whether err means "this push did not reach an open
// connection" (as opposed to a bad request): unknown or closed fd, or a full
// queue. These are the errors Sender-compatible APIs report as false.
func IsNotDelivered(err error) bool {
	return errors.Is(err, ErrUnknownFD) || errors.Is(err, ErrQueueFull) || errors.Is(err, ErrHubClosed)
}

// ErrInvalidUTF8: a text message (or close reason) is not valid UTF-8;
// a browser would fail the connection on receiving it.
var ErrInvalidUTF8 = errors.New("bridge: text is not valid UTF-8")

// ErrInvalidName: a group name or user id is empty, too long or not UTF-8.
var ErrInvalidName = errors.New("bridge: invalid name")

// ErrTooManyGroups: the connection is already in Config.MaxGroupsPerConn
// groups.
var ErrTooManyGroups = errors.New("bridge: too many groups for one connection")

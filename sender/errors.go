package sender

import (
	"errors"
	"net/http"

	"github.com/wsbridge/wsbridge/bridge"
)

// Error is an error the Sender API returns to a caller. Over RPC it is the
// goridge error frame's text, "<code>: <message>"; over HTTP it is the
// body {"error": {"code", "message"}} with the code's status. The code is
// stable and callers may switch on it (the PHP client maps codes to
// exceptions).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// The stable error codes. Codes lists what each means and how each
// transport answers it.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidFD        = "invalid_fd"
	CodeInvalidOpcode    = "invalid_opcode"
	CodeTooLarge         = "too_large"
	CodeInvalidUTF8      = "invalid_utf8"
	CodeInvalidCloseCode = "invalid_close_code"
	CodeInvalidName      = "invalid_name"
	CodeTooManyGroups    = "too_many_groups"
	CodeShuttingDown     = "shutting_down"
	CodeInternal         = "internal"
	CodeNodeUnreachable  = "node_unreachable"

	// Codes of the admin HTTP API only.
	CodeUnauthorized     = "unauthorized"
	CodeTokenNotSet      = "token_not_set"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooManyTraces    = "too_many_traces"
	CodeTooManyViewers   = "too_many_viewers"
)

// CodeInfo is one entry of Codes.
type CodeInfo struct {
	Code string
	// Err is the hub's error that maps to Code, nil for a code the API
	// gives itself.
	Err error
	// Status is the admin API's HTTP status for the code.
	Status int
	// HTTPOnly marks the codes of the admin API's own checks (token,
	// routes), which RPC callers never see.
	HTTPOnly bool
	// When says when a call gets the code (docs/PROTOCOL.md lists it).
	When string
}

// Codes is the one table of error codes: RPC error texts, admin statuses,
// the metrics' outcome labels and the documented lists (docs/PROTOCOL.md,
// the PHP client's ServiceException) all come from it; tests hold the
// documents to it.
//
// "Not delivered" is not an error: a push to an fd that is not open, or
// whose queue is full, answers false (0 for pushes to many), as does any
// push while the node shuts down (bridge.IsNotDelivered).
var Codes = []CodeInfo{
	{CodeBadRequest, nil, http.StatusBadRequest, false, "malformed arguments or body: wrong types, unknown fields (HTTP), too many fds (more than 10 000 in `fds` or `except`), bad base64, unknown encoding"},
	{CodeInvalidFD, bridge.ErrInvalidFD, http.StatusBadRequest, false, "an fd no connection can have (not 1..2^53-1)"},
	{CodeInvalidOpcode, bridge.ErrInvalidOpcode, http.StatusBadRequest, false, "an opcode a push may not use (only text and binary to many connections)"},
	{CodeTooLarge, bridge.ErrTooLarge, http.StatusRequestEntityTooLarge, false, "a message over `WSBRIDGE_MAX_PUSH_SIZE`, a control payload over 125 bytes, a close reason over 123 bytes, an HTTP body over `WSBRIDGE_ADMIN_MAX_BODY`"},
	{CodeInvalidUTF8, bridge.ErrInvalidUTF8, http.StatusBadRequest, false, "text (or a close reason) that is not UTF-8"},
	{CodeInvalidCloseCode, bridge.ErrInvalidCloseCode, http.StatusBadRequest, false, "a close code that may not be sent"},
	{CodeInvalidName, bridge.ErrInvalidName, http.StatusBadRequest, false, "a group name or user id that is empty, over 256 bytes or not UTF-8"},
	{CodeTooManyGroups, bridge.ErrTooManyGroups, http.StatusConflict, false, "a join past `WSBRIDGE_MAX_GROUPS_PER_CONNECTION`"},
	{CodeShuttingDown, bridge.ErrHubClosed, http.StatusServiceUnavailable, false, "a call the node refuses while it shuts down (pushes answer false or 0 instead)"},
	{CodeInternal, nil, http.StatusInternalServerError, false, "a fault; the log has the details"},
	{CodeNodeUnreachable, nil, http.StatusServiceUnavailable, false, "cluster mode: the node that holds the fd (or Redis) did not answer within `WSBRIDGE_CLUSTER_TIMEOUT`; nothing is known of the call's fate"},
	{CodeUnauthorized, nil, http.StatusUnauthorized, true, "no or wrong bearer token"},
	{CodeTokenNotSet, nil, http.StatusServiceUnavailable, true, "no admin token configured: the route is off"},
	{CodeNotFound, nil, http.StatusNotFound, true, "no such route, or no open connection with this fd"},
	{CodeMethodNotAllowed, nil, http.StatusMethodNotAllowed, true, "the route exists with another method"},
	{CodeTooManyTraces, bridge.ErrTooManyTraces, http.StatusTooManyRequests, true, "a trace turned on while 32 connections of the node are traced already"},
	{CodeTooManyViewers, nil, http.StatusServiceUnavailable, true, "`GET /v1/stream` while 256 viewers watch already, or while the server stops (with `Retry-After`)"},
}

// Status is the HTTP status of an error code: 500 for a code not in Codes.
func Status(code string) int {
	for _, c := range Codes {
		if c.Code == code {
			return c.Status
		}
	}
	return http.StatusInternalServerError
}

// ToError turns an error into the caller's *Error: the code of its hub
// error, internal for anything else. nil stays nil.
func ToError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, c := range Codes {
		if c.Err != nil && errors.Is(err, c.Err) {
			return &Error{Code: c.Code, Message: err.Error()}
		}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// IsCode reports whether code is one of the Sender API's codes (not one
// of the admin API's own).
func IsCode(code string) bool {
	for _, c := range Codes {
		if c.Code == code {
			return !c.HTTPOnly
		}
	}
	return false
}

// BadRequest is a bad_request *Error.
func BadRequest(msg string) error { return &Error{Code: CodeBadRequest, Message: msg} }

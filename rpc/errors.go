package rpc

import (
	"errors"

	"github.com/wsbridge/wsbridge/bridge"
)

// Error is an error the Sender service returns to a caller. On the wire it
// is the goridge error frame's text, "<code>: <message>"; the code is stable
// and callers may switch on it (the PHP client maps codes to exceptions).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Codes of Error. bad_request covers input the bridge cannot read (wrong
// types, unknown encoding, too many items); the others name a rule.
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
)

var codeOf = []struct {
	err  error
	code string
}{
	{bridge.ErrInvalidFD, CodeInvalidFD},
	{bridge.ErrInvalidOpcode, CodeInvalidOpcode},
	{bridge.ErrTooLarge, CodeTooLarge},
	{bridge.ErrInvalidUTF8, CodeInvalidUTF8},
	{bridge.ErrInvalidCloseCode, CodeInvalidCloseCode},
	{bridge.ErrInvalidName, CodeInvalidName},
	{bridge.ErrTooManyGroups, CodeTooManyGroups},
	{bridge.ErrHubClosed, CodeShuttingDown},
}

// toError turns a hub error into the caller's Error.
func toError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return &Error{Code: c.code, Message: err.Error()}
		}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

func badRequest(msg string) error { return &Error{Code: CodeBadRequest, Message: msg} }

package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/wsbridge/wsbridge/rpc"
)

// Error codes of the admin API beside those of the RPC service (rpc.Code*,
// which it shares: a push refused for the same reason has the same code
// over RPC and over HTTP).
const (
	CodeUnauthorized     = "unauthorized"       // no or wrong bearer token (401)
	CodeTokenNotSet      = "token_not_set"      // the admin token is not configured: protected routes are off (503)
	CodeNotFound         = "not_found"          // no such route, or no such open connection (404)
	CodeMethodNotAllowed = "method_not_allowed" // (405)
)

// CodeInternal is rpc.CodeInternal, for panics.
const CodeInternal = rpc.CodeInternal

// statusOf is the HTTP status of an error code.
func statusOf(code string) int {
	switch code {
	case rpc.CodeBadRequest, rpc.CodeInvalidFD, rpc.CodeInvalidOpcode, rpc.CodeInvalidUTF8,
		rpc.CodeInvalidCloseCode, rpc.CodeInvalidName:
		return http.StatusBadRequest
	case rpc.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case rpc.CodeTooManyGroups:
		return http.StatusConflict
	case rpc.CodeShuttingDown, CodeTokenNotSet:
		return http.StatusServiceUnavailable
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON of every error answer:
// {"error": {"code": "invalid_fd", "message": "..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	writeJSON(w, r, status, errorBody{errorDetail{Code: code, Message: msg}})
}

// fail answers err: an *rpc.Error with its code's status, anything else as
// internal.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *rpc.Error
	if !errors.As(err, &e) {
		e = &rpc.Error{Code: rpc.CodeInternal, Message: err.Error()}
	}
	writeError(w, r, statusOf(e.Code), e.Code, e.Message)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, _ *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own types are written: a bug
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"cannot encode the answer"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

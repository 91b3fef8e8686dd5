package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/wsbridge/wsbridge/sender"
)

// The error codes and their HTTP statuses are the Sender API's one table
// (sender.Codes): a push refused for the same reason has the same code over
// RPC and over HTTP. The admin API's own codes (token, routes) are in it,
// marked HTTPOnly.

// errorBody is the JSON of every error answer:
// {"error": {"code": "invalid_fd", "message": "..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers code (with its status, sender.Status) and msg.
func writeError(w http.ResponseWriter, r *http.Request, code, msg string) {
	writeJSON(w, r, sender.Status(code), errorBody{errorDetail{Code: code, Message: msg}})
}

// fail answers err: an *sender.Error with its code's status, anything else as
// internal.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *sender.Error
	if !errors.As(err, &e) {
		e = &sender.Error{Code: sender.CodeInternal, Message: err.Error()}
	}
	writeError(w, r, e.Code, e.Message)
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

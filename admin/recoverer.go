package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/wsbridge/wsbridge/sender"
)

// Recoverer turns a panic in a handler into a 500 internal answer and a log
// line with the request id and the stack; the server goes on serving.
// http.ErrAbortHandler is passed on (net/http aborts the response quietly).
func Recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				log.Error("admin: panic in a handler", "request_id", RequestID(r.Context()),
					"method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, r, sender.CodeInternal, "internal error")
			}()
			next.ServeHTTP(w, r)
		})
	}
}

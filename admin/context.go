package admin

import (
	"context"
	"net/http"
)

// contextKey is the type of the keys this package stores in a request's
// context; each key is a distinct pointer.
type contextKey struct{ name string }

func (k *contextKey) String() string { return "wsbridge admin context value " + k.name }

var (
	requestIDKey = &contextKey{"request id"}
	fdKey        = &contextKey{"fd"}
	nameKey      = &contextKey{"name"} // a group name or a user id from the path
)

// RequestID returns the request id the RequestID middleware gave r ("" if
// none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func fdOf(r *http.Request) int64 {
	fd, _ := r.Context().Value(fdKey).(int64)
	return fd
}

func nameOf(r *http.Request) string {
	name, _ := r.Context().Value(nameKey).(string)
	return name
}

package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/wsbridge/wsbridge/sender"
)

// BearerAuth lets through requests with "Authorization: Bearer <token>"
// and answers the others 401 unauthorized (with WWW-Authenticate). The
// scheme is case-insensitive (RFC 7235); the token is compared in constant
// time: both sides are hashed first, so neither its content nor its length
// shows in the time taken. With an empty token every request is answered
// 503 token_not_set: a protected route is off, never open.
func BearerAuth(token string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				writeError(w, r, sender.CodeTokenNotSet,
					"the admin token is not set (WSBRIDGE_ADMIN_TOKEN): this route is off")
				return
			}
			got, ok := bearer(r)
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wsbridge"`)
				msg := "invalid token"
				if !ok {
					msg = "want an Authorization: Bearer <token> header"
				}
				writeError(w, r, sender.CodeUnauthorized, msg)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearer returns the token of the request's only Authorization header, if
// it has the Bearer scheme.
func bearer(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRequestIDMiddleware(t *testing.T) {
	for _, tt := range []struct {
		name, sent string
		keep       bool
	}{
		{"none", "", false},
		{"sane", "abc-DEF_1.2:3", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"65 characters", strings.Repeat("a", 65), false},
		{"space", "a b", false},
		{"slash", "a/b", false},
		{"non-ASCII", "ü", false},
		{"newline-like", "a\tb", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var inCtx string
			h := RequestIDMiddleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { inCtx = RequestID(r.Context()) }))
			req := httptest.NewRequest("GET", "/", nil)
			if tt.sent != "" {
				req.Header.Set(HeaderRequestID, tt.sent)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get(HeaderRequestID)
			if got == "" || got != inCtx {
				t.Fatalf("header %q, context %q: want the same non-empty id", got, inCtx)
			}
			if (got == tt.sent) != tt.keep {
				t.Errorf("sent %q, got %q; keep = %v", tt.sent, got, tt.keep)
			}
			if !tt.keep && (len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "") {
				t.Errorf("new id %q is not 16 hex digits", got)
			}
		})
	}
	if RequestID(httptest.NewRequest("GET", "/", nil).Context()) != "" {
		t.Error("RequestID of a context without one is not empty")
	}
	if a, b := newRequestID(), newRequestID(); a == b {
		t.Errorf("two new ids are equal: %s", a)
	}
	if s := requestIDKey.String(); !strings.Contains(s, "request id") {
		t.Errorf("context key String() = %q", s)
	}
}

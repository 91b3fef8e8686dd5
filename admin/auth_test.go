package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wsbridge/wsbridge/sender"
)

var bearerAuthTests = []struct {
	name   string
	token  string   // configured
	header []string // Authorization headers sent
	status int
}{
	{"right token", "secret-token", []string{"Bearer secret-token"}, 200},
	{"scheme in lower case", "secret-token", []string{"bearer secret-token"}, 200},
	{"scheme in upper case", "secret-token", []string{"BEARER secret-token"}, 200},
	{"spaces after the scheme", "secret-token", []string{"Bearer   secret-token"}, 200},
	{"no header", "secret-token", nil, 401},
	{"empty header", "secret-token", []string{""}, 401},
	{"scheme only", "secret-token", []string{"Bearer"}, 401},
	{"empty token", "secret-token", []string{"Bearer "}, 401},
	{"wrong token", "secret-token", []string{"Bearer secret-tokem"}, 401},
	{"prefix of the token", "secret-token", []string{"Bearer secret"}, 401},
	{"token and more", "secret-token", []string{"Bearer secret-token "}, 401},
	{"Basic scheme", "secret-token", []string{"Basic secret-token"}, 401},
	{"no scheme", "secret-token", []string{"secret-token"}, 401},
	{"two headers", "secret-token", []string{"Bearer secret-token", "Bearer secret-token"}, 401},
	{"no token configured", "", []string{"Bearer "}, 503},
	{"no token configured, none sent", "", nil, 503},
}

func TestBearerAuth(t *testing.T) {
	for _, tt := range bearerAuthTests {
		t.Run(tt.name, func(t *testing.T) {
			reached := false
			h := BearerAuth(tt.token)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			req := httptest.NewRequest("GET", "/v1/groups", nil)
			for _, v := range tt.header {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || reached != (tt.status == 200) {
				t.Fatalf("status %d (handler reached: %v), want %d; body %s", rec.Code, reached, tt.status, rec.Body)
			}
			switch tt.status {
			case 401:
				if rec.Header().Get("WWW-Authenticate") != `Bearer realm="wsbridge"` {
					t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
				}
				checkErrorBody(t, rec, sender.CodeUnauthorized)
			case 503:
				checkErrorBody(t, rec, sender.CodeTokenNotSet)
			}
		})
	}
}

func checkErrorBody(t *testing.T, rec *httptest.ResponseRecorder, code string) {
	t.Helper()
	want := `{"error":{"code":"` + code + `","message":`
	if body := rec.Body.String(); len(body) < len(want) || body[:len(want)] != want {
		t.Errorf("body %q, want an error with code %s", body, code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

package admin

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAccessLog(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		status     int
		write      bool
		level      string
	}{
		{"a /v1 request", "/v1/groups", 200, true, "INFO"},
		{"nothing written", "/v1/groups", 200, false, "INFO"},
		{"a refusal", "/v1/push", 400, true, "INFO"},
		{"a server error", "/v1/push", 503, true, "WARN"},
		{"a probe", "/healthz", 200, true, "DEBUG"},
		{"a scrape", "/metrics", 200, true, "DEBUG"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h := RequestIDMiddleware(AccessLog(log)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tt.write {
					w.WriteHeader(tt.status)
					_, _ = w.Write([]byte("12345"))
				}
			})))
			req := httptest.NewRequest("POST", tt.path+"?token=secret", strings.NewReader("body-secret"))
			req.Header.Set("Authorization", "Bearer header-secret")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var lines []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				lines = append(lines, m)
			}
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1:\n%s", len(lines), buf.String())
			}
			l := lines[0]
			wantBytes := 0.0
			if tt.write {
				wantBytes = 5
			}
			if l["msg"] != "admin request" || l["level"] != tt.level || l["method"] != "POST" || l["path"] != tt.path ||
				l["status"] != float64(tt.status) || l["bytes"] != wantBytes || l["request_id"] != rec.Header().Get(HeaderRequestID) ||
				l["remote"] == "" || l["took"] == nil {
				t.Errorf("log line %v", l)
			}
			for _, secret := range []string{"secret"} {
				if strings.Contains(buf.String(), secret) {
					t.Errorf("the log line holds %q: %s", secret, buf.String())
				}
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runArgs runs the program with args and the environment vars.
func runArgs(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, envOf(vars), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runArgs(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "wsbridge ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if code, _, errOut := runArgs(t, nil, "version", "extra"); code != 2 || !strings.Contains(errOut, "extra") {
		t.Errorf("version extra: exit %d, %q", code, errOut)
	}
}

// TestConfigCheck: a valid configuration is printed as an environment
// file with its secrets masked; an invalid one exits 2 naming the
// setting and never showing a secret.
func TestConfigCheck(t *testing.T) {
	const tok, secret = "0123456789abcdef-the-token", "the-events-secret-value"
	code, out, errOut := runArgs(t, map[string]string{
		"WSBRIDGE_ADMIN_TOKEN": tok, "WSBRIDGE_EVENTS_SECRET": secret, "WSBRIDGE_WS_ADDR": "127.0.0.1:7000",
		"WSBRIDGE_REDIS_URL": "redis://user:hunter2@redis:6379/0",
	}, "config", "check", "-workers", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"WSBRIDGE_WS_ADDR=127.0.0.1:7000\n", "WSBRIDGE_WORKERS=3\n", "WSBRIDGE_ADMIN_TOKEN=" + secretMask + "\n",
		"WSBRIDGE_EVENTS_SECRET=" + secretMask + "\n", "# Admin HTTP server\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("config check does not print %q:\n%s", want, out)
		}
	}
	for _, leak := range []string{tok, secret, "hunter2"} {
		if strings.Contains(out+errOut, leak) {
			t.Errorf("config check shows the secret %q:\n%s%s", leak, out, errOut)
		}
	}
	if !strings.Contains(errOut, "valid") {
		t.Errorf("stderr %q", errOut)
	}

	for _, vars := range []map[string]string{
		{"WSBRIDGE_ADMIN_TOKEN": "short-secret"},
		{"WSBRIDGE_QUEUE_SIZE": "-1"},
		{"WSBRIDGE_QUEUE_BYTES": "1KiB"}, // below max-push-size: a rule between settings
	} {
		code, out, errOut = runArgs(t, vars, "config", "check")
		for name := range vars {
			if code != 2 || out != "" || !strings.Contains(errOut, name) || strings.Contains(errOut, "short-secret") {
				t.Errorf("invalid %s: exit %d, stdout %q, stderr %q", name, code, out, errOut)
			}
		}
	}
	code, _, errOut = runArgs(t, map[string]string{"WSBRIDGE_TLS_CERT": "/nonexistent/cert.pem", "WSBRIDGE_TLS_KEY": "/nonexistent/key.pem"}, "config", "check")
	if code != 2 || !strings.Contains(errOut, "tls-cert") {
		t.Errorf("missing certificate files: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runArgs(t, nil, "config"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("config without check: exit %d, %q", code, errOut)
	}
}

package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/admin"
)

// admin is a stand-in for the bridge's admin server: /healthz answers
// healthz, /readyz answers readyz.
func fakeAdmin(t *testing.T, healthz, readyz int) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(healthz)
		w.Write([]byte("healthz says " + http.StatusText(healthz) + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(readyz)
		w.Write([]byte("readyz says " + http.StatusText(readyz) + "\n"))
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// adminEnv returns a getenv with WSBRIDGE_ADMIN_ADDR set to addr.
func adminEnv(addr string) func(string) string {
	return func(k string) string {
		if k == "WSBRIDGE_ADMIN_ADDR" {
			return addr
		}
		return ""
	}
}

func runHealthcheck(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := healthcheck(args, func(k string) (string, bool) { v := getenv(k); return v, v != "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHealthcheckStatus(t *testing.T) {
	healthy := fakeAdmin(t, http.StatusOK, http.StatusOK)
	sick := fakeAdmin(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	notReady := fakeAdmin(t, http.StatusOK, http.StatusServiceUnavailable)
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	for _, tc := range []struct {
		name string
		addr string
		args []string
		want int
		out  string // in stdout (want 0) or stderr (want 1)
	}{
		{"healthy", addr(healthy), nil, 0, "HTTP 200 healthz says OK"},
		{"healthy readyz", addr(healthy), []string{"-path", "/readyz"}, 0, "HTTP 200 readyz says OK"},
		{"path without slash", addr(healthy), []string{"-path", "readyz"}, 0, "/readyz: HTTP 200"},
		{"503", addr(sick), nil, 1, "HTTP 503 healthz says Service Unavailable"},
		{"alive but not ready", addr(notReady), []string{"-path", "/readyz"}, 1, "HTTP 503"},
		{"alive", addr(notReady), nil, 0, "HTTP 200"},
		{"404", addr(healthy), []string{"-path", "/nothing"}, 1, "HTTP 404"},
		{"redirect is a failure", addr(healthy), []string{"-path", "/moved"}, 1, "redirected"},
		{"url flag", "", []string{"-url", healthy.URL + "/healthz"}, 0, "HTTP 200"},
		{"bad address", "no-port", nil, 1, "want host:port"},
		{"extra argument", addr(healthy), []string{"/healthz"}, 1, "unexpected argument"},
		{"bad flag", addr(healthy), []string{"-nope"}, 1, "flag provided but not defined"},
		{"zero timeout", addr(healthy), []string{"-timeout", "0s"}, 1, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A long deadline unless the case is about -timeout: every
			// answer here is meant to arrive, and on a loaded machine the
			// default 2s could turn it into a timeout.
			args := tc.args
			if !slices.Contains(args, "-timeout") {
				args = append([]string{"-timeout", "30s"}, args...)
			}
			code, stdout, stderr := runHealthcheck(t, adminEnv(tc.addr), args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tc.want, stdout, stderr)
			}
			got := stdout
			if tc.want != 0 {
				got = stderr
			}
			if !strings.Contains(got, tc.out) {
				t.Errorf("output %q does not contain %q", got, tc.out)
			}
		})
	}
}

func TestHealthcheckRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, stderr := runHealthcheck(t, adminEnv(addr))
	if code != 1 || !strings.Contains(stderr, "refused") {
		t.Fatalf("exit %d, stderr %q: want 1 and connection refused", code, stderr)
	}
}

func TestHealthcheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	code, _, stderr := runHealthcheck(t, adminEnv(""), "-url", srv.URL+"/healthz", "-timeout", "200ms")
	if code != 1 || !strings.Contains(stderr, "Timeout") {
		t.Fatalf("exit %d, stderr %q: want 1 and a timeout", code, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a 200ms timeout took %v", d)
	}
}

func TestHealthURL(t *testing.T) {
	for _, tc := range []struct{ addr, path, want string }{
		{"", "/healthz", "http://127.0.0.1:9503/healthz"},
		{admin.DefaultAddr, "/readyz", "http://127.0.0.1:9503/readyz"},
		{":9503", "/healthz", "http://127.0.0.1:9503/healthz"},
		{"0.0.0.0:9600", "/healthz", "http://127.0.0.1:9600/healthz"},
		{"[::]:9503", "/healthz", "http://[::1]:9503/healthz"},
		{"[::1]:9503", "/healthz", "http://[::1]:9503/healthz"},
		{"10.1.2.3:9503", "healthz", "http://10.1.2.3:9503/healthz"},
		{"localhost:9503", "/healthz", "http://localhost:9503/healthz"},
	} {
		got, err := healthURL(tc.addr, tc.path, false)
		if err != nil || got != tc.want {
			t.Errorf("healthURL(%q, %q) = %q, %v; want %q", tc.addr, tc.path, got, err, tc.want)
		}
	}
	for _, bad := range []string{"9503", "127.0.0.1", "127.0.0.1:", "off", "[::1"} {
		if got, err := healthURL(bad, "/healthz", false); err == nil {
			t.Errorf("healthURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestHealthURLTLS(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"", "https://127.0.0.1:9503/healthz"},
		{"[::]:9503", "https://[::1]:9503/healthz"},
		{"10.1.2.3:9503", "https://10.1.2.3:9503/healthz"},
	} {
		if got, err := healthURL(tc.addr, "/healthz", true); err != nil || got != tc.want {
			t.Errorf("healthURL(%q, TLS) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	code, stdout, _ := runHealthcheck(t, func(k string) string {
		return map[string]string{"WSBRIDGE_ADMIN_ADDR": ":9503", "WSBRIDGE_ADMIN_TLS_CERT": "/etc/tls/tls.crt"}[k]
	}, "-print-url")
	if code != 0 || stdout != "https://127.0.0.1:9503/healthz\n" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

// TestHealthcheckTLS: with WSBRIDGE_ADMIN_TLS_CERT set the check GETs https://
// and accepts the loopback server's certificate; without it, it speaks
// plain HTTP, which a TLS server refuses.
func TestHealthcheckTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("tls ok\n"))
	}))
	defer srv.Close()
	certFile := filepath.Join(t.TempDir(), "tls.crt")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL, "https://")
	withTLS := func(k string) string {
		return map[string]string{"WSBRIDGE_ADMIN_ADDR": addr, "WSBRIDGE_ADMIN_TLS_CERT": certFile}[k]
	}
	if code, stdout, stderr := runHealthcheck(t, withTLS, "-timeout", "30s"); code != 0 || !strings.Contains(stdout, "https://"+addr+"/healthz: HTTP 200 tls ok") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := runHealthcheck(t, adminEnv(addr), "-timeout", "30s"); code != 1 || !strings.Contains(stderr, "HTTP 400") {
		t.Errorf("plain HTTP to the TLS server: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, stderr := runHealthcheck(t, adminEnv(""), "-timeout", "30s", "-url", srv.URL+"/healthz"); code != 0 {
		t.Errorf("-url https://127.0.0.1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestClientTLS: loopback is not verified; any other host is, against the
// system roots and the certificates in WSBRIDGE_ADMIN_TLS_CERT.
func TestHealthTLS(t *testing.T) {
	for _, target := range []string{"https://127.0.0.1:9503/healthz", "https://[::1]:9503/", "https://localhost:9503/", "https://127.8.9.1:1/"} {
		cfg, err := healthTLS(target, "")
		if err != nil || cfg == nil || !cfg.InsecureSkipVerify {
			t.Errorf("healthTLS(%q) = %+v, %v; want no verification", target, cfg, err)
		}
	}
	if cfg, err := healthTLS("http://10.1.2.3:9503/healthz", ""); cfg != nil || err != nil {
		t.Errorf("healthTLS(http://) = %+v, %v; want nil", cfg, err)
	}

	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close()
	leaf := srv.Certificate() // self-signed, for example.com
	other := httptest.NewTLSServer(http.NotFoundHandler())
	other.Close()
	dir := t.TempDir()
	certFile := filepath.Join(dir, "tls.crt")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := healthTLS("https://10.1.2.3:9503/healthz", certFile)
	if err != nil || cfg.InsecureSkipVerify || cfg.RootCAs == nil {
		t.Fatalf("healthTLS(10.1.2.3) = %+v, %v; want verification", cfg, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "example.com"}); err != nil {
		t.Errorf("the certificate of WSBRIDGE_ADMIN_TLS_CERT is not trusted: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "wrong.example"}); err == nil {
		t.Error("a certificate for another name is trusted")
	}

	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "missing.crt"), garbage} {
		if _, err := healthTLS("https://10.1.2.3:9503/", f); err == nil || !strings.Contains(err.Error(), "WSBRIDGE_ADMIN_TLS_CERT") {
			t.Errorf("ClientTLS with %s: %v, want an error naming WSBRIDGE_ADMIN_TLS_CERT", f, err)
		}
	}
}

func TestHealthcheckPrintURL(t *testing.T) {
	code, stdout, _ := runHealthcheck(t, adminEnv(":9503"), "-print-url", "-path", "/readyz")
	if code != 0 || stdout != "http://127.0.0.1:9503/readyz\n" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
}

// TestHealthcheckBinary runs the subcommand as a process, as Docker's
// HEALTHCHECK would: the exit status is what counts. The process is this
// test binary run as the command (TestMain, asMainVar).
func TestHealthcheckBinary(t *testing.T) {
	bin := os.Args[0]
	healthy := fakeAdmin(t, http.StatusOK, http.StatusOK)
	sick := fakeAdmin(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	for _, tc := range []struct {
		name string
		srv  *httptest.Server
		want int
	}{
		{"200", healthy, 0},
		{"503", sick, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A long deadline: the answer is meant to arrive (the default
			// 2s could pass on a loaded machine).
			cmd := exec.Command(bin, "healthcheck", "-timeout", "30s")
			cmd.Env = append(os.Environ(), asMainVar+"=1", "WSBRIDGE_ADMIN_ADDR="+strings.TrimPrefix(tc.srv.URL, "http://"))
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("exit %d, want %d: %s", code, tc.want, out)
			}
		})
	}
}

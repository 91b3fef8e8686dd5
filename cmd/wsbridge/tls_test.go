package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsbridge/wsbridge/internal/testutil"
)

// certLoaded matches the load record of listener's certificate with
// common name cn, for reason.
func certLoaded(listener, cn, reason string) func(map[string]any) bool {
	return func(r map[string]any) bool {
		return r["listener"] == listener && r["subject"] == "CN="+cn && r["reason"] == reason
	}
}

// wssDial connects over TLS trusting only ca and returns the connection
// and the certificate the bridge presented.
func wssDial(t *testing.T, addr string, ca *testutil.CA) (*websocket.Conn, *x509.Certificate) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: ca.ClientConfig(nil)}
	ws, resp, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial wss://%s: %v (%s)", addr, err, statusOf(resp))
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws, ws.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0]
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return resp.Status
}

// httpsDo sends an admin request over HTTPS with the token.
func httpsDo(t *testing.T, hc *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readText(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestRunTLS: both listeners serve TLS; the WebSocket certificate replaced
// on disk is picked up by the file watcher; new handshakes get it, and a
// connection made before still gets pushes; the metrics show the expiry
// and the reload.
func TestRunTLS(t *testing.T) {
	ca := testutil.NewCA(t, "run CA")
	first, second, adm := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{}), ca.Issue(t, "admin", time.Time{})
	wsDir, admDir := t.TempDir(), t.TempDir()
	wsCert, wsKey := first.Write(t, wsDir)
	admCert, admKey := adm.Write(t, admDir)
	r := startRun(t, "-tls-cert", wsCert, "-tls-key", wsKey, "-admin-tls-cert", admCert, "-admin-tls-key", admKey,
		"-admin-token", adminToken, "-tls-reload-interval", "20ms")
	if rec, _ := r.log.find(t, "websocket listening"); rec["tls"] != true {
		t.Errorf("websocket listening record %v, want tls true", rec)
	}
	admRec := r.log.waitFor(t, "admin listening", r.done)
	if admRec["tls"] != true {
		t.Errorf("admin listening record %v, want tls true", admRec)
	}
	r.log.waitRecord(t, "tls certificate loaded", certLoaded("websocket", "first", "start"), r.done)
	r.log.waitRecord(t, "tls certificate loaded", certLoaded("admin", "admin", "start"), r.done)

	tr := &http.Transport{TLSClientConfig: ca.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	base := "https://" + admRec["addr"].(string)

	// firstFD lists the connections until there is one, and returns its fd.
	firstFD := func() int64 {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			code, body := httpsDo(t, hc, "GET", base+"/v1/connections", "")
			var fd int64
			if _, err := fmt.Sscanf(body, `{"connections":[{"fd":%d`, &fd); code == 200 && err == nil {
				return fd
			}
			if code != 200 || time.Now().After(deadline) {
				t.Fatalf("list: %d %s", code, body)
			}
		}
	}
	push := func(fd int64, text string) {
		t.Helper()
		if code, body := httpsDo(t, hc, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), `{"data":"`+text+`"}`); code != 200 || !strings.Contains(body, `"queued":true`) {
			t.Fatalf("push: %d %s", code, body)
		}
	}

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: ca.ClientConfig(nil)}
	old, _, err := d.Dial("wss://"+r.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if seen := old.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0]; !seen.Equal(first.Cert) {
		t.Fatalf("first handshake got %v", seen.Subject)
	}
	fd := firstFD()
	push(fd, "one")
	if got := readText(t, old); got != "one" {
		t.Fatalf("old connection read %q", got)
	}

	second.Write(t, wsDir)
	r.log.waitRecord(t, "tls certificate loaded", certLoaded("websocket", "second", "file change"), r.done)
	if _, seen := wssDial(t, r.addr, ca); !seen.Equal(second.Cert) {
		t.Errorf("handshake after the change got %v, want CN=second", seen.Subject)
	}
	push(fd, "two")
	if got := readText(t, old); got != "two" {
		t.Fatalf("old connection read %q after the reload", got)
	}

	code, body := httpsDo(t, hc, "GET", base+"/metrics", "")
	for _, want := range []string{
		fmt.Sprintf(`wsbridge_tls_certificate_expiry_timestamp_seconds{listener="websocket"} %s`, promFloat(second.Cert.NotAfter.Unix())),
		fmt.Sprintf(`wsbridge_tls_certificate_expiry_timestamp_seconds{listener="admin"} %s`, promFloat(adm.Cert.NotAfter.Unix())),
		`wsbridge_tls_certificate_reloads_total{listener="websocket",result="ok"} 1`,
		`wsbridge_tls_certificate_reloads_total{listener="websocket",result="failed"} 0`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics (%d) lack %q", code, want)
		}
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d; log:\n%s", code, r.log.String())
	}
}

// promFloat formats n as the text exposition format prints a float.
func promFloat(n int64) string { return strconv.FormatFloat(float64(n), 'g', -1, 64) }

// TestRunTLSBadFiles: a certificate that cannot be loaded is a
// configuration error (exit 2) naming the settings.
func TestRunTLSBadFiles(t *testing.T) {
	ca := testutil.NewCA(t, "run CA")
	a, b := ca.Issue(t, "a", time.Time{}), ca.Issue(t, "b", time.Time{})
	dir := t.TempDir()
	certFile, keyFile := a.Write(t, dir)
	otherKey := filepath.Join(dir, "b.key")
	garbage := filepath.Join(dir, "garbage.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{{otherKey, b.KeyPEM}, {garbage, []byte("not a certificate")}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing certificate", []string{"-tls-cert", filepath.Join(dir, "nope.crt"), "-tls-key", keyFile},
			[]string{"WSBRIDGE_TLS_CERT", "nope.crt", "no such file"}},
		{"unreadable key", []string{"-tls-cert", certFile, "-tls-key", dir},
			[]string{"WSBRIDGE_TLS_KEY", "is a directory"}},
		{"not PEM", []string{"-tls-cert", garbage, "-tls-key", keyFile},
			[]string{"WSBRIDGE_TLS_CERT", "garbage.pem"}},
		{"key of another certificate", []string{"-tls-cert", certFile, "-tls-key", otherKey},
			[]string{"WSBRIDGE_TLS_KEY", "does not match"}},
		{"admin certificate missing", []string{"-admin-addr", "127.0.0.1:0", "-admin-tls-cert", filepath.Join(dir, "nope.crt"), "-admin-tls-key", keyFile},
			[]string{"WSBRIDGE_ADMIN_TLS_CERT", "nope.crt"}},
		{"half a pair", []string{"-tls-cert", certFile},
			[]string{"WSBRIDGE_TLS_CERT", "WSBRIDGE_TLS_KEY", "set both or neither"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0"}, tc.args...)
			if code := run(context.Background(), args, noEnv, &stdout, &stderr); code != 2 {
				t.Fatalf("run = %d, want 2; stderr %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
}

// TestRunTLSHandshakeTimeout: a client that opens a connection to the wss
// port and never says hello is disconnected after the handshake timeout,
// as on a plain port.
func TestRunTLSHandshakeTimeout(t *testing.T) {
	ca := testutil.NewCA(t, "run CA")
	certFile, keyFile := ca.Issue(t, "server", time.Time{}).Write(t, t.TempDir())
	r := startRun(t, "-tls-cert", certFile, "-tls-key", keyFile, "-handshake-timeout", "200ms")
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound on the test, not the bridge
	n, err := c.Read(make([]byte, 1))
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the silent client is still connected after 20s (handshake timeout 200ms)")
	}
	if err == nil || n != 0 {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d", code)
	}
}

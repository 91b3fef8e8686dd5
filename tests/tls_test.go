package tests

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// wss dials the bridge over TLS trusting only ca, and returns the client
// and the certificate the bridge presented.
func wss(t *testing.T, addr string, ca *testutil.CA) (*client, *x509.Certificate) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: ca.ClientConfig(nil)}
	ws, resp, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial wss://%s: %v (%s)", addr, err, status(resp))
	}
	return newClient(t, ws), ws.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// readMessage reads the next message of a connection that has no reader
// goroutine (newClient's reader drops messages).
func readMessage(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestTLSEndToEnd: the real binary serves wss:// and an https admin API. A
// client's message reaches the application; the application's push (over
// the https admin API) reaches the client. A new certificate on disk and
// SIGHUP: the process goes on, new handshakes get the new certificate, the
// connection made before stays open and still gets pushes. Broken files
// and SIGHUP: the certificate in use stays, the failure is logged and
// counted.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	const secret = "e2e-tls-secret"
	app := newPHPApp(t, secret)
	ca := testutil.NewCA(t, "e2e CA")
	first, second := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	dir := t.TempDir()
	certFile, keyFile := first.Write(t, dir)
	p := startDefault(t, []string{
		"WSBRIDGE_TLS_CERT=" + certFile, "WSBRIDGE_TLS_KEY=" + keyFile,
		// The admin listener shares the files here; each has its own
		// reloader.
		"WSBRIDGE_ADMIN_TLS_CERT=" + certFile, "WSBRIDGE_ADMIN_TLS_KEY=" + keyFile,
		"WSBRIDGE_ADMIN_TOKEN=" + adminToken,
		"WSBRIDGE_EVENTS_URL=" + app.srv.URL + "/wsbridge/events",
		"WSBRIDGE_EVENTS_SECRET=" + secret,
		"WSBRIDGE_NODE_ID=3",
	}, "-admin-addr", "127.0.0.1:0")
	if rec, _ := p.find("websocket listening"); rec["tls"] != true {
		t.Errorf("websocket listening record %v, want tls true", rec)
	}
	admRec := p.waitFor("admin listening")
	if admRec["tls"] != true {
		t.Errorf("admin listening record %v, want tls true", admRec)
	}
	rec := p.waitRecord("tls certificate loaded", certLoaded("websocket", "first", "start"))
	if rec["not_after"] != first.Cert.NotAfter.UTC().Format(time.RFC3339) {
		t.Errorf("load record %v, want not_after %s", rec, first.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	base := "https://" + admRec["addr"].(string)
	tr := &http.Transport{TLSClientConfig: ca.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: readTimeout, Transport: tr}
	push := func(fd int64, text string) {
		t.Helper()
		code, body, err := adminCall(hc, "POST", fmt.Sprintf("%s/v1/connections/%d/push", base, fd), `{"data":"`+text+`"}`)
		if err != nil || code != 200 || !strings.Contains(string(body), `"queued":true`) {
			t.Fatalf("push over https: %d %s %v", code, body, err)
		}
	}

	// Plain ws:// on the TLS port is refused (net/http answers 400).
	if resp := dialStatus(t, "ws://"+p.addr+"/"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain ws:// on the TLS port: %s, want 400", resp.Status)
	}

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: ca.ClientConfig(nil)}
	old, _, err := d.Dial("wss://"+p.addr+"/?c=old", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if seen := old.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0]; !seen.Equal(first.Cert) {
		t.Fatalf("first handshake got %v", seen.Subject)
	}
	if err := old.WriteMessage(websocket.TextMessage, []byte("hello over tls")); err != nil {
		t.Fatal(err)
	}
	evs := app.waitEvents(2)
	if evs[0].Type != "open" || evs[0].Query != "c=old" || evs[1].Type != "message" || evs[1].Data != "hello over tls" {
		t.Fatalf("events %+v, want open and the message", evs)
	}
	fd := evs[0].FD
	push(fd, "answer one")
	if got := readMessage(t, old); got != "answer one" {
		t.Fatalf("read %q", got)
	}

	// A new certificate and SIGHUP.
	second.Write(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitRecord("tls certificate loaded", certLoaded("websocket", "second", "signal"))
	p.waitRecord("tls certificate loaded", certLoaded("admin", "second", "signal"))
	if c, seen := wss(t, p.addr, ca); !seen.Equal(second.Cert) {
		t.Errorf("handshake after SIGHUP got %v, want CN=second", seen.Subject)
	} else {
		c.ping("new connection")
	}
	push(fd, "answer two")
	if got := readMessage(t, old); got != "answer two" {
		t.Fatalf("the old connection read %q after the reload", got)
	}
	if err := old.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if evs := app.waitEvents(4); evs[len(evs)-1].Data != "still here" {
		t.Errorf("last event %+v", evs[len(evs)-1])
	}

	// Broken files and SIGHUP: the certificate in use stays.
	testutil.WriteFileAtomic(t, certFile, second.CertPEM[:len(second.CertPEM)/2], 0o644)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitRecord("tls certificate reload failed; the previous certificate stays in use", func(r map[string]any) bool { return r["listener"] == "websocket" })
	p.waitRecord("tls certificate reload failed; the previous certificate stays in use", func(r map[string]any) bool { return r["listener"] == "admin" })
	if _, seen := wss(t, p.addr, ca); !seen.Equal(second.Cert) {
		t.Errorf("handshake after a failed reload got %v, want CN=second", seen.Subject)
	}
	code, body, err := adminCall(hc, "GET", base+"/metrics", "")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics over https: %d %v", code, err)
	}
	for _, want := range []string{
		`wsbridge_tls_certificate_reloads_total{listener="websocket",result="ok"} 1`,
		`wsbridge_tls_certificate_reloads_total{listener="websocket",result="failed"} 1`,
		`wsbridge_tls_certificate_reloads_total{listener="admin",result="failed"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	push(fd, "answer three")
	if got := readMessage(t, old); got != "answer three" {
		t.Fatalf("the old connection read %q after a failed reload", got)
	}
	p.stop()
}

// TestTLSFileChange: without a signal, a certificate replaced on disk is
// loaded within the reload interval; the connection made before stays.
func TestTLSFileChange(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "e2e CA")
	first, second := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	dir := t.TempDir()
	certFile, keyFile := first.Write(t, dir)
	p := startDefault(t, []string{"WSBRIDGE_TLS_CERT=" + certFile, "WSBRIDGE_TLS_KEY=" + keyFile, "WSBRIDGE_TLS_RELOAD_INTERVAL=50ms"})
	old, seen := wss(t, p.addr, ca)
	if !seen.Equal(first.Cert) {
		t.Fatalf("first handshake got %v", seen.Subject)
	}
	old.ping("before")
	second.Write(t, dir)
	p.waitRecord("tls certificate loaded", certLoaded("websocket", "second", "file change"))
	if _, seen := wss(t, p.addr, ca); !seen.Equal(second.Cert) {
		t.Errorf("handshake after the change got %v, want CN=second", seen.Subject)
	}
	old.ping("after") // the old connection is served
	p.stop()
	if code := old.closeCode(); code != websocket.CloseGoingAway {
		t.Errorf("old connection closed with %d at shutdown, want 1001", code)
	}
}

// TestSIGHUPWithoutTLS: SIGHUP does not stop a bridge without
// certificates either.
func TestSIGHUPWithoutTLS(t *testing.T) {
	t.Parallel()
	p := startDefault(t, nil)
	c := connect(t, "ws://"+p.addr+"/")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor("SIGHUP: no TLS certificate to reload")
	c.ping("after SIGHUP")
	p.stop()
}

// TestTLSBadFiles: a certificate that cannot be loaded stops the binary at
// start with exit 2 and names the setting.
func TestTLSBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "e2e CA")
	certFile, keyFile := ca.Issue(t, "a", time.Time{}).Write(t, dir)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	res := runBinary(t, []string{"WSBRIDGE_TLS_CERT=" + certFile, "WSBRIDGE_TLS_KEY=" + keyFile}, "-ws-addr", "127.0.0.1:0", "-rpc-addr", "off")
	if res.code != 2 || !strings.Contains(res.stderr, "WSBRIDGE_TLS_KEY") || !strings.Contains(res.stderr, filepath.Base(keyFile)) {
		t.Errorf("exit %d, stderr %q: want 2 naming WSBRIDGE_TLS_KEY and the file", res.code, res.stderr)
	}
	res = runBinary(t, []string{"WSBRIDGE_ADMIN_TLS_CERT=" + certFile}, "-ws-addr", "127.0.0.1:0", "-rpc-addr", "off")
	if res.code != 2 || !strings.Contains(res.stderr, "set both or neither") {
		t.Errorf("half a pair: exit %d, stderr %q", res.code, res.stderr)
	}
}

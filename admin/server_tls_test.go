package admin_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/internal/testutil"
	"github.com/wsbridge/wsbridge/sender"
)

// TestServerTLS: with Config.TLS the admin server answers HTTPS with the
// certificate GetCertificate gives; plain HTTP gets 400 (net/http's "Client
// sent an HTTP request to an HTTPS server"), not the route.
func TestServerTLS(t *testing.T) {
	ca := testutil.NewCA(t, "admin CA")
	leaf := ca.Issue(t, "admin", time.Time{})
	cert := leaf.Certificate(t)
	hub := newHub(t)
	srv, err := admin.New(hub, sender.NewService(hub), admin.Config{Addr: "127.0.0.1:0", Logger: quietLog(), TLS: &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	tr := &http.Transport{TLSClientConfig: ca.ClientConfig(nil)}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: wait}
	resp, err := hc.Get("https://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(leaf.Cert) {
		t.Errorf("GET https /healthz: %d %s (tls %v)", resp.StatusCode, body, resp.TLS != nil)
	}

	plain := &http.Client{Transport: &http.Transport{}, Timeout: wait}
	if resp, err := plain.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP was answered %d, want 400", resp.StatusCode)
		}
	}
}

package bridge

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/internal/testutil"
)

// TestBufConnCloseOverTLS: closing the socket of a wss:// client that
// stopped reading does not wait to write TLS's close_notify alert
// (tls.Conn.Close would, up to 5 s of its own, and the hub closes the
// remaining connections one after the other at its shutdown deadline).
// net.Pipe has no buffer: a write completes only when the peer reads, so
// the alert could only be written to a client that reads.
func TestBufConnCloseOverTLS(t *testing.T) {
	ca := testutil.NewCA(t, "bufconn CA")
	leaf := ca.Issue(t, "server", time.Time{})
	cert := leaf.Certificate(t)
	serverRaw, clientRaw := net.Pipe()
	defer clientRaw.Close()
	// No session tickets: the client would read them only with its first
	// Read, and it never reads.
	server := tls.Server(serverRaw, &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	ccfg := ca.ClientConfig(nil)
	ccfg.ServerName = "localhost"
	client := tls.Client(clientRaw, ccfg)
	handshake := make(chan error, 1)
	go func() { handshake <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-handshake; err != nil {
		t.Fatal(err)
	}
	// The client never reads: nothing the server writes from now on can
	// complete.
	b := &bufConn{Conn: server, slack: slackFor(DefaultWriteTimeout)}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v, want the socket closed at once without the close_notify alert", err)
	}
	if _, err := serverRaw.Write([]byte{0}); err == nil {
		t.Error("the socket under the TLS connection is still open")
	}
}

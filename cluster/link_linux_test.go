package cluster

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wsbridge/wsbridge/internal/redistest"
)

// sockopt reads an integer option of c's socket.
func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
}

// TestLinkSocketOptions: both ends of a link probe it when idle, and the
// dialer gives up on data unacknowledged for linkUserTimeout, so that a
// machine gone without closing its connections breaks its links (before
// another node may take its id) instead of swallowing their frames.
func TestLinkSocketOptions(t *testing.T) {
	url, prefix := redistest.Start(t).URL(), redistest.Prefix(t)
	a := startNodeWith(t, url, prefix, 1, withLink)
	b := startNodeWith(t, url, prefix, 2, withLink)
	_, fd := b.dial(t)
	if ok, err := a.svc.Check(fd); !ok || err != nil {
		t.Fatalf("Check = %v, %v", ok, err)
	}
	linkUp(t, a, 2)
	o, _ := a.member.router.outbox(2)
	ends := map[string]net.Conn{"dialer": o.link.Load().c}
	b.member.links.mu.Lock()
	for c, in := range b.member.links.conns {
		if in.peer == 1 {
			ends["listener"] = c
		}
	}
	b.member.links.mu.Unlock()
	if len(ends) != 2 {
		t.Fatalf("ends of the link: %v", ends)
	}
	for end, c := range ends {
		for _, o := range []struct {
			name       string
			level, opt int
			want       int
		}{
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(linkKeepAlive.Idle.Seconds())},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(linkKeepAlive.Interval.Seconds())},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, linkKeepAlive.Count},
		} {
			if got := sockopt(t, c, o.level, o.opt); got != o.want {
				t.Errorf("%s: %s = %d, want %d", end, o.name, got, o.want)
			}
		}
	}
	if got := sockopt(t, ends["dialer"], unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != int(linkUserTimeout.Milliseconds()) {
		t.Errorf("dialer: TCP_USER_TIMEOUT = %d ms, want %d", got, linkUserTimeout.Milliseconds())
	}
}

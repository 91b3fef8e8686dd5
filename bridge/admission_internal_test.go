package bridge

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzNegotiateDeflate: any Sec-WebSocket-Extensions value is negotiated
// without a panic; an accepted offer is a permessage-deflate one, and one
// with server_max_window_bits is accepted only at 15.
func FuzzNegotiateDeflate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate", "permessage-deflate; client_max_window_bits", "permessage-deflate; server_max_window_bits=15",
		"permessage-deflate; server_max_window_bits=9, permessage-deflate", `permessage-deflate; client_max_window_bits="10"`,
		"permessage-deflate; foo", `x; a="b,c", permessage-deflate`, `permessage-deflate; client_max_window_bits="1\0"`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o := negotiateDeflate(http.Header{"Sec-Websocket-Extensions": {s}})
		lower := strings.ToLower(s)
		if o.accepted && !strings.Contains(lower, "permessage-deflate") {
			t.Fatalf("%q: accepted without a permessage-deflate offer", s)
		}
		if o.serverBits && !strings.Contains(lower, "15") {
			t.Fatalf("%q: server_max_window_bits echoed without a 15 offered", s)
		}
		if !o.accepted && o.serverBits {
			t.Fatalf("%q: declined, with a window echoed", s)
		}
	})
}

// FuzzForwardedFor: any proxy header gives either no address or a valid
// one without a zone; never a panic.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "198.51.100.1, 203.0.113.7, 10.1.2.3", "[2001:db8::1]:4711", "::ffff:1.2.3.4", "fe80::1%eth0", "a,,b", ""} {
		f.Add(s, "10.0.0.1")
	}
	h := &Hub{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	f.Fuzz(func(t *testing.T, xff, realIP string) {
		ip, ok := h.forwardedFor(http.Header{"X-Forwarded-For": {xff}})
		if ok != ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("X-Forwarded-For %q: %v, %v", xff, ip, ok)
		}
		ip, ok = h.forwardedFor(http.Header{"X-Real-Ip": {realIP}})
		if ok != ip.IsValid() || ip.Zone() != "" {
			t.Fatalf("X-Real-IP %q: %v, %v", realIP, ip, ok)
		}
	})
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(2, 3) // 2 per second, bursts of 3
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := b.take(now); !ok {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	ok, wait := b.take(now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: %v, wait %s; want refused, 500ms", ok, wait)
	}
	if ok, _ := b.take(now.Add(500 * time.Millisecond)); !ok {
		t.Fatal("a token after half a second refused")
	}
	if ok, _ := b.take(now.Add(time.Hour)); !ok { // refilled, capped at the burst
		t.Fatal("after an hour refused")
	}
	for i := range 2 {
		if ok, _ := b.take(now.Add(time.Hour)); !ok {
			t.Fatalf("burst after an hour: take %d refused", i+2)
		}
	}
	if ok, _ := b.take(now.Add(time.Hour)); ok {
		t.Fatal("the bucket held more than its burst")
	}
}

func TestIPKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	} {
		if got := ipKey(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("ipKey(%s) = %v, want %s", tt.in, got, tt.want)
		}
	}
}

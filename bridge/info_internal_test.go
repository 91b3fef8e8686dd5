package bridge

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

var packHeaderTests = []http.Header{
	{},
	{"Host": {"example.com"}},
	{"Host": {"a:8080"}, "Cookie": {"a=b; c=d", "e=f"}, "X-Empty": {""}, "X-Colon": {"a: b: c"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}},
}

func TestPackHeaderRoundTrip(t *testing.T) {
	for _, h := range packHeaderTests {
		got := unpackHeader(packHeader(h))
		if !reflect.DeepEqual(got, h) {
			t.Errorf("unpackHeader(packHeader(%v)) = %v", h, got)
		}
	}
}

// FuzzPackHeader: any header net/http could hand over (token names,
// values without CR or LF) comes back as it was.
func FuzzPackHeader(f *testing.F) {
	f.Add("Host", "example.com", "Cookie", "a=b: c")
	f.Add("X", "", "Y", "\x00\xff")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		h := http.Header{}
		for _, kv := range [][2]string{{n1, v1}, {n2, v2}} {
			if !validHeaderName(kv[0]) || strings.ContainsAny(kv[1], "\r\n") {
				return
			}
			name := http.CanonicalHeaderKey(kv[0])
			h[name] = append(h[name], kv[1])
		}
		if got := unpackHeader(packHeader(h)); !reflect.DeepEqual(got, h) {
			t.Fatalf("unpackHeader(packHeader(%q)) = %q", h, got)
		}
	})
}

// validHeaderName: an RFC 7230 token, as net/http accepts.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x7f || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

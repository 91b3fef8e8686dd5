package cluster

import (
	"slices"
	"strings"
	"testing"
)

var parseURLTests = []struct {
	url   string
	addrs []string
	err   string // "" when valid
}{
	{"redis://127.0.0.1:6379", []string{"127.0.0.1:6379"}, ""},
	{"redis://:s3cret@redis.internal:6380/2", []string{"redis.internal:6380"}, ""},
	{"rediss://user:s3cret@redis.internal", []string{"redis.internal:6379"}, ""},
	{"redis://a:7000?addr=b:7001&addr=c:7002", []string{"a:7000", "b:7001", "c:7002"}, ""},
	{"redis://s1:26379?addr=s2:26379&master_set=mymaster", []string{"s1:26379", "s2:26379"}, ""},
	{"unix:///run/redis.sock", []string{"/run/redis.sock"}, ""},
	{"", nil, "empty"},
	{"http://x:s3cret@h", nil, "scheme"},
	{"redis://h?adr=b:1", nil, "unknown parameter"},
	{"redis://:s3cret@h/x", nil, "database"},
	{"redis://:s3cret@h?db=z", nil, "database"},
	{"redis://a/1?addr=b", nil, "only database 0"},
	{"redis:///0", nil, "no host"},
	{"redis://h#frag", nil, "fragment"},
	{"redis://:s3cret@h:1?dial_timeout=soon", nil, "dial timeout"},
}

func TestParseURL(t *testing.T) {
	for _, tt := range parseURLTests {
		u, err := ParseURL(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseURL(%q) = %v, want an error with %q", tt.url, err, tt.err)
			}
		} else if err != nil || !slices.Equal(u.Addresses(), tt.addrs) {
			t.Errorf("ParseURL(%q) = %v, %v; want %v", tt.url, u.Addresses(), err, tt.addrs)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURL(%q): the error shows the password: %v", tt.url, err)
		}
		if strings.Contains(u.String(), "s3cret") {
			t.Errorf("ParseURL(%q).String() = %q shows the password", tt.url, u.String())
		}
	}
	if u, _ := ParseURL("redis://s1:26379?master_set=m"); u.Sentinel() != "m" {
		t.Errorf("Sentinel() = %q", u.Sentinel())
	}
}

func FuzzParseURL(f *testing.F) {
	for _, tt := range parseURLTests {
		f.Add(tt.url)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseURL(raw)
		if err != nil {
			return
		}
		if len(u.Addresses()) == 0 {
			t.Fatalf("ParseURL(%q) accepted with no address", raw)
		}
		if strings.Contains(u.String(), ":"+pw(raw)+"@") && pw(raw) != "" && pw(raw) != "xxxxx" {
			t.Fatalf("String() of %q shows the password", raw)
		}
	})
}

// pw is the password in raw, by hand: in the authority (after "://", up
// to the first "/", "?" or "#"), before its last "@".
func pw(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	authority := raw[i+3:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return ""
	}
	user := authority[:at]
	if c := strings.Index(user, ":"); c >= 0 {
		return user[c+1:]
	}
	return ""
}

func TestKeys(t *testing.T) {
	k, err := NewKeys("")
	if err != nil || k.Prefix() != DefaultPrefix {
		t.Fatalf("NewKeys(\"\") = %v, %v", k, err)
	}
	for _, want := range [][2]string{
		{k.Claim(3), "{wsbridge}:node:3"}, {k.Nodes(), "{wsbridge}:nodes"}, {k.Lost(), "{wsbridge}:lost"},
		{k.Gen(), "{wsbridge}:gen"}, {k.Seq(1023), "{wsbridge}:seq:1023"},
		{k.NodeChannel(3), "wsbridge:node:3"}, {k.GroupChannel("room"), "wsbridge:group:room"},
		{k.UserChannel("u1"), "wsbridge:user:u1"}, {k.BroadcastChannel(), "wsbridge:all"},
	} {
		if want[0] != want[1] {
			t.Errorf("%q, want %q", want[0], want[1])
		}
	}
	for _, bad := range []string{"{x}", "a b", "x:", ":x", strings.Repeat("p", 65), "a\x00"} {
		if _, err := NewKeys(bad); err == nil {
			t.Errorf("NewKeys(%q) accepted", bad)
		}
	}
}

package admin

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
)

var parsePageTests = []struct {
	query string
	want  page
	code  string // error code, "" for none
}{
	{"", page{limit: DefaultPageLimit}, ""},
	{"after=0", page{limit: DefaultPageLimit}, ""},
	{"after=42&limit=7", page{after: 42, limit: 7}, ""},
	{"after=9007199254740991&limit=1000", page{after: bridge.MaxFD, limit: 1000}, ""},
	{"group=room+1", page{limit: DefaultPageLimit, group: "room 1", byGroup: true}, ""},
	{"user=%C3%BC&group=g", page{limit: DefaultPageLimit, user: "ü", byUser: true, group: "g", byGroup: true}, ""},
	{"after=9007199254740992", page{}, rpc.CodeBadRequest},
	{"after=-1", page{}, rpc.CodeBadRequest},
	{"after=+1", page{}, rpc.CodeBadRequest},
	{"after=01", page{}, rpc.CodeBadRequest},
	{"after=1e3", page{}, rpc.CodeBadRequest},
	{"after=", page{}, rpc.CodeBadRequest},
	{"after=99999999999999999999999", page{}, rpc.CodeBadRequest},
	{"limit=0", page{}, rpc.CodeBadRequest},
	{"limit=1001", page{}, rpc.CodeBadRequest},
	{"limit=%201", page{}, rpc.CodeBadRequest},
	{"limit=1&limit=1", page{}, rpc.CodeBadRequest},
	{"offset=1", page{}, rpc.CodeBadRequest},
	{"after", page{}, rpc.CodeBadRequest},
	{"after=%zz", page{}, rpc.CodeBadRequest},
	{"after=1;limit=2", page{}, rpc.CodeBadRequest},
	{"group=", page{}, rpc.CodeInvalidName},
	{"user=" + strings.Repeat("u", 257), page{}, rpc.CodeInvalidName},
	{"user=%FF", page{}, rpc.CodeInvalidName},
}

func TestParsePage(t *testing.T) {
	for _, tt := range parsePageTests {
		got, err := parsePage(tt.query)
		code := ""
		var e *rpc.Error
		if errors.As(err, &e) {
			code = e.Code
		} else if err != nil {
			code = "not an *rpc.Error"
		}
		if code != tt.code {
			t.Errorf("parsePage(%q) error %v, want code %q", tt.query, err, tt.code)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("parsePage(%q) = %+v, want %+v", tt.query, got, tt.want)
		}
	}
}

// FuzzParsePage: whatever the query, parsePage returns a typed error or a
// page within the bounds, and a page written back as a query parses to
// itself.
func FuzzParsePage(f *testing.F) {
	for _, tt := range parsePageTests {
		f.Add(tt.query)
	}
	f.Fuzz(func(t *testing.T, query string) {
		p, err := parsePage(query)
		if err != nil {
			var e *rpc.Error
			if !errors.As(err, &e) || (e.Code != rpc.CodeBadRequest && e.Code != rpc.CodeInvalidName) || e.Message == "" {
				t.Fatalf("parsePage(%q) = %#v", query, err)
			}
			return
		}
		if p.after < 0 || p.after > bridge.MaxFD || p.limit < 1 || p.limit > MaxPageLimit ||
			p.byGroup != (p.group != "") || p.byUser != (p.user != "") {
			t.Fatalf("parsePage(%q) = %+v: out of bounds", query, p)
		}
		q := url.Values{"after": {strconv.FormatInt(p.after, 10)}, "limit": {strconv.Itoa(p.limit)}}
		if p.byGroup {
			q.Set("group", p.group)
		}
		if p.byUser {
			q.Set("user", p.user)
		}
		back, err := parsePage(q.Encode())
		if err != nil || back != p {
			t.Fatalf("parsePage(%q) = %+v; written back as %q it parses to %+v, %v", query, p, q.Encode(), back, err)
		}
	})
}

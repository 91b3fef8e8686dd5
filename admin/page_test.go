package admin

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

var parsePageTests = []struct {
	query string
	want  sender.ListQuery
	code  string // error code, "" for none
}{
	{"", sender.ListQuery{Limit: DefaultPageLimit}, ""},
	{"after=0", sender.ListQuery{Limit: DefaultPageLimit}, ""},
	{"after=42&limit=7", sender.ListQuery{After: 42, Limit: 7}, ""},
	{"after=9007199254740991&limit=1000", sender.ListQuery{After: bridge.MaxFD, Limit: 1000}, ""},
	{"group=room+1", sender.ListQuery{Limit: DefaultPageLimit, Group: "room 1", ByGroup: true}, ""},
	{"user=%C3%BC&group=g", sender.ListQuery{Limit: DefaultPageLimit, User: "ü", ByUser: true, Group: "g", ByGroup: true}, ""},
	{"after=9007199254740992", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=-1", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=+1", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=01", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=1e3", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=99999999999999999999999", sender.ListQuery{}, sender.CodeBadRequest},
	{"limit=0", sender.ListQuery{}, sender.CodeBadRequest},
	{"limit=1001", sender.ListQuery{}, sender.CodeBadRequest},
	{"limit=%201", sender.ListQuery{}, sender.CodeBadRequest},
	{"limit=1&limit=1", sender.ListQuery{}, sender.CodeBadRequest},
	{"offset=1", sender.ListQuery{}, sender.CodeBadRequest},
	{"after", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=%zz", sender.ListQuery{}, sender.CodeBadRequest},
	{"after=1;limit=2", sender.ListQuery{}, sender.CodeBadRequest},
	{"group=", sender.ListQuery{}, sender.CodeInvalidName},
	{"user=" + strings.Repeat("u", 257), sender.ListQuery{}, sender.CodeInvalidName},
	{"user=%FF", sender.ListQuery{}, sender.CodeInvalidName},
}

func TestParsePage(t *testing.T) {
	for _, tt := range parsePageTests {
		got, err := parsePage(tt.query)
		code := ""
		var e *sender.Error
		if errors.As(err, &e) {
			code = e.Code
		} else if err != nil {
			code = "not a *sender.Error"
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
			var e *sender.Error
			if !errors.As(err, &e) || (e.Code != sender.CodeBadRequest && e.Code != sender.CodeInvalidName) || e.Message == "" {
				t.Fatalf("parsePage(%q) = %#v", query, err)
			}
			return
		}
		if p.After < 0 || p.After > bridge.MaxFD || p.Limit < 1 || p.Limit > MaxPageLimit ||
			p.ByGroup != (p.Group != "") || p.ByUser != (p.User != "") {
			t.Fatalf("parsePage(%q) = %+v: out of bounds", query, p)
		}
		q := url.Values{"after": {strconv.FormatInt(p.After, 10)}, "limit": {strconv.Itoa(p.Limit)}}
		if p.ByGroup {
			q.Set("group", p.Group)
		}
		if p.ByUser {
			q.Set("user", p.User)
		}
		back, err := parsePage(q.Encode())
		if err != nil || back != p {
			t.Fatalf("parsePage(%q) = %+v; written back as %q it parses to %+v, %v", query, p, q.Encode(), back, err)
		}
	})
}

package admin

import (
	"fmt"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// Page sizes of GET /v1/connections: sender's.
const (
	DefaultPageLimit = sender.DefaultPageLimit
	MaxPageLimit     = sender.MaxPageLimit
)

// parsePage reads the query of GET /v1/connections: after (an fd, or 0:
// from the start), limit (1..MaxPageLimit), group and user (filters). Any
// other parameter, a repeated one, or a malformed value is an *sender.Error
// (bad_request, or invalid_name for a group or user that cannot exist).
func parsePage(rawQuery string) (sender.ListQuery, error) {
	p := sender.ListQuery{Limit: DefaultPageLimit}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, sender.BadRequest("malformed query string: " + err.Error())
	}
	for key, values := range q {
		if len(values) != 1 {
			return p, sender.BadRequest(fmt.Sprintf("query parameter %q is given %d times", key, len(values)))
		}
		v := values[0]
		switch key {
		case "after":
			n, ok := parseUint(v, bridge.MaxFD)
			if !ok {
				return p, sender.BadRequest(fmt.Sprintf("after=%q: want an fd (an integer 0..%d)", v, int64(bridge.MaxFD)))
			}
			p.After = n
		case "limit":
			n, ok := parseUint(v, MaxPageLimit)
			if !ok || n == 0 {
				return p, sender.BadRequest(fmt.Sprintf("limit=%q: want an integer 1..%d", v, MaxPageLimit))
			}
			p.Limit = int(n)
		case "group", "user":
			if v == "" || len(v) > bridge.MaxNameLength || !utf8.ValidString(v) {
				return p, &sender.Error{Code: sender.CodeInvalidName, Message: fmt.Sprintf("%s: want 1..%d bytes of UTF-8", key, bridge.MaxNameLength)}
			}
			if key == "group" {
				p.Group, p.ByGroup = v, true
			} else {
				p.User, p.ByUser = v, true
			}
		default:
			return p, sender.BadRequest(fmt.Sprintf("unknown query parameter %q (want after, limit, group, user)", key))
		}
	}
	return p, nil
}

// parseUint reads a decimal integer 0..max: digits only, no sign, no
// spaces, no leading zeros but "0" itself.
func parseUint(s string, max int64) (int64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

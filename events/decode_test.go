package events

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/bridge"
)

var authAnswerTests = []struct {
	status int
	body   string
	want   bridge.Authorization
	err    bool
}{
	{200, `{"allow": true}`, bridge.Authorization{Allow: true}, false},
	{200, `{"allow": true, "user": "42", "groups": ["vip", "a"]}`, bridge.Authorization{Allow: true, User: "42", Groups: []string{"vip", "a"}}, false},
	{204, `{"allow": true, "user": 42}`, bridge.Authorization{Allow: true, User: "42"}, false},
	{200, `{"allow": true, "user": -7}`, bridge.Authorization{Allow: true, User: "-7"}, false},
	{200, `{"allow": true, "user": null, "groups": null}`, bridge.Authorization{Allow: true}, false},
	{200, `{"allow": true, "status": 401, "message": "ignored", "extra": {"x": 1}}`, bridge.Authorization{Allow: true}, false},
	{200, `{"allow": false}`, bridge.Authorization{Status: 403, Message: "Forbidden"}, false},
	{200, `{"allow": false, "status": 401, "message": "bad token"}`, bridge.Authorization{Status: 401, Message: "bad token"}, false},
	{200, `{"allow": false, "status": 599}`, bridge.Authorization{Status: 599}, false}, // no status text for 599
	{200, `{"allow": false, "status": 302}`, bridge.Authorization{Status: 403, Message: "Forbidden"}, false},
	{200, `{"allow": false, "status": -1, "user": "42"}`, bridge.Authorization{Status: 403, Message: "Forbidden"}, false},
	{400, ``, bridge.Authorization{Status: 400, Message: "Bad Request"}, false},
	{401, `{"allow": true}`, bridge.Authorization{Status: 401, Message: "Unauthorized"}, false},
	{499, `junk`, bridge.Authorization{Status: 499}, false},
	{500, `{"allow": true}`, bridge.Authorization{}, true},
	{503, ``, bridge.Authorization{}, true},
	{302, ``, bridge.Authorization{}, true},
	{100, ``, bridge.Authorization{}, true},
	{200, ``, bridge.Authorization{}, true},
	{200, `{}`, bridge.Authorization{}, true},
	{200, `{"allow": "yes"}`, bridge.Authorization{}, true},
	{200, `{"allow": 1}`, bridge.Authorization{}, true},
	{200, `{"allow": true} trailing`, bridge.Authorization{}, true},
	{200, `[true]`, bridge.Authorization{}, true},
	{200, `{"allow": true, "user": 1.5}`, bridge.Authorization{}, true},
	{200, `{"allow": true, "user": 99999999999999999999}`, bridge.Authorization{}, true},
	{200, `{"allow": true, "user": ["1"]}`, bridge.Authorization{}, true},
	{200, `{"allow": true, "groups": "vip"}`, bridge.Authorization{}, true},
}

func TestDecodeAuthAnswer(t *testing.T) {
	for _, tt := range authAnswerTests {
		got, err := decodeAuthAnswer(tt.status, []byte(tt.body))
		if tt.err {
			if err == nil || !errors.Is(err, errBadAnswer) {
				t.Errorf("decodeAuthAnswer(%d, %q) = %+v, %v; want an error wrapping errBadAnswer", tt.status, tt.body, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("decodeAuthAnswer(%d, %q) = %+v, %v; want %+v", tt.status, tt.body, got, err, tt.want)
		}
	}
}

// FuzzAuthAnswer: whatever the application answers, the result is one the
// bridge can apply: an allowance, or a refusal with a 4xx/5xx status and a
// message, or an error (503).
func FuzzAuthAnswer(f *testing.F) {
	for _, tt := range authAnswerTests {
		f.Add(tt.status, []byte(tt.body))
	}
	f.Add(200, []byte(`{"allow": false, "status": 418, "message": "\u00e9\ud800"}`))
	f.Add(200, []byte(`{"allow": true, "user": "\xff", "groups": ["", "\x00"]}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		a, err := decodeAuthAnswer(status, body)
		switch {
		case err != nil:
			if !errors.Is(err, errBadAnswer) {
				t.Errorf("error %v does not wrap errBadAnswer", err)
			}
			if status >= 400 && status <= 499 {
				t.Errorf("status %d: error %v, want a refusal with that status", status, err)
			}
			if a.Allow || a.Status != 0 {
				t.Errorf("error %v with a result %+v", err, a)
			}
		case a.Allow:
			if status < 200 || status > 299 || a.Status != 0 || a.Message != "" {
				t.Errorf("status %d %q: allowed with %+v", status, body, a)
			}
		default:
			if a.Status < 400 || a.Status > 599 {
				t.Errorf("status %d %q: refused with status %d", status, body, a.Status)
			}
			if status >= 400 && status <= 499 && a.Status != status {
				t.Errorf("status %d: refused with %d", status, a.Status)
			}
			if a.Message == "" && http.StatusText(a.Status) != "" {
				t.Errorf("status %d %q: refused without a message", status, body)
			}
			if a.User != "" || a.Groups != nil {
				t.Errorf("status %d %q: refusal %+v binds a user or groups", status, body, a)
			}
		}
		if status >= 500 && err == nil {
			t.Errorf("status %d: %+v, want an error (503)", status, a)
		}
	})
}

// TestBatchBody: a batch of any events is one JSON object with the events
// in order, whatever their text.
func TestBatchBody(t *testing.T) {
	evs := []event{
		encodeOpen(bridge.ConnInfo{FD: 1, Path: "/p", RawQuery: "a=1+2&a=%3C%26%3E", Header: http.Header{"X": {"\"q\""}}}, 1),
		encodeMessage(1, 2, bridge.OpText, []byte("<b>\"quoted\"\\ \u2028 é \x00")),
		encodeMessage(1, 3, bridge.OpBinary, []byte{0, 1, 2, 0xff}),
		encodeMessage(1, 4, bridge.OpText, []byte("\xff")), // the bridge never passes this (1007), still valid JSON
		encodeClose(1, 5, bridge.CloseEvent{Code: 1006}),
	}
	for i := range evs {
		evs[i].seq = uint64(i + 1)
	}
	body := batchBody(1023, evs)
	var got struct {
		Node   int              `json:"node"`
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("batch body %s: %v", body, err)
	}
	if got.Node != 1023 || len(got.Events) != len(evs) {
		t.Fatalf("batch body %s: node %d, %d events", body, got.Node, len(got.Events))
	}
	for i, e := range got.Events {
		if e["seq"] != float64(i+1) || e["fd"] != float64(1) {
			t.Errorf("event %d: %v", i, e)
		}
	}
	if d := got.Events[1]["data"]; d != "<b>\"quoted\"\\ \u2028 é \x00" {
		t.Errorf("text data %q", d)
	}
	if d := got.Events[2]; d["data"] != "AAEC/w==" || d["encoding"] != "base64" || d["opcode"] != float64(2) {
		t.Errorf("binary event %v", d)
	}
	if q := got.Events[0]["query"]; q != "a=1+2&a=%3C%26%3E" {
		t.Errorf("open query %q", q)
	}
	if c := got.Events[4]; c["by"] != "client" || c["code"] != float64(1006) || c["reason"] != "" {
		t.Errorf("close event %v", c)
	}
	for _, e := range evs {
		if !utf8.Valid(e.rest) || len(e.appendTo(nil)) > e.size() {
			t.Errorf("event %s: invalid UTF-8 or larger than its size %d", e.appendTo(nil), e.size())
		}
	}
}

// TestMaxCloseEventSize: the room reserved for a close event holds the
// largest one: the longest reason, every byte of it escaped, and any code.
func TestMaxCloseEventSize(t *testing.T) {
	for _, ev := range []bridge.CloseEvent{
		{Code: 4999, Reason: strings.Repeat("\x01", 123), ByServer: true},
		{Code: 65535, Reason: strings.Repeat("\u2028", 41), ByServer: true},
		{Code: -1 << 62, Reason: strings.Repeat("\xff", 500), ByServer: true}, // never passed: cut
		{Code: 1 << 62, Reason: strings.Repeat("é", 300)},
	} {
		e := encodeClose(1<<53-1, -1<<63, ev)
		e.seq = 1<<64 - 1
		if n := len(e.appendTo(nil)); n > e.size() || e.size() > MaxCloseEventSize {
			t.Errorf("close event %+v: %d bytes, size %d, want at most %d", ev, n, e.size(), MaxCloseEventSize)
		}
		if !utf8.Valid(e.rest) {
			t.Errorf("close event %+v: invalid UTF-8", ev)
		}
	}
}

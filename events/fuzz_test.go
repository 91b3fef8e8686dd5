package events

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/bridge"
)

// FuzzEventBatch: whatever a client sends (headers, query, messages, close
// reasons), the batch body is one JSON object the application decodes back
// to what was sent, every event within its size (the bounds count it).
func FuzzEventBatch(f *testing.F) {
	f.Add("a=1&b=%3C", "X-Test", "v\"al\\ue", []byte("hello"), true, 1000, "bye")
	f.Add("", "", "", []byte{0, 0xff, 0xfe}, false, 1006, "")
	f.Add("%zz&&=", "\u2028", "\x00\x01", []byte("<b>\u2028</b>é"), true, 4999, strings.Repeat("\x01", 123))
	f.Add("q", "Sec-WebSocket-Key", "\xff", []byte("\xff\xfe"), true, -5, strings.Repeat("\xff", 200))
	f.Fuzz(func(t *testing.T, query, hname, hvalue string, data []byte, text bool, code int, reason string) {
		op := bridge.OpBinary
		if text {
			op = bridge.OpText
		}
		evs := []event{
			encodeOpen(bridge.ConnInfo{FD: 7, Path: "/", RawQuery: query, Header: http.Header{hname: {hvalue}}}, 1),
			encodeMessage(7, 2, op, data),
			encodeClose(7, 3, bridge.CloseEvent{Code: code, Reason: reason, ByServer: true}),
		}
		for i := range evs {
			evs[i].seq = uint64(i + 1)
			if n := len(evs[i].appendTo(nil)); n > evs[i].size() {
				t.Fatalf("event %d: %d bytes, size %d", i, n, evs[i].size())
			}
		}
		if s := evs[2].size(); s > MaxCloseEventSize {
			t.Fatalf("close event of %d bytes, more than the %d reserved", s, MaxCloseEventSize)
		}
		body := batchBody(3, evs)
		if !utf8.Valid(body) {
			t.Fatalf("batch body is not UTF-8: %q", body)
		}
		var got struct {
			Node   int `json:"node"`
			Events []struct {
				Type     string      `json:"type"`
				FD       int64       `json:"fd"`
				Seq      uint64      `json:"seq"`
				Query    string      `json:"query"`
				Headers  http.Header `json:"headers"`
				Opcode   int         `json:"opcode"`
				Data     string      `json:"data"`
				Encoding string      `json:"encoding"`
				Code     int         `json:"code"`
				Reason   string      `json:"reason"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("batch body %q: %v", body, err)
		}
		if got.Node != 3 || len(got.Events) != 3 {
			t.Fatalf("batch body %q: node %d, %d events", body, got.Node, len(got.Events))
		}
		for i, e := range got.Events {
			if e.FD != 7 || e.Seq != uint64(i+1) || e.Type != []string{"open", "message", "close"}[i] {
				t.Fatalf("event %d: %+v", i, e)
			}
		}
		// Text passes as JSON strings do: invalid UTF-8 (which the bridge
		// never passes, 1007) becomes U+FFFD.
		if open := got.Events[0]; open.Query != asJSON(query) ||
			len(open.Headers[asJSON(hname)]) != 1 || open.Headers[asJSON(hname)][0] != asJSON(hvalue) {
			t.Errorf("open event query %q headers %q, want %q and %q: %q", open.Query, open.Headers, query, hvalue, body)
		}
		msg := got.Events[1]
		if text {
			if msg.Opcode != 1 || msg.Encoding != "" || msg.Data != asJSON(string(data)) {
				t.Errorf("text message %+v, want %q", msg, data)
			}
		} else {
			b, err := base64.StdEncoding.DecodeString(msg.Data)
			if msg.Opcode != 2 || msg.Encoding != "base64" || err != nil || string(b) != string(data) {
				t.Errorf("binary message %+v (%v), want %q", msg, err, data)
			}
		}
		if cl := got.Events[2]; len(cl.Reason) > 3*maxCloseReason || cl.Code < 0 || cl.Code > 0xffff {
			t.Errorf("close event %+v: reason or code beyond what a close frame carries", cl)
		}
	})
}

// FuzzRedactURL: whatever the configured URL and the error around it, the
// log text holds neither the query nor the password.
func FuzzRedactURL(f *testing.F) {
	f.Add("http://user:pa55@app.internal:8080/events?token=s3cret", "s3cret")
	f.Add("https://app/ws?", "")
	f.Add("http://app/e?a=1#frag?x", "frag")
	f.Add("http://u:%zz@h/?q", "q")
	f.Fuzz(func(t *testing.T, raw, secret string) {
		u, err := url.Parse(raw)
		if err != nil {
			if got := RedactURL(raw); got != "(unparsable URL)" {
				t.Fatalf("RedactURL(%q) = %q", raw, got)
			}
			return
		}
		got := RedactURL(raw)
		r, err := url.Parse(got)
		if err != nil {
			t.Fatalf("RedactURL(%q) = %q, which does not parse: %v", raw, got, err)
		}
		if pw, set := r.User.Password(); (set && pw != "xxxxx") || (r.RawQuery != "" && r.RawQuery != "…") || r.Fragment != "" {
			t.Errorf("RedactURL(%q) = %q: password %q, query %q, fragment %q", raw, got, pw, r.RawQuery, r.Fragment)
		}
		// The same text in an error's log line, the error wrapped.
		visible := r.Scheme + "://" + r.User.String() + "@" + r.Host + r.Path + r.Opaque + "?…"
		e := redactError(errors.Join(errors.New("outer"), &url.Error{Op: "Post", URL: raw, Err: errors.New("EOF")}))
		if want := "Post " + strconv.Quote(got) + ": EOF"; !strings.Contains(e, want) {
			t.Errorf("redactError of %q = %q, want it to hold %q", raw, e, want)
		}
		if len(u.RawQuery) >= 4 && strings.Contains(e, u.RawQuery) && !strings.Contains(visible+"Post outer EOF"+got, u.RawQuery) {
			t.Errorf("redactError of %q = %q holds the query", raw, e)
		}
	})
}

// asJSON is s as a JSON string decodes: each byte of invalid UTF-8 becomes
// U+FFFD.
func asJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/sender"
)

var decodeTests = []struct {
	name, body string
	ok         bool
	msg        string // part of the error message
}{
	{"object", `{"data":"x","opcode":2,"finish":false}`, true, ""},
	{"white space around", " \n\t{\"data\":\"x\"}\r\n ", true, ""},
	{"empty object", `{}`, true, ""},
	{"empty", ``, false, "empty"},
	{"white space only", " \n ", false, "empty"},
	{"null", `null`, false, "JSON object"},
	{"array", `[]`, false, "JSON object"},
	{"number", `1`, false, "JSON object"},
	{"unknown field", `{"data":"x","extra":true}`, false, `unknown field "extra"`},
	{"trailing object", `{"data":"x"}{}`, false, "after the JSON object, at byte 12"},
	{"trailing garbage", `{"data":"x"}]`, false, "after the JSON object"},
	{"trailing comma", `{"data":"x"},`, false, "after the JSON object"},
	{"truncated", `{"data":"x"`, false, "truncated"},
	{"syntax", `{"data" "x"}`, false, "malformed JSON at byte"},
	{"string for an integer", `{"opcode":"1"}`, false, `field "opcode": got a JSON string, want an integer`},
	{"float for an integer", `{"opcode":1.5}`, false, `field "opcode"`},
	{"number for a string", `{"data":5}`, false, `field "data": got a JSON number, want a string`},
	{"string for a boolean", `{"finish":"no"}`, false, `field "finish": got a JSON string, want a boolean`},
	{"invalid UTF-8", "{\"data\":\"\xc3\x28\"}", false, "UTF-8"},
}

func TestDecodeJSON(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			var b pushBody
			err := decodeJSON([]byte(tt.body), &b)
			if (err == nil) != tt.ok {
				t.Fatalf("decodeJSON(%q) = %v, want ok %v", tt.body, err, tt.ok)
			}
			if err == nil {
				return
			}
			var e *sender.Error
			if !errors.As(err, &e) || e.Code != sender.CodeBadRequest || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("decodeJSON(%q) = %v, want bad_request mentioning %q", tt.body, err, tt.msg)
			}
		})
	}
	var b pushBody
	if err := decodeJSON([]byte(`{"data":"x","opcode":2,"finish":false,"encoding":"base64"}`), &b); err != nil ||
		b.Data != "x" || *b.Opcode != 2 || *b.Finish || b.Encoding != "base64" {
		t.Errorf("decoded %+v, %v", b, err)
	}
}

func TestReadBodyLimit(t *testing.T) {
	for _, tt := range []struct {
		body       string
		allowEmpty bool
		code       string
	}{
		{`{"data":"` + strings.Repeat("x", 89) + `"}`, false, ""}, // 100 bytes: at the limit
		{`{"data":"` + strings.Repeat("x", 90) + `"}`, false, sender.CodeTooLarge},
		{``, true, ""},
		{` `, true, ""},
		{``, false, sender.CodeBadRequest},
	} {
		var b pushBody
		rec := httptest.NewRecorder()
		err := readBody(rec, httptest.NewRequest("POST", "/", strings.NewReader(tt.body)), 100, &b, tt.allowEmpty)
		code := ""
		var e *sender.Error
		if errors.As(err, &e) {
			code = e.Code
		}
		if code != tt.code || (err != nil) != (tt.code != "") {
			t.Errorf("readBody of %d bytes (allowEmpty %v) = %v, want code %q", len(tt.body), tt.allowEmpty, err, tt.code)
		}
	}
}

// FuzzDecodeJSON: whatever the body, decodeJSON returns a bad_request
// error or a value that is exactly what the body says: it re-encodes to
// JSON that decodes to the same value, and the body was one valid UTF-8
// JSON object.
func FuzzDecodeJSON(f *testing.F) {
	for _, tt := range decodeTests {
		f.Add([]byte(tt.body))
	}
	f.Add([]byte(`{"data":"AAE=","opcode":2,"encoding":"base64","finish":true}`))
	f.Add([]byte(`{"Data":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b pushBody
		err := decodeJSON(body, &b)
		if err != nil {
			var e *sender.Error
			if !errors.As(err, &e) || e.Code != sender.CodeBadRequest || e.Message == "" {
				t.Fatalf("decodeJSON(%q) = %#v, want a bad_request *sender.Error", body, err)
			}
			return
		}
		if !utf8.Valid(body) || !json.Valid(body) || bytes.TrimSpace(body)[0] != '{' {
			t.Fatalf("decodeJSON accepted %q", body)
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var b2 pushBody
		if err := decodeJSON(again, &b2); err != nil {
			t.Fatalf("the re-encoded %s does not decode: %v", again, err)
		}
		if again2, _ := json.Marshal(b2); !bytes.Equal(again, again2) {
			t.Fatalf("round trip changed %s into %s", again, again2)
		}
	})
}

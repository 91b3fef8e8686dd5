package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/sender"
)

// readBody reads r's body, at most max bytes, and decodes it strictly into
// dst (decodeJSON). An empty body leaves dst as it is when allowEmpty. Its
// errors are *sender.Error: too_large past max, bad_request otherwise.
func readBody(w http.ResponseWriter, r *http.Request, max int64, dst any, allowEmpty bool) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &sender.Error{Code: sender.CodeTooLarge, Message: fmt.Sprintf("the request body is over the limit of %d bytes", max)}
		}
		return sender.BadRequest("cannot read the request body: " + err.Error())
	}
	if allowEmpty && len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return decodeJSON(data, dst)
}

// decodeJSON decodes data into dst strictly: data must be valid UTF-8 and
// hold exactly one JSON object, whose fields dst knows, with the types dst
// gives them, and nothing after it but white space. (encoding/json would
// otherwise replace invalid UTF-8 silently, ignore unknown fields, and
// take a trailing second value for the next request's.) Its errors are
// bad_request *sender.Error values that say what is wrong and where.
func decodeJSON(data []byte, dst any) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return sender.BadRequest("the request body is empty: want a JSON object")
	case !utf8.Valid(data):
		return sender.BadRequest("the request body is not valid UTF-8 (send binary data base64-encoded, with \"encoding\": \"base64\")")
	case trimmed[0] != '{':
		return sender.BadRequest("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return sender.BadRequest(describeJSONError(err))
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return sender.BadRequest(fmt.Sprintf("unexpected data after the JSON object, at byte %d", dec.InputOffset()-int64(len(extra))))
	}
	return nil
}

// describeJSONError turns encoding/json's errors into messages for the
// caller.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		field := jsonField(typ.Field)
		if field == "" {
			field = "(the body)"
		}
		return fmt.Sprintf("field %q: got a JSON %s, want %s", field, typ.Value, jsonType(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "cannot decode the request body: " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonField is a field path of UnmarshalTypeError without the Go names of
// embedded structs ("Message.opcode" is "opcode" on the wire).
func jsonField(path string) string {
	parts := strings.Split(path, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && p[0] >= 'A' && p[0] <= 'Z' {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ".")
}

// jsonType names a Go kind as the JSON type a caller should send.
func jsonType(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	}
	return "a " + kind
}

package bridge

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// permessage-deflate negotiation (RFC 7692). gorilla v1.5.3 accepts any
// permessage-deflate offer whatever its parameters and always answers
// gorillaDeflateAnswer. The bridge picks the first offer it can honour
// itself, shows gorilla a bare "permessage-deflate" for it (or nothing),
// and corrects gorilla's answer when the accepted offer needs more in it.
//
// What the bridge can honour: its compressor (Go's compress/flate) always
// uses a 32 KiB window and is reset for every message; its decompressor
// reads any window up to 32 KiB and needs the client to reset its
// compressor for every message. So:
//   - server_no_context_takeover, client_no_context_takeover: accepted (the
//     answer always carries both, which RFC 7692 allows unasked);
//   - client_max_window_bits, with no value or 8..15: accepted (the bridge
//     inflates any window; the answer leaves it out, so the client keeps
//     the window it offered);
//   - server_max_window_bits=15: accepted, and echoed in the answer as the
//     RFC requires; 8..14 cannot be honoured (flate has no smaller window):
//     the offer is declined;
//   - anything else (an unknown parameter, a parameter twice, a value on a
//     *_no_context_takeover, a window outside 8..15, no value on
//     server_max_window_bits, a syntax error): the offer is invalid and
//     declined.
//
// A declined offer falls to the client's next one; with none left the
// connection is upgraded without compression.

const gorillaDeflateAnswer = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"

// deflateOffer is the result of negotiating a request's offers.
type deflateOffer struct {
	accepted   bool
	serverBits bool // the accepted offer had server_max_window_bits=15
}

// negotiateDeflate returns what the bridge accepts of the request's
// permessage-deflate offers: the first one it can honour, if any.
func negotiateDeflate(h http.Header) deflateOffer {
	for _, value := range h.Values("Sec-Websocket-Extensions") {
		for _, ext := range splitQuoted(value, ',') {
			params := splitQuoted(ext, ';')
			if len(params) == 0 || !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
				continue
			}
			if o, ok := deflateParams(params[1:]); ok {
				return o
			}
		}
	}
	return deflateOffer{}
}

// deflateParams checks the parameters of one permessage-deflate offer.
func deflateParams(params []string) (deflateOffer, bool) {
	o := deflateOffer{accepted: true}
	seen := map[string]bool{}
	for _, p := range params {
		name, value, hasValue := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !isToken(name) || seen[name] {
			return deflateOffer{}, false
		}
		seen[name] = true
		if hasValue {
			var ok bool
			if value, ok = paramValue(value); !ok {
				return deflateOffer{}, false
			}
		}
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return deflateOffer{}, false
			}
		case "client_max_window_bits":
			if hasValue && !windowBits(value) {
				return deflateOffer{}, false
			}
		case "server_max_window_bits":
			if !hasValue || !windowBits(value) || value != "15" {
				return deflateOffer{}, false // invalid, or a window flate cannot keep to
			}
			o.serverBits = true
		default:
			return deflateOffer{}, false
		}
	}
	return o, true
}

// windowBits reports whether v is a window size RFC 7692 allows: 8..15,
// digits only, no leading zero.
func windowBits(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 8 && n <= 15 && v == strconv.Itoa(n)
}

// paramValue unquotes a parameter value: a token or a quoted string (RFC
// 7692 section 7.1: the unquoted value must then be a token too).
func paramValue(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = strings.ReplaceAll(v[1:len(v)-1], `\`, "")
	}
	return v, isToken(v)
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// isToken reports whether s is an RFC 7230 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// upgrade runs gorilla's Upgrade with the extensions header filtered to
// what negotiateDeflate accepted; r.Header is left as the client sent it.
// deflate reports whether compression was negotiated.
func (h *Hub) upgrade(w http.ResponseWriter, r *http.Request) (ws *websocket.Conn, deflate bool, err error) {
	hj := hijacker{ResponseWriter: w, slack: slackFor(h.cfg.WriteTimeout), readBuf: h.cfg.ReadBufferSize}
	if !h.cfg.Compression {
		ws, err = h.upgrader.Upgrade(hj, r, nil)
		return ws, false, err
	}
	orig, had := r.Header["Sec-Websocket-Extensions"]
	offer := negotiateDeflate(r.Header)
	if offer.accepted {
		r.Header["Sec-Websocket-Extensions"] = []string{"permessage-deflate"}
	} else {
		delete(r.Header, "Sec-Websocket-Extensions")
	}
	if offer.serverBits {
		hj.answer = []byte("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15\r\n")
	}
	ws, err = h.upgrader.Upgrade(hj, r, nil)
	if had {
		r.Header["Sec-Websocket-Extensions"] = orig
	} else {
		delete(r.Header, "Sec-Websocket-Extensions")
	}
	if err == nil && hj.answer != nil {
		// The answer is written: the socket goes on without the rewriter.
		if bc, ok := ws.NetConn().(*bufConn); ok {
			if rw, ok := bc.Conn.(*answerRewriter); ok {
				bc.Conn = rw.Conn
			}
		}
	}
	return ws, offer.accepted, err
}

// answerRewriter replaces gorilla's extensions line in the handshake's
// answer, which gorilla writes in one piece, with the negotiated one.
type answerRewriter struct {
	net.Conn
	answer []byte
}

func (a *answerRewriter) Write(p []byte) (int, error) {
	if a.answer == nil {
		return a.Conn.Write(p)
	}
	q := bytes.Replace(p, []byte(gorillaDeflateAnswer), a.answer, 1)
	a.answer = nil
	if _, err := a.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

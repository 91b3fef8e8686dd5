package bridge_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
)

const deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateTests are permessage-deflate offers and the bridge's answer (""
// for none: the connection is upgraded without compression), per RFC 7692.
var deflateTests = []struct {
	name, offer, answer string
}{
	{"bare offer", "permessage-deflate", deflateAnswer},
	{"client_max_window_bits without a value", "permessage-deflate; client_max_window_bits", deflateAnswer},
	{"client_max_window_bits=10", "permessage-deflate; client_max_window_bits=10", deflateAnswer},
	{"client_max_window_bits quoted", `permessage-deflate; client_max_window_bits="12"`, deflateAnswer},
	{"server_max_window_bits=15 is echoed", "permessage-deflate; server_max_window_bits=15", deflateAnswer + "; server_max_window_bits=15"},
	{"server_no_context_takeover", "permessage-deflate; server_no_context_takeover", deflateAnswer},
	{"client_no_context_takeover", "permessage-deflate; client_no_context_takeover", deflateAnswer},
	{"every parameter", "permessage-deflate; client_max_window_bits; server_max_window_bits=15; client_no_context_takeover; server_no_context_takeover", deflateAnswer + "; server_max_window_bits=15"},
	{"name in capitals, spaces", "Permessage-Deflate ;  Client_Max_Window_Bits = 9", deflateAnswer},
	{"server_max_window_bits=9 cannot be honoured", "permessage-deflate; server_max_window_bits=9", ""},
	{"server_max_window_bits=8 cannot be honoured", "permessage-deflate; server_max_window_bits=8", ""},
	{"declined offer falls to the next", "permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits", deflateAnswer},
	{"next offer in another header", "permessage-deflate; server_max_window_bits=10\r\nSec-WebSocket-Extensions: permessage-deflate", deflateAnswer},
	{"unknown extension first", "x-webkit-deflate-frame, permessage-deflate", deflateAnswer},
	{"server_max_window_bits=99", "permessage-deflate; server_max_window_bits=99", ""},
	{"server_max_window_bits without a value", "permessage-deflate; server_max_window_bits", ""},
	{"server_max_window_bits=015", "permessage-deflate; server_max_window_bits=015", ""},
	{"client_max_window_bits=7", "permessage-deflate; client_max_window_bits=7", ""},
	{"client_max_window_bits=16", "permessage-deflate; client_max_window_bits=16", ""},
	{"client_max_window_bits=abc", "permessage-deflate; client_max_window_bits=abc", ""},
	{"unknown parameter", "permessage-deflate; foo", ""},
	{"unknown parameter with a value", "permessage-deflate; foo=1", ""},
	{"duplicate parameter", "permessage-deflate; client_no_context_takeover; client_no_context_takeover", ""},
	{"duplicate window", "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11", ""},
	{"value on server_no_context_takeover", "permessage-deflate; server_no_context_takeover=1", ""},
	{"value on client_no_context_takeover", "permessage-deflate; client_no_context_takeover=true", ""},
	{"empty parameter", "permessage-deflate;;", ""},
	{"unterminated quote", `permessage-deflate; client_max_window_bits="10`, ""},
	{"only another extension", "x-webkit-deflate-frame", ""},
}

// TestDeflateNegotiation runs each offer through a real handshake and
// checks the answer, then that a push arrives compressed when the offer
// was accepted (and plain when not), and that the connection's info keeps
// the offer as the client sent it.
func TestDeflateNegotiation(t *testing.T) {
	th := startHub(t, bridge.Config{Compression: true})
	off := startHub(t, bridge.Config{})
	addr := th.srv.Listener.Addr().String()
	msg := strings.Repeat("compress me ", 100)
	for i, tt := range deflateTests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprint("d", i)
			rc := dialRaw(t, addr)
			fmt.Fprintf(rc, "GET /?id=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: %s\r\n\r\n", id, tt.offer)
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %v, %v", resp, err)
			}
			if got := strings.Join(resp.Header.Values("Sec-Websocket-Extensions"), ", "); got != tt.answer {
				t.Fatalf("offer %q: answer %q, want %q", tt.offer, got, tt.answer)
			}
			fd := th.rec.fdOf(t, id)
			th.rec.mu.Lock()
			kept := th.rec.opens[id].Header.Values("Sec-Websocket-Extensions")
			th.rec.mu.Unlock()
			if want := strings.Split(tt.offer, "\r\nSec-WebSocket-Extensions: "); strings.Join(kept, "|") != strings.Join(want, "|") {
				t.Errorf("kept offer %q, want %q as sent", kept, want)
			}
			if err := th.Push(fd, []byte(msg), bridge.OpText, true); err != nil {
				t.Fatal(err)
			}
			compressed, payload := readDataFrame(t, rc)
			if compressed != (tt.answer != "") {
				t.Fatalf("frame compressed: %v, want %v", compressed, tt.answer != "")
			}
			if compressed {
				payload = inflate(t, payload)
			}
			if string(payload) != msg {
				t.Fatalf("payload %q, want the push", trunc(payload))
			}
		})
	}
	// With compression off no offer is accepted.
	rc := dialRaw(t, off.srv.Listener.Addr().String())
	fmt.Fprintf(rc, "GET /?id=off HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Extensions") != "" {
		t.Fatalf("compression off: %v, %v; want 101 without extensions", resp, err)
	}
}

// readDataFrame reads one unfragmented server frame and reports whether
// its RSV1 bit (compressed) is set.
func readDataFrame(t *testing.T, rc *rawConn) (bool, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[0]&0x80 == 0 || h[0]&0x0f != 1 {
		t.Fatalf("frame header %08b: want one final text frame", h[0])
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(rc.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(rc.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		t.Fatal(err)
	}
	return h[0]&0x40 != 0, p
}

// inflate decompresses a permessage-deflate payload with a reader that
// has a 32 KiB window, as the RFC's tail is restored.
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

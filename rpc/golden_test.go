package rpc_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	netrpc "net/rpc"
	"os"
	"path/filepath"
	"testing"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"

	"github.com/wsbridge/wsbridge/rpc"
)

// goldenDir holds frames made by the goridge Go library, checked in as data
// for the PHP client's tests (php-client/tests/FrameTest.php), which must
// encode the same bytes and decode the same values.
const goldenDir = "../php-client/tests/fixtures/frames"

// goldenCase is one frame, as described in manifest.json.
type goldenCase struct {
	File   string `json:"file"`
	Kind   string `json:"kind"` // request or response
	Seq    uint32 `json:"seq"`
	Method string `json:"method"`
	Body   string `json:"body,omitempty"` // the JSON body, or the error text
	Error  bool   `json:"error"`
	// For a body too large to list: its length and SHA-256 (hex).
	BodyLen    int    `json:"body_len,omitempty"`
	BodySHA256 string `json:"body_sha256,omitempty"`
	body       string // the body, for large ones too
}

// pipeRWC feeds a goridge server codec one request and keeps its writes.
type pipeRWC struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (p *pipeRWC) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *pipeRWC) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *pipeRWC) Close() error                { return nil }

// serverResponse has goridge's own server codec answer a JSON request.
func serverResponse(t *testing.T, seq uint32, method string, body any, errText string) []byte {
	t.Helper()
	p := &pipeRWC{in: bytes.NewReader(rpc.RequestFrame(frame.CodecJSON, seq, method, []byte("{}")).Bytes())}
	c := goridge.NewCodec(p)
	var req netrpc.Request
	if err := c.ReadRequestHeader(&req); err != nil {
		t.Fatal(err)
	}
	var discard map[string]any
	if err := c.ReadRequestBody(&discard); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_ = c.WriteResponse(&netrpc.Response{Seq: uint64(seq), ServiceMethod: method, Error: errText}, body)
	return p.out.Bytes()
}

func goldenFrames(t *testing.T) ([]goldenCase, map[string][]byte) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	bigData := base64.StdEncoding.EncodeToString(bytes.Repeat(all, 300)) // 76800 bytes of data: a payload past 64 KiB
	bigBody := `{"fd":9007199254740991,"data":"` + bigData + `","opcode":2,"encoding":"base64"}`
	sum := sha256.Sum256([]byte(bigBody))
	cases := []goldenCase{
		{File: "request_push.bin", Kind: "request", Seq: 1, Method: "Sender.Push", Body: `{"fd":1,"data":"hello"}`},
		{File: "request_large.bin", Kind: "request", Seq: 4294967295, Method: "Sender.Push", body: bigBody, BodyLen: len(bigBody), BodySHA256: hex.EncodeToString(sum[:])},
		{File: "request_unicode.bin", Kind: "request", Seq: 77, Method: "Sender.PushGroup", Body: `{"group":"caf\u00e9","data":"\u4f60\u597d \ud83d\ude00"}`},
		{File: "response_true.bin", Kind: "response", Seq: 1, Method: "Sender.Push", Body: `true`},
		{File: "response_list.bin", Kind: "response", Seq: 3, Method: "Sender.GroupMembers", Body: `[1,2,9007199254740991]`},
		{File: "response_error.bin", Kind: "response", Seq: 2, Method: "Sender.Push", Body: "invalid_fd: push to fd 0: bridge: invalid fd", Error: true},
	}
	frames := map[string][]byte{}
	for i := range cases {
		c := &cases[i]
		if c.body == "" {
			c.body = c.Body
		}
		switch {
		case c.Kind == "request":
			frames[c.File] = rpc.RequestFrame(frame.CodecJSON, c.Seq, c.Method, []byte(c.body)).Bytes()
		case c.Error:
			frames[c.File] = serverResponse(t, c.Seq, c.Method, nil, c.Body)
		default:
			var v any
			if err := json.Unmarshal([]byte(c.Body), &v); err != nil {
				t.Fatal(err)
			}
			frames[c.File] = serverResponse(t, c.Seq, c.Method, v, "")
		}
	}
	return cases, frames
}

// TestGoldenFrames keeps the checked-in frames equal to what goridge makes
// today. WSBRIDGE_UPDATE_GOLDEN=1 rewrites them.
func TestGoldenFrames(t *testing.T) {
	cases, frames := goldenFrames(t)
	manifest, err := json.MarshalIndent(cases, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	manifest = append(manifest, '\n')
	frames["manifest.json"] = manifest
	update := os.Getenv("WSBRIDGE_UPDATE_GOLDEN") == "1"
	if update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range frames {
		path := filepath.Join(goldenDir, name)
		if update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what goridge makes (%v); run WSBRIDGE_UPDATE_GOLDEN=1 go test ./rpc -run TestGoldenFrames", path, err)
		}
	}
}

package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	netrpc "net/rpc"
	"path/filepath"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// TestCodecMatchesGoridge sends the same requests to the wsbridge server
// and to net/rpc with goridge's own server codec, both serving the same
// Sender service on the same hub, and wants the same reply frames, byte for
// byte, for every codec and kind of reply.
func TestCodecMatchesGoridge(t *testing.T) {
	hub, err := bridge.New(bridge.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown(context.Background())
	addr := "unix://" + filepath.Join(t.TempDir(), "rpc.sock")
	srv, err := New(sender.NewService(hub), Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	ours, err := net.Dial("unix", srv.address)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	ourReader := bufio.NewReader(ours)

	bare := netrpc.NewServer()
	if err := bare.RegisterName(ServiceName, &receiver{svc: sender.NewService(hub), stats: srv.connCount}); err != nil {
		t.Fatal(err)
	}
	theirs, serverEnd := net.Pipe()
	go bare.ServeCodec(goridge.NewCodec(serverEnd))
	defer theirs.Close()
	theirReader := bufio.NewReader(theirs)

	calls := []struct {
		method string
		args   any
	}{
		{"Sender.Check", sender.FDArgs{FD: 1}},                                                                                                                            // *bool
		{"Sender.Push", sender.PushArgs{FD: 7, Message: sender.Message{Data: "x"}}},                                                                                       // *bool
		{"Sender.PushMany", sender.PushManyArgs{FDs: []int64{1, 2}, Message: sender.Message{Data: "x"}}},                                                                  // *int
		{"Sender.PushBatch", sender.PushBatchArgs{Messages: []sender.PushArgs{{FD: 1, Message: sender.Message{Data: "a"}}, {FD: 2, Message: sender.Message{Data: "b"}}}}}, // *[]bool
		{"Sender.PushBatch", sender.PushBatchArgs{}},                                                                                                                      // an empty list
		{"Sender.GroupMembers", sender.GroupNameArgs{Group: "room"}},                                                                                                      // *[]int64
		{"Sender.Groups", sender.Empty{}},                                                                                                                                 // a map
		{"Sender.Info", sender.FDArgs{FD: 1}},                                                                                                                             // an error
		{"Sender.Push", sender.PushArgs{FD: -1, Message: sender.Message{Data: "x"}}},                                                                                      // a coded error
		{"Sender.Nope", sender.FDArgs{FD: 1}},                                                                                                                             // net/rpc's own error
	}
	encoders := map[byte]func(any) ([]byte, error){
		frame.CodecJSON:    json.Marshal,
		frame.CodecMsgpack: msgpack.Marshal,
		frame.CodecGob: func(v any) ([]byte, error) {
			var b bytes.Buffer
			err := gob.NewEncoder(&b).Encode(v)
			return b.Bytes(), err
		},
	}
	seq := uint32(0)
	for codec, encode := range encoders {
		for _, c := range calls {
			seq++
			body, err := encode(c.args)
			if err != nil {
				t.Fatal(err)
			}
			req := RequestFrame(codec, seq, c.method, body).Bytes()
			got := roundTrip(t, ours, ourReader, req)
			want := roundTrip(t, theirs, theirReader, req)
			if !bytes.Equal(got, want) {
				t.Errorf("codec 0x%02x, %s: wsbridge replied\n%q\ngoridge replies\n%q", codec, c.method, got, want)
			}
		}
	}
}

// roundTrip writes one request frame and reads one reply frame.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, req []byte) []byte {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	reply, err := readFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// readFrame reads one RPC frame, header included.
func readFrame(r *bufio.Reader) ([]byte, error) {
	h := make([]byte, rpcHeader)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	b := make([]byte, rpcHeader+int(binary.LittleEndian.Uint32(h[2:6])))
	copy(b, h)
	_, err := io.ReadFull(r, b[rpcHeader:])
	return b, err
}

// TestReusedSequenceKeepsCodec: two calls in flight with one sequence
// number (both read before either is answered) both get replies in the
// codec they came in.
func TestReusedSequenceKeepsCodec(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	c := &serverCodec{g: newGuard(server, 1<<20, testLimits(), func(string, error) {}), calls: map[uint64]pendingCall{}}
	defer c.Close()
	req := RequestFrame(frame.CodecMsgpack, 5, "Sender.Check", []byte("\x81\xa2fd\x01")).Bytes()
	go func() { _, _ = client.Write(append(append([]byte{}, req...), req...)) }()
	for i := range 2 {
		var r netrpc.Request
		var args sender.FDArgs
		if err := c.ReadRequestHeader(&r); err != nil || r.Seq != 5 {
			t.Fatalf("request %d: seq %d, %v", i, r.Seq, err)
		}
		if err := c.ReadRequestBody(&args); err != nil || args.FD != 1 {
			t.Fatalf("request %d: %+v, %v", i, args, err)
		}
	}
	replies := make(chan []byte, 2)
	go func() {
		r := bufio.NewReader(client)
		for range 2 {
			b, err := readFrame(r)
			if err != nil {
				close(replies)
				return
			}
			replies <- b
		}
	}()
	for range 2 {
		ok := false
		if err := c.WriteResponse(&netrpc.Response{Seq: 5, ServiceMethod: "Sender.Check"}, &ok); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		b, ok := <-replies
		if !ok {
			t.Fatalf("reply %d missing", i)
		}
		if flags := b[1]; flags != frame.CodecMsgpack {
			t.Errorf("reply %d: flags 0x%02x, want msgpack (0x%02x)", i, flags, frame.CodecMsgpack)
		}
	}
	if len(c.calls) != 0 {
		t.Errorf("%d calls left pending", len(c.calls))
	}
}

// testLimits are the defaults' limits for a guard made by a test.
func testLimits() limits {
	return limits{maxInFlight: DefaultMaxInFlight, writeTimeout: DefaultWriteTimeout, c: &counters{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

package rpc_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
)

// FuzzServer writes arbitrary bytes to a live RPC server: whatever they are,
// the server answers or closes that connection, and keeps serving others.
func FuzzServer(f *testing.F) {
	f.Add(request(frame.CodecJSON, 1, "Sender.Push", `{"fd":1,"data":"x"}`))
	f.Add(request(frame.CodecMsgpack, 2, "Sender.Check", "\x81\xa2fd\x01"))
	f.Add(request(frame.CodecGob, 3, "Sender.Check", "garbage"))
	f.Add(request(frame.CodecProto, 4, "Sender.Check", "x"))
	f.Add(append(request(frame.CodecJSON, 5, "Sender.Broadcast", `{"data":"y"}`), request(frame.CodecJSON, 6, "Sender.Nope", `{}`)...))
	f.Add([]byte("\x15\x08\xff\xff\xff\xff"))
	e := startEnv(f, "tcp", bridge.Config{}, rpc.Config{MaxFrameSize: 64 << 10})
	network, address, _ := rpc.ParseAddr(e.srv.Addr())
	check := e.client(f, rpc.JSON)
	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial(network, address)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(in)
		// Half-close: the server sees the end of the stream after the input.
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("the server neither answered nor closed: %v", err)
		}
		var ok bool
		if err := check.Call("Sender.Check", map[string]any{"fd": 1}, &ok); err != nil {
			t.Fatalf("the server stopped serving others: %v", err)
		}
	})
}

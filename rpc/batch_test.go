package rpc_test

import (
	"fmt"
	"net"
	netrpc "net/rpc"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	goridge "github.com/roadrunner-server/goridge/v3/pkg/rpc"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// Sender.PushBatch and Sender.PushMany through goridge's own Go client, to
// more connections than a flusher takes in one chunk, over three workers:
// per-message answers (an unknown fd false, the state error of a text that
// is not UTF-8 stopping the batch at its index), and each connection gets
// its messages in the batch's order.
func TestBatchesOverGoridge(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := startEnv(t, network, bridge.Config{Workers: 3, Flushers: 2}, rpc.Config{})
			const n = 150
			ws, fds := make([]*websocket.Conn, n), make([]int64, n)
			for i := range n {
				ws[i], fds[i] = e.dial(t, name("c", i))
			}
			nw, address, _ := rpc.ParseAddr(e.srv.Addr())
			conn, err := net.Dial(nw, address)
			if err != nil {
				t.Fatal(err)
			}
			client := netrpc.NewClientWithCodec(goridge.NewClientCodec(conn))
			defer client.Close()

			unknown := fds[n-1] + 1000
			var msgs []sender.PushArgs
			for round := range 2 {
				for i := range n {
					msgs = append(msgs, sender.PushArgs{FD: fds[i], Message: sender.Message{Data: fmt.Sprintf("%d/%d", i, round)}})
				}
				msgs = append(msgs, sender.PushArgs{FD: unknown, Message: sender.Message{Data: "nobody"}})
			}
			var res []bool
			if err := client.Call("Sender.PushBatch", sender.PushBatchArgs{Messages: msgs}, &res); err != nil || len(res) != len(msgs) {
				t.Fatalf("PushBatch = %d results, %v", len(res), err)
			}
			for i, ok := range res {
				if ok != (msgs[i].FD != unknown) {
					t.Fatalf("result %d (fd %d) = %v", i, msgs[i].FD, ok)
				}
			}
			for i, c := range ws {
				readText(t, c, fmt.Sprintf("%d/0", i))
				readText(t, c, fmt.Sprintf("%d/1", i))
			}

			var count int
			if err := client.Call("Sender.PushMany", sender.PushManyArgs{FDs: append([]int64{unknown}, fds...), Message: sender.Message{Data: "many"}}, &count); err != nil || count != n {
				t.Fatalf("PushMany = %d, %v; want %d", count, err, n)
			}
			for _, c := range ws {
				readText(t, c, "many")
			}

			bad := []sender.PushArgs{
				{FD: fds[0], Message: sender.Message{Data: "first"}},
				{FD: fds[1], Message: sender.Message{Data: "second"}},
				{FD: fds[2], Message: sender.Message{Data: "\xff"}},
				{FD: fds[3], Message: sender.Message{Data: "never"}},
			}
			res = nil
			err = client.Call("Sender.PushBatch", sender.PushBatchArgs{Messages: bad}, &res)
			if err == nil || !strings.HasPrefix(err.Error(), "invalid_utf8: message 2: ") {
				t.Fatalf("PushBatch with bad text at 2: %v, want invalid_utf8 at message 2", err)
			}
			var ok bool
			for _, fd := range fds[:4] {
				if err := client.Call("Sender.Push", sender.PushArgs{FD: fd, Message: sender.Message{Data: "marker"}}, &ok); err != nil || !ok {
					t.Fatalf("Push = %v, %v", ok, err)
				}
			}
			readText(t, ws[0], "first")
			readText(t, ws[1], "second")
			for _, c := range ws[:4] {
				readText(t, c, "marker") // nothing from message 2 on
			}
		})
	}
}

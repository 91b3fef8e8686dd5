package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/internal/redistest"
	"github.com/wsbridge/wsbridge/sender"
)

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	in := &frame{From: 3,
		Calls:   []call{{ID: 7, Method: "Push", Args: mustMsgpack(t, &sender.PushArgs{FD: 42, Message: sender.Message{Data: "hi"}})}},
		Answers: []answer{{ID: 9, Result: mustMsgpack(t, true)}, {ID: 10, Code: sender.CodeInvalidFD, Message: "no"}},
	}
	b, err := encodeFrame(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.From != 3 || len(out.Calls) != 1 || out.Calls[0].Method != "Push" || len(out.Answers) != 2 || out.Answers[1].Code != sender.CodeInvalidFD {
		t.Fatalf("round trip: %+v", out)
	}
	var args sender.PushArgs
	if err := msgpack.Unmarshal(out.Calls[0].Args, &args); err != nil || args.FD != 42 || args.Data != "hi" {
		t.Fatalf("args %+v, %v", args, err)
	}
}

// refusedFrames are inputs a node drops, each for its own reason.
func refusedFrames(t testing.TB) map[string][]byte {
	enc := func(v any) []byte { return mustMsgpack(t, v) }
	return map[string][]byte{
		"empty":             {},
		"not msgpack":       []byte("hello"),
		"truncated":         enc(map[string]any{"v": 1, "f": 1})[:5],
		"huge array":        {0xdd, 0xff, 0xff, 0xff, 0xff}, // announces 2^32-1 elements
		"deep nesting":      append(bytes.Repeat([]byte{0x91}, 100), 0x01),
		"wrong version":     enc(map[string]any{"v": 2, "f": 1, "c": []any{map[string]any{"i": 1, "m": "Check", "a": enc(map[string]any{"fd": 1})}}}),
		"node out of range": enc(map[string]any{"v": 1, "f": 5000, "a": []any{map[string]any{"i": 1}}}),
		"negative node":     enc(map[string]any{"v": 1, "f": -1, "a": []any{map[string]any{"i": 1}}}),
		"no items":          enc(map[string]any{"v": 1, "f": 1}),
		"call without name": enc(map[string]any{"v": 1, "f": 1, "c": []any{map[string]any{"i": 1}}}),
		"wrong types":       enc(map[string]any{"v": "one", "f": 1}),
		"over the size":     make([]byte, MaxFrameBytes+1),
	}
}

func TestFrameRefused(t *testing.T) {
	for name, b := range refusedFrames(t) {
		if _, err := decodeFrame(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want errMalformed", name, err)
		}
	}
}

// FuzzDecodeFrame: any input is decoded or refused with errMalformed,
// never a panic; a decoded frame is within its bounds and encodes again.
func FuzzDecodeFrame(f *testing.F) {
	for name, b := range refusedFrames(f) {
		if name != "over the size" {
			f.Add(b)
		}
	}
	good, _ := encodeFrame(&frame{From: 1, Calls: []call{{ID: 1, Method: "Check", Args: mustMsgpack(f, &sender.FDArgs{FD: 5})}}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		if n := len(fr.Calls) + len(fr.Answers); n == 0 || n > maxFrameItems || fr.From < 0 || fr.From > maxNodeID {
			t.Fatalf("decoded out of bounds: %+v", fr)
		}
		if _, err := encodeFrame(fr); err != nil {
			t.Fatalf("a decoded frame does not encode: %v", err)
		}
	})
}

// TestRogueMessages: whatever another Redis client publishes on a node's
// channels (garbage, calls of unknown methods, arguments of the wrong
// shape, answers nobody waits for) is dropped or refused and counted; the
// node keeps serving.
func TestRogueMessages(t *testing.T) {
	r := redistest.Start(t)
	url, prefix := r.URL(), redistest.Prefix(t)
	a, b := startNode(t, url, prefix, 1), startNode(t, url, prefix, 2)
	ws, fd := b.dial(t)
	rogue := client(t, url)
	k := b.member.keys
	publish := func(channel string, payload []byte) {
		t.Helper()
		if err := rogue.Do(ctxT(t), rogue.B().Spublish().Channel(channel).Message(string(payload)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	before := b.member.router.Stats()
	for name, p := range refusedFrames(t) {
		if name == "over the size" {
			continue // Redis would take it; the size check is in TestFrameRefused
		}
		publish(k.NodeChannel(2), p)
		publish(k.BroadcastChannel(), p)
	}
	bad, _ := encodeFrame(&frame{From: 9, Calls: []call{
		{ID: 1, Method: "Nope", Args: mustMsgpack(t, map[string]any{})},
		{ID: 2, Method: "Push", Args: []byte{0x91, 0x01}},                                            // an array, not the arguments' map
		{ID: 3, Method: "Push", Args: mustMsgpack(t, map[string]any{"fd": "x", "data": 1})},          // wrong types
		{ID: 0, Method: "Disconnect", Args: mustMsgpack(t, &sender.DisconnectArgs{FD: fd, Code: 1})}, // a code that may not be sent
	}, Answers: []answer{{ID: 12345, Result: []byte{0xc0}}}})
	publish(k.NodeChannel(2), bad)
	n := len(refusedFrames(t)) - 1
	waitFor(t, "the rogue messages counted", func() bool {
		st := b.member.router.Stats()
		return st.Dropped-before.Dropped == uint64(2*n) && st.LateAnswers-before.LateAnswers == 1 && st.Served-before.Served == 4
	})
	// The node still serves, the client is still connected.
	if ok, err := a.svc.Push(&sender.PushArgs{FD: fd, Message: msg("still here")}); !ok || err != nil {
		t.Fatalf("Push after the rogue messages = %v, %v", ok, err)
	}
	read(t, ws, "still here")
}

// TestForgedSelfCopy: a frame on a node's channel that claims to come
// from the node itself and to be its own copy of a call to every node
// (what a fanout skips) but names a call waiting for one node's answer
// does not complete that call without an answer: it still waits for the
// real one (here: nobody answers, node_unreachable), and nothing panics.
func TestForgedSelfCopy(t *testing.T) {
	r := redistest.Start(t)
	url, prefix := r.URL(), redistest.Prefix(t)
	a := startNode(t, url, prefix, 1)
	// Node 2's channel has a subscriber that never answers.
	silent := client(t, url)
	k := a.member.keys
	go func() {
		_ = silent.Receive(context.Background(), silent.B().Ssubscribe().Channel(k.NodeChannel(2)).Build(), func(rueidis.PubSubMessage) {})
	}()
	waitFor(t, "the silent subscriber", func() bool {
		n, err := silent.Do(ctxT(t), silent.B().Arbitrary("PUBSUB", "SHARDNUMSUB").Args(k.NodeChannel(2)).Build()).ToArray()
		c, _ := n[1].AsInt64()
		return err == nil && c == 1
	})
	done := make(chan error, 1)
	next := a.member.router.nextID.Load() + 1
	go func() {
		_, err := a.svc.Check(int64(2)<<43 | 5)
		done <- err
	}()
	waitFor(t, "the call waiting", func() bool { _, ok := a.member.router.pending.Load(next); return ok })
	forged, _ := encodeFrame(&frame{From: 1, Calls: []call{{ID: next, Method: "Check", Args: mustMsgpack(t, &sender.FDArgs{FD: 1})}}})
	if err := silent.Do(ctxT(t), silent.B().Spublish().Channel(k.NodeChannel(1)).Message(string(forged)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !isCode(err, sender.CodeNodeUnreachable) {
		t.Fatalf("the call: %v, want node_unreachable", err)
	}
}

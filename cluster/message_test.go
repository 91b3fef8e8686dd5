package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/internal/msgpackcheck"
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
// never a panic, exactly as the reflection decoder decodes or refuses it;
// a decoded frame is within its bounds and encodes again to what
// msgpack.Marshal writes (see checkCodecs).
func FuzzDecodeFrame(f *testing.F) {
	for name, b := range refusedFrames(f) {
		if name != "over the size" {
			f.Add(b)
		}
	}
	for _, b := range acceptedFrames(f) {
		f.Add(b)
	}
	good, _ := encodeFrame(&frame{From: 1, Calls: []call{{ID: 1, Method: "Check", Args: mustMsgpack(f, &sender.FDArgs{FD: 5})}}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) { checkCodecs(t, b) })
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

// The reflection codec that encodeFrame and decodeFrame replaced, kept as
// the reference they must agree with (nodes of both talk to each other
// during a rolling upgrade).
func encodeFrameReflect(f *frame) ([]byte, error) {
	f.Version = frameVersion
	return msgpack.Marshal(f)
}

func decodeFrameReflect(b []byte) (*frame, error) {
	if err := checkFrameBytes(b); err != nil {
		return nil, err
	}
	f := new(frame)
	if err := msgpack.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return checkFrame(f)
}

// normalized is f as it comes back from an encoding: an empty slice or
// result is left out of the encoding and decodes as nil, and a raw value
// that is msgpack's nil decodes as a nil RawMessage (both codecs, the
// reflection one's nil-aware decoder and decodeFrame alike).
func normalized(f *frame) *frame {
	g := *f
	if len(g.Calls) == 0 {
		g.Calls = nil
	}
	if len(g.Answers) == 0 {
		g.Answers = nil
	}
	rawNil := func(m msgpack.RawMessage) msgpack.RawMessage {
		if len(m) == 0 || len(m) == 1 && m[0] == 0xc0 {
			return nil
		}
		return m
	}
	g.Calls = slices.Clone(g.Calls)
	for i := range g.Calls {
		g.Calls[i].Args = rawNil(g.Calls[i].Args)
	}
	g.Answers = slices.Clone(g.Answers)
	for i := range g.Answers {
		g.Answers[i].Result = rawNil(g.Answers[i].Result)
	}
	return &g
}

// sameFrame fails t unless the frames are equal.
func sameFrame(t *testing.T, what string, got, want *frame) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// checkCodecs holds the codecs against the reflection ones on b: both
// decoders accept it or both refuse it (with errMalformed), to the same
// frame; the frame encodes to the same bytes with both encoders, and
// those decode back to it with both decoders.
func checkCodecs(t *testing.T, b []byte) {
	t.Helper()
	got, err := decodeFrame(b)
	want, errRef := decodeFrameReflect(b)
	if (err == nil) != (errRef == nil) {
		t.Fatalf("decodeFrame(%q): %v; the reflection decoder: %v", b, err, errRef)
	}
	if err != nil {
		if !errors.Is(err, errMalformed) {
			t.Fatalf("error %v does not wrap errMalformed", err)
		}
		return
	}
	if n := len(got.Calls) + len(got.Answers); n == 0 || n > maxFrameItems || got.From < 0 || got.From > maxNodeID {
		t.Fatalf("decoded out of bounds: %+v", got)
	}
	sameFrame(t, fmt.Sprintf("decodeFrame(%q)", b), got, want)
	checkEncode(t, got)
}

// checkEncode: encodeFrame writes what msgpack.Marshal writes for f, and
// both decoders read it back to f.
func checkEncode(t *testing.T, f *frame) {
	t.Helper()
	enc, err := encodeFrame(f)
	if err != nil {
		t.Fatalf("encodeFrame: %v", err)
	}
	ref, err := encodeFrameReflect(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, ref) {
		t.Fatalf("encodeFrame(%#v)\n = %x\nmsgpack.Marshal: %x", f, enc, ref)
	}
	if len(enc) != cap(enc) {
		t.Fatalf("encodeFrame: %d bytes in a slice of %d: frameSize is wrong", len(enc), cap(enc))
	}
	var back frame
	if err := msgpack.Unmarshal(enc, &back); err != nil {
		t.Fatalf("msgpack.Unmarshal(encodeFrame): %v", err)
	}
	sameFrame(t, "msgpack.Unmarshal(encodeFrame(f))", &back, normalized(f))
	if _, err := checkFrame(f); err == nil {
		again, err := decodeFrame(ref)
		if err != nil {
			t.Fatalf("decodeFrame(msgpack.Marshal(f)): %v", err)
		}
		sameFrame(t, "decodeFrame(msgpack.Marshal(f))", again, normalized(f))
	}
}

// FuzzEncodeFrame: for any frame, encodeFrame writes the bytes
// msgpack.Marshal writes, and both decoders read them back (see
// checkEncode).
func FuzzEncodeFrame(f *testing.F) {
	f.Add(1, uint64(7), "Push", mustMsgpack(f, &sender.PushArgs{FD: 42, Message: sender.Message{Data: "hi"}}), uint64(9), []byte{0xc3}, "", "", 1, 1)
	f.Add(-70000, uint64(1)<<63, strings.Repeat("m", 300), []byte{0x91}, uint64(0), []byte(nil), sender.CodeInvalidFD, strings.Repeat("e", 70000), 0, 20)
	f.Add(1<<40, uint64(200), "", []byte(nil), uint64(65536), []byte{}, "c", "e", 17, 0)
	f.Fuzz(func(t *testing.T, from int, id uint64, method string, args []byte, aid uint64, result []byte, code, message string, calls, answers int) {
		// A raw value is one msgpack value (the router's come from
		// msgpack.Marshal, the decoders' from the walk); other bytes
		// travel as a bin value.
		valid := func(raw []byte) []byte {
			if n, err := msgpackcheck.Len(raw, math.MaxUint32); len(raw) > 0 && (err != nil || n != len(raw)) {
				return mustMsgpack(t, raw)
			}
			return raw
		}
		args, result = valid(args), valid(result)
		if len(args) == 0 {
			args = nil // msgpack.Marshal writes nothing at all for an empty one
		}
		fr := &frame{From: from}
		for i := range calls % 20 {
			fr.Calls = append(fr.Calls, call{ID: id + uint64(i), Method: method, Args: args})
		}
		for i := range answers % 20 {
			fr.Answers = append(fr.Answers, answer{ID: aid + uint64(i), Result: result, Code: code, Message: message})
		}
		checkEncode(t, fr)
	})
}

// acceptedFrames are inputs a node takes, in the forms msgpack.Marshal
// writes and the ones it only reads.
func acceptedFrames(t testing.TB) map[string][]byte {
	push := mustMsgpack(t, &sender.PushArgs{FD: 1<<40 + 5, Message: sender.Message{Data: "hello"}})
	e := func(build func(e *msgpack.Encoder)) []byte {
		var buf bytes.Buffer
		build(msgpack.NewEncoder(&buf))
		return buf.Bytes()
	}
	str := func(e *msgpack.Encoder, s ...string) {
		for _, s := range s {
			_ = e.EncodeString(s)
		}
	}
	rawArgs := func(e *msgpack.Encoder) { _ = msgpack.RawMessage(push).EncodeMsgpack(e) }
	return map[string][]byte{
		"marshalled": mustMsgpack(t, &frame{Version: 1, From: 3,
			Calls:   []call{{ID: 7, Method: "Push", Args: push}, {ID: 0, Method: "Check", Args: []byte{0x80}}},
			Answers: []answer{{ID: 9, Result: []byte{0xc3}}, {ID: 10, Code: sender.CodeInvalidFD, Message: "no"}, {ID: 11}},
		}),
		"keys in another order, unknown keys": e(func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(4)
			str(e, "c")
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeMapLen(4)
			str(e, "a")
			rawArgs(e)
			str(e, "zz", "ignored", "m", "Push", "i")
			_ = e.EncodeUint(3)
			str(e, "x")
			_ = e.Encode(map[string]any{"deep": []any{1, "two", nil}})
			str(e, "f")
			_ = e.EncodeInt16(2)
			str(e, "v")
			_ = e.EncodeInt64(1)
		}),
		"int widths": e(func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(3)
			str(e, "v")
			_ = e.EncodeUint8(1)
			str(e, "f")
			_ = e.EncodeInt64(1000)
			str(e, "a")
			_ = e.EncodeArrayLen(3)
			for _, id := range []func(){func() { _ = e.EncodeInt8(-1) }, func() { _ = e.EncodeUint32(1 << 31) }, func() { _ = e.EncodeInt32(-5) }} {
				_ = e.EncodeMapLen(1)
				str(e, "i")
				id()
			}
		}),
		"nil fields": e(func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(4)
			str(e, "v")
			_ = e.EncodeInt(1)
			str(e, "f")
			_ = e.EncodeNil()
			str(e, "a")
			_ = e.EncodeNil()
			str(e, "c")
			_ = e.EncodeArrayLen(2)
			_ = e.EncodeNil() // a zero call: no method, refused
			_ = e.EncodeMapLen(3)
			str(e, "i")
			_ = e.EncodeNil()
			str(e, "m", "Check", "a")
			_ = e.EncodeNil()
		}),
		"structs as arrays, bin strings": e(func(e *msgpack.Encoder) {
			_ = e.EncodeArrayLen(4)
			_ = e.EncodeInt(1)
			_ = e.EncodeInt(2)
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeArrayLen(3)
			_ = e.EncodeUint64(5)
			_ = e.EncodeBytes([]byte("Push"))
			rawArgs(e)
			_ = e.EncodeArrayLen(2)
			_ = e.EncodeArrayLen(4)
			_ = e.EncodeUint(6)
			_ = e.EncodeBool(false)
			_ = e.EncodeBytes([]byte("too_large"))
			str(e, "big")
			_ = e.EncodeArrayLen(0) // a zero answer
		}),
		"a key twice": e(func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(4)
			str(e, "v")
			_ = e.EncodeInt(1)
			str(e, "a")
			_ = e.EncodeArrayLen(2)
			for id := range 2 {
				_ = e.EncodeMapLen(2)
				str(e, "i")
				_ = e.EncodeUint(uint64(id + 1))
				str(e, "c", "first")
			}
			str(e, "a") // decoded into the first one's answers
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeMapLen(1)
			str(e, "e", "second")
			str(e, "f")
			_ = e.EncodeInt(1)
		}),
		"an empty array of answers": e(func(e *msgpack.Encoder) {
			_ = e.EncodeMapLen(4)
			str(e, "v")
			_ = e.EncodeInt(1)
			str(e, "f")
			_ = e.EncodeInt(1)
			str(e, "a")
			_ = e.EncodeArrayLen(0)
			str(e, "c")
			_ = e.EncodeArrayLen(1)
			_ = e.EncodeMap(map[string]any{"m": "Info", "a": 5})
		}),
	}
}

// TestFrameCodecForms: every accepted and refused form decodes as the
// reflection decoder decodes it, and encodes as msgpack.Marshal does.
func TestFrameCodecForms(t *testing.T) {
	for name, b := range acceptedFrames(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeFrameReflect(b); err != nil && name != "nil fields" {
				t.Fatalf("the reflection decoder refuses it: %v", err)
			}
			checkCodecs(t, b)
		})
	}
	for name, b := range refusedFrames(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeFrame(b); !errors.Is(err, errMalformed) {
				t.Fatalf("%v, want errMalformed", err)
			}
			if name != "over the size" {
				checkCodecs(t, b)
			}
		})
	}
}

// TestFrameDecodedFields: what the forms decode to, spelled out.
func TestFrameDecodedFields(t *testing.T) {
	forms := acceptedFrames(t)
	f, err := decodeFrame(forms["keys in another order, unknown keys"])
	if err != nil || f.From != 2 || len(f.Calls) != 1 || f.Calls[0].ID != 3 || f.Calls[0].Method != "Push" || f.Answers != nil {
		t.Fatalf("keys in another order: %+v, %v", f, err)
	}
	var args sender.PushArgs
	if err := msgpack.Unmarshal(f.Calls[0].Args, &args); err != nil || args.FD != 1<<40+5 || args.Data != "hello" {
		t.Fatalf("args %+v, %v", args, err)
	}
	f, err = decodeFrame(forms["int widths"])
	if err != nil || f.From != 1000 || len(f.Answers) != 3 || f.Answers[0].ID != math.MaxUint64 || f.Answers[1].ID != 1<<31 {
		t.Fatalf("int widths: %+v, %v", f, err)
	}
	if _, err := decodeFrame(forms["nil fields"]); err == nil || !strings.Contains(err.Error(), "call 0 has no method") {
		t.Fatalf("nil fields: %v, want the zero call refused", err)
	}
	f, err = decodeFrame(forms["structs as arrays, bin strings"])
	if err != nil || f.From != 2 || f.Calls[0].Method != "Push" || f.Answers[0].Code != "too_large" || f.Answers[0].Message != "big" ||
		!bytes.Equal(f.Answers[0].Result, []byte{0xc2}) || !reflect.DeepEqual(f.Answers[1], answer{}) {
		t.Fatalf("structs as arrays: %+v, %v", f, err)
	}
	f, err = decodeFrame(forms["a key twice"])
	if err != nil || len(f.Answers) != 1 || !reflect.DeepEqual(f.Answers[0], answer{ID: 1, Code: "first", Message: "second"}) {
		t.Fatalf("a key twice: %+v, %v", f, err)
	}
	f, err = decodeFrame(forms["an empty array of answers"])
	if err != nil || f.Answers == nil || len(f.Answers) != 0 || len(f.Calls) != 1 || f.Calls[0].Method != "Info" {
		t.Fatalf("an empty array of answers: %+v, %v", f, err)
	}
}

// benchFrames are the frames of a remote push: four pushes, and their
// four answers.
func benchFrames(b *testing.B) map[string]*frame {
	args := mustMsgpack(b, &sender.PushArgs{FD: 1<<40 + 5, Message: sender.Message{Data: "{\"type\":\"chat\",\"text\":\"hello everyone\"}"}})
	calls, answers := &frame{From: 1}, &frame{From: 2}
	for i := range 4 {
		calls.Calls = append(calls.Calls, call{ID: uint64(1000 + i), Method: "Push", Args: args})
		answers.Answers = append(answers.Answers, answer{ID: uint64(1000 + i), Result: mustMsgpack(b, true)})
	}
	return map[string]*frame{"calls": calls, "answers": answers}
}

func BenchmarkEncodeFrame(b *testing.B) {
	for name, f := range benchFrames(b) {
		for codec, encode := range map[string]func(*frame) ([]byte, error){"reflect": encodeFrameReflect, "new": encodeFrame} {
			b.Run("frame="+name+"/codec="+codec, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := encode(f); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	for name, f := range benchFrames(b) {
		enc, err := encodeFrame(f)
		if err != nil {
			b.Fatal(err)
		}
		for codec, decode := range map[string]func([]byte) (*frame, error){"reflect": decodeFrameReflect, "new": decodeFrame} {
			b.Run("frame="+name+"/codec="+codec, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := decode(enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCheckFrame: the share of the msgpackcheck walk in
// decodeFrame's time.
func BenchmarkCheckFrame(b *testing.B) {
	for name, f := range benchFrames(b) {
		enc, err := encodeFrame(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("frame="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := msgpackcheck.CheckLimit(enc, maxFrameArray); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/internal/redistest"
)

var wireFrames = []Frame{
	{From: 3, Requests: []Request{
		{ID: 1, Op: OpPush, Ack: true, FD: 1<<53 - 1, Opcode: 1, Finish: true, Data: []byte("hello")},
		{ID: 2, Op: OpDisconnect, Ack: true, FD: 5, Code: 4000, Reason: "bye ✓"},
		{ID: 3, Op: OpCheck, Ack: true, FD: 7},
		{ID: 4, Op: OpInfo, Ack: true, FD: 8},
		{ID: 5, Op: OpGroup, Name: "room:1", Opcode: 2, Data: []byte{0, 1, 2}, Except: []int64{9, 10}},
		{ID: 6, Op: OpUser, Name: "u", Opcode: 1, Data: []byte("x")},
		{ID: 1 << 63, Op: OpBroadcast, Opcode: 1, Data: []byte("all"), Except: []int64{1}},
		{ID: 8, Op: OpPush, FD: 1, Opcode: 0, Finish: false, Data: []byte{}},
	}},
	{From: 1023, Replies: []Reply{
		{ID: 1, OK: true},
		{ID: 2, Code: "invalid_close_code"},
		{ID: 4, OK: true, Body: []byte(`{"fd":8}`)},
		{ID: 5, OK: true, Count: 3000},
	}},
}

// normalize makes an empty Data, Body or Except nil, as decoding does
// for an empty field.
func normalize(f Frame) Frame {
	for i := range f.Requests {
		if len(f.Requests[i].Data) == 0 {
			f.Requests[i].Data = nil
		}
		if len(f.Requests[i].Except) == 0 {
			f.Requests[i].Except = nil
		}
	}
	for i := range f.Replies {
		if len(f.Replies[i].Body) == 0 {
			f.Replies[i].Body = nil
		}
	}
	return f
}

func TestWireRoundTrip(t *testing.T) {
	for i, f := range wireFrames {
		b, err := AppendFrame(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(f)) {
			t.Fatalf("frame %d:\n got %+v\nwant %+v", i, got, f)
		}
	}
}

func TestWireRefuses(t *testing.T) {
	good, _ := AppendFrame(nil, &wireFrames[0])
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "short"},
		{"version 2", append([]byte{2}, good[1:]...), "version"},
		{"kind 3", append([]byte{1, 3}, good[2:]...), "kind"},
		{"node 1024", []byte{1, 1, 0x80, 0x08, 1, 1, 3, 0, 1}, "node id"},
		{"no items", []byte{1, 1, 0, 0}, "empty frame"},
		{"count past the bytes", []byte{1, 1, 0, 0xff, 0x1f, 1, 3, 0, 1}, "items in"},
		{"count past MaxBatch", []byte{1, 1, 0, 0x81, 0x20}, "count"},
		{"op 0", []byte{1, 1, 0, 1, 1, 0, 0, 1}, "op 0"},
		{"op 8", []byte{1, 1, 0, 1, 1, 8, 0, 1}, "op 8"},
		{"flags", []byte{1, 1, 0, 1, 1, 3, 4, 1}, "flags"},
		{"fd past 2^53", append([]byte{1, 1, 0, 1, 1, 3, 0}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10), "fd"},
		{"data past the end", []byte{1, 1, 0, 1, 1, 1, 0, 1, 1, 9, 'a'}, "data of 9 bytes"},
		{"trailing bytes", append(append([]byte{}, good...), 0), "after the last item"},
		{"close code 5000", []byte{1, 1, 0, 1, 1, 2, 0, 1, 0x88, 0x27, 0}, "close code"},
		{"reason not UTF-8", []byte{1, 1, 0, 1, 1, 2, 0, 1, 0xe8, 0x07, 1, 0xff}, "UTF-8"},
		{"except past the bytes", []byte{1, 1, 0, 1, 1, 7, 0, 1, 0, 0xff, 0x7f}, "except list"},
		{"bad varint", []byte{1, 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "varint"},
		{"reply flags", []byte{1, 2, 0, 1, 1, 2, 0, 0, 0}, "flags"},
	} {
		_, err := DecodeFrame(tt.b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrMalformed with %q", tt.name, err, tt.want)
		}
	}
	if _, err := DecodeFrame(make([]byte, MaxFrameBytes+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized frame: %v", err)
	}
	// The encoder refuses what the decoder would.
	for _, f := range []Frame{
		{}, {From: 1024, Replies: []Reply{{ID: 1}}},
		{Requests: []Request{{ID: 1, Op: 9}}},
		{Requests: []Request{{ID: 1, Op: OpDisconnect, Reason: strings.Repeat("r", 124)}}},
		{Requests: []Request{{ID: 1, Op: OpPush, FD: 1 << 53}}},
		{Requests: []Request{{ID: 1, Op: OpGroup, Name: "\xff"}}},
		{Replies: []Reply{{ID: 1, Count: -1}}},
		{Requests: []Request{{ID: 1, Op: OpCheck}}, Replies: []Reply{{ID: 1}}},
	} {
		if b, err := AppendFrame([]byte("x"), &f); err == nil || string(b) != "x" {
			t.Errorf("AppendFrame(%+v) = %q, %v; want an error and dst unchanged", f, b, err)
		}
	}
}

// FuzzDecode: any input decodes to a frame or an ErrMalformed, never a
// panic; a frame decoded encodes back to the same bytes. Seeds: the
// frames above, and testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, fr := range wireFrames {
		b, _ := AppendFrame(nil, &fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		again, err := AppendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("a decoded frame does not encode: %v", err)
		}
		// Varints may have been written longer than needed; the
		// re-encoding is canonical, and decodes to the same frame.
		fr2, err := DecodeFrame(again)
		if err != nil || !reflect.DeepEqual(normalize(fr2), normalize(fr)) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, fr, fr2)
		}
		if len(again) > len(b) {
			t.Fatalf("re-encoding is longer: %d > %d", len(again), len(b))
		}
	})
}

// The seeds in testdata are the encodings of wireFrames; this keeps them
// in step with the format.
func TestFuzzSeedsAreCurrent(t *testing.T) {
	for i, fr := range wireFrames {
		b, _ := AppendFrame(nil, &fr)
		name := filepath.Join("testdata", "fuzz", "FuzzDecode", "frame"+strconv.Itoa(i))
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, []byte(want)) {
			if os.Getenv("WSBRIDGE_WRITE_SEEDS") == "1" {
				_ = os.MkdirAll(filepath.Dir(name), 0o755)
				if err := os.WriteFile(name, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s is not the encoding of wireFrames[%d] (WSBRIDGE_WRITE_SEEDS=1 rewrites it): %v", name, i, err)
		}
	}
}

// A rogue Redis client publishes garbage on a node's channel: the node
// counts and drops it, and the next good frame still arrives.
func TestInboxDropsMalformed(t *testing.T) {
	srv := redistest.Start(t)
	k := keys(t)
	frames := make(chan Frame, 4)
	in := &Inbox{OnFrame: func(_ string, f Frame) { frames <- f }, Logger: quiet()}
	b, err := NewRedisBroker(RedisBrokerConfig{Client: client(t, srv.URL()), Handler: in.Handle, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch := k.NodeChannel(2)
	if err := b.Subscribe(ctxT(t), ch); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI("spublish", ch, "hello"); err != nil || out != "1" {
		t.Fatalf("SPUBLISH garbage with redis-cli: %q, %v", out, err)
	}
	rogue := client(t, srv.URL())
	for _, garbage := range []string{"", "\x01\x01\x00\xff\xff\xff\xff\x0f", "\x01\x02\x00\x01"} {
		if err := rogue.Do(ctxT(t), rogue.B().Spublish().Channel(ch).Message(garbage).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	good, _ := AppendFrame(nil, &wireFrames[1])
	if err := b.Publish(ctxT(t), ch, good); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-frames:
		if f.From != 1023 || len(f.Replies) != 4 {
			t.Fatalf("frame %+v", f)
		}
	case <-t.Context().Done():
		t.Fatal("no frame")
	}
	if in.Malformed() != 4 || in.Frames() != 1 {
		t.Fatalf("malformed %d, frames %d; want 4 and 1", in.Malformed(), in.Frames())
	}
}

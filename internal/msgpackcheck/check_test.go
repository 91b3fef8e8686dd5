package msgpackcheck

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestCheckMsgpack: what msgpack v5.4.1 would allocate or recurse on
// without bound is refused before it decodes; every argument the Sender
// methods take passes.
func TestCheckMsgpack(t *testing.T) {
	for _, v := range []any{
		map[string]any{"fd": 1, "data": "hello", "opcode": 1},
		map[string]any{"fds": []int64{1, 2, 3}, "data": []byte{0, 1, 2}},
		map[string]any{"items": []map[string]any{{"fd": 1, "data": "x"}, {"fd": 2, "data": "y"}}},
		map[string]any{"f": 1.5, "n": -1, "big": uint64(1) << 63, "nil": nil, "t": true, "s": strings.Repeat("s", 70000)},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(b); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
	for name, b := range map[string][]byte{
		"array32 of 2^32-1 in 10 bytes": []byte("\x81\xa3fds\xdd\xff\xff\xff\xff"),
		"map32 of 2^32-1":               []byte("\xdf\xff\xff\xff\xff\x00"),
		"array16 longer than the bytes": []byte("\xdc\x01\x00\x01\x02"),
		"str32 longer than the bytes":   []byte("\xdb\x00\x10\x00\x00abc"),
		"bin8 cut":                      []byte("\xc4\x05ab"),
		"ext32 cut":                     []byte("\xc9\x00\x00\x00\x02\x01a"),
		"fixext16 cut":                  []byte("\xd8\x01abc"),
		"never used 0xc1":               []byte("\xc1"),
		"empty":                         nil,
		"nested 33 deep":                append(bytes.Repeat([]byte{0x91}, 33), 0x01),
		"nested a million deep":         bytes.Repeat([]byte{0x91}, 1<<20),
		"uint64 cut":                    []byte("\xcf\x00\x00"),
	} {
		if err := Check(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Check(append(bytes.Repeat([]byte{0x91}, 32), 0x01)); err != nil {
		t.Errorf("nested 32 deep: %v", err)
	}
}

// FuzzCheckMsgpack: Check accepts exactly the complete msgpack
// values msgpack's own Skip accepts, deep nesting apart (which it refuses
// on purpose), and Len says how many bytes Skip read.
func FuzzCheckMsgpack(f *testing.F) {
	for _, s := range []string{"\x81\xa3fds\xdd\xff\xff\xff\xff", "\x82\xa2fd\x01\xa4data\xa5hello", "\x93\x01\xc0\xc3",
		"\xc7\x02\x05ab", "\xd5\x01ab", "\xca\x00\x00\x00\x00", "\x91\x91\x91\x00", "\xde\x00\x01\xa1k\xa1v", "\xc1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		errC := Check(b)
		r := bytes.NewReader(b)
		errS := msgpack.NewDecoder(r).Skip()
		if n, err := Len(b, math.MaxUint32); (err == nil) != (errC == nil) || err == nil && n != len(b)-r.Len() {
			t.Fatalf("Len(%q) = %d, %v; Check: %v, Skip read %d bytes", b, n, err, errC, len(b)-r.Len())
		}
		switch {
		case errC == nil && errS != nil:
			t.Fatalf("Check accepted %q, which msgpack cannot skip: %v", b, errS)
		case errC != nil && errS == nil && !strings.Contains(errC.Error(), "nested deeper"):
			t.Fatalf("Check refused %q (%v), which msgpack skips", b, errC)
		}
	})
}

// TestCheckLimit: an array or map of more elements than the limit is
// refused wherever it is, even when the bytes that remain could hold it
// (an empty map is one byte and becomes a whole struct when decoded).
func TestCheckLimit(t *testing.T) {
	emptyMaps := func(n int) []byte {
		b := []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} // array 32
		return append(b, bytes.Repeat([]byte{0x80}, n)...)
	}
	if err := CheckLimit(emptyMaps(100), 100); err != nil {
		t.Errorf("100 empty maps, limit 100: %v", err)
	}
	if err := CheckLimit(emptyMaps(101), 100); err == nil {
		t.Error("101 empty maps passed the limit of 100")
	}
	if err := Check(emptyMaps(1 << 16)); err != nil {
		t.Errorf("Check without a limit: %v", err)
	}
	nested := append([]byte{0x81, 0xa1, 'x'}, emptyMaps(200)...) // {"x": [200 maps]}
	if err := CheckLimit(nested, 100); err == nil {
		t.Error("a nested array past the limit passed")
	}
	bigMap := []byte{0xde, 0x01, 0x00} // map 16 of 256 entries
	for i := range 256 {
		bigMap = append(bigMap, byte(i&0x7f), 0xc0)
	}
	if err := CheckLimit(bigMap, 100); err == nil {
		t.Error("a map of 256 entries passed the limit of 100")
	}
}

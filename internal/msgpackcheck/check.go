// Package msgpackcheck walks a msgpack value before a decoder sees it, so
// that input from outside (RPC arguments, messages between cluster nodes)
// cannot make the decoder allocate far more than it holds or recurse
// without bound.
package msgpackcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// maxMsgpackDepth bounds how deep msgpack arguments may nest. The Sender
// methods' arguments nest three levels at most (PushBatch: a map, its
// items array, an item map); the decoder recurses once per level, so an
// unbounded depth would let a 32 MiB frame of nested arrays grow a
// goroutine's stack past Go's limit, which kills the process.
const maxMsgpackDepth = 32

// Check walks b, one msgpack value, before msgpack.Unmarshal sees
// it, and refuses what would make the decoder allocate far more than b
// holds or recurse without bound: an array or map that announces more
// elements than bytes remain (each takes at least one byte), a string,
// binary or extension longer than what remains, or nesting deeper than
// maxMsgpackDepth. vmihailenco/msgpack v5.4.1 allocates a slice of the
// announced length before reading its elements (its allocation limit is
// never applied: decodeSliceValue tests the flag against 1), so a 10-byte
// frame announcing an array of 2^32-1 elements made it allocate 32 GiB and
// the process died out of memory. The walk allocates nothing.
func Check(b []byte) error { return CheckLimit(b, math.MaxUint32) }

// CheckLimit is Check that also refuses an array or a map of more than
// maxLen elements (entries): a decoder allocates a struct or a map entry
// for each, tens of bytes, for a byte of input (an empty map is one), so
// a count bound only by the bytes that remain still lets a few megabytes
// become gigabytes.
func CheckLimit(b []byte, maxLen uint64) error {
	_, err := Len(b, maxLen)
	return err
}

// Len is CheckLimit that also says how many bytes the first value of b
// takes (what follows it is not looked at): a decoder that has checked
// a whole message can find where one of its values ends without copying
// it (msgpack.Decoder.Skip reads a skipped string into a buffer of the
// string's size).
func Len(b []byte, maxLen uint64) (int, error) {
	var pending [maxMsgpackDepth + 1]uint64 // values still to read at each depth
	depth, i := 0, 0
	pending[0] = 1
	for {
		for pending[depth] == 0 {
			if depth == 0 {
				return i, nil
			}
			depth--
		}
		pending[depth]--
		if i >= len(b) {
			return 0, errMsgpackTruncated
		}
		c := b[i]
		i++
		var children, skip uint64
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f: // fixmap (at most 15 entries: below any limit worth setting)
			children = 2 * uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			children = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			h := msgpackHeads[c-0xc0]
			if h.kind == mpInvalid {
				return 0, fmt.Errorf("msgpack: byte 0x%02x at offset %d is not a type", c, i-1)
			}
			var n uint64
			if h.lenBytes > 0 {
				if len(b)-i < h.lenBytes {
					return 0, errMsgpackTruncated
				}
				switch h.lenBytes {
				case 1:
					n = uint64(b[i])
				case 2:
					n = uint64(binary.BigEndian.Uint16(b[i:]))
				case 4:
					n = uint64(binary.BigEndian.Uint32(b[i:]))
				}
				i += h.lenBytes
			}
			switch h.kind {
			case mpFixed:
				skip = uint64(h.size)
			case mpBytes:
				skip = n + uint64(h.size) // size: an extension's type byte
			case mpArray:
				children = n
			case mpMap:
				children = 2 * n
			}
			if (h.kind == mpArray || h.kind == mpMap) && n > maxLen {
				return 0, fmt.Errorf("msgpack: %d elements at offset %d, the limit is %d", n, i, maxLen)
			}
		}
		if skip > uint64(len(b)-i) {
			return 0, errMsgpackTruncated
		}
		i += int(skip)
		if children > 0 {
			if children > uint64(len(b)-i) {
				return 0, fmt.Errorf("msgpack: %d elements announced at offset %d, %d bytes remain", children, i, len(b)-i)
			}
			if depth == maxMsgpackDepth {
				return 0, fmt.Errorf("msgpack: nested deeper than %d levels", maxMsgpackDepth)
			}
			depth++
			pending[depth] = children
		}
	}
}

var errMsgpackTruncated = errors.New("msgpack: truncated")

type msgpackKind uint8

const (
	mpInvalid msgpackKind = iota
	mpFixed               // size bytes of data follow
	mpBytes               // a length, then (size bytes and) that many bytes
	mpArray               // a length, then that many values
	mpMap                 // a length, then twice that many values
)

// msgpackHeads describes the type bytes 0xc0..0xdf.
var msgpackHeads = [32]struct {
	kind     msgpackKind
	lenBytes int // bytes of the length that follows the type byte
	size     int // mpFixed: data bytes; mpBytes: bytes besides the length's (an extension's type)
}{
	0x00: {mpFixed, 0, 0}, // nil
	0x01: {mpInvalid, 0, 0},
	0x02: {mpFixed, 0, 0}, 0x03: {mpFixed, 0, 0}, // false, true
	0x04: {mpBytes, 1, 0}, 0x05: {mpBytes, 2, 0}, 0x06: {mpBytes, 4, 0}, // bin 8/16/32
	0x07: {mpBytes, 1, 1}, 0x08: {mpBytes, 2, 1}, 0x09: {mpBytes, 4, 1}, // ext 8/16/32
	0x0a: {mpFixed, 0, 4}, 0x0b: {mpFixed, 0, 8}, // float 32/64
	0x0c: {mpFixed, 0, 1}, 0x0d: {mpFixed, 0, 2}, 0x0e: {mpFixed, 0, 4}, 0x0f: {mpFixed, 0, 8}, // uint 8..64
	0x10: {mpFixed, 0, 1}, 0x11: {mpFixed, 0, 2}, 0x12: {mpFixed, 0, 4}, 0x13: {mpFixed, 0, 8}, // int 8..64
	0x14: {mpFixed, 0, 2}, 0x15: {mpFixed, 0, 3}, 0x16: {mpFixed, 0, 5}, 0x17: {mpFixed, 0, 9}, 0x18: {mpFixed, 0, 17}, // fixext 1..16 (type byte included)
	0x19: {mpBytes, 1, 0}, 0x1a: {mpBytes, 2, 0}, 0x1b: {mpBytes, 4, 0}, // str 8/16/32
	0x1c: {mpArray, 2, 0}, 0x1d: {mpArray, 4, 0}, // array 16/32
	0x1e: {mpMap, 2, 0}, 0x1f: {mpMap, 4, 0}, // map 16/32
}

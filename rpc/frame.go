package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// The goridge v3 frame header, as pkg/frame lays it out:
//
//	byte 0      version (high 4 bits) and header length in 32-bit words (low 4 bits)
//	byte 1      flags (codec, ERROR, CONTROL)
//	bytes 2-5   payload length, little endian
//	bytes 6-9   CRC32 (IEEE) of bytes 0-5, little endian
//	bytes 10-11 stream flags
//	then        options, 4 bytes each, little endian; an RPC frame has two:
//	            the sequence number and the length of the method name
//	then        payload: method name, then the encoded body
const (
	headerSize = 12
	rpcHL      = 5 // 3 words of header, 2 of options
	rpcHeader  = rpcHL * 4
)

// header is a decoded RPC frame header.
type header struct {
	flags      byte
	payloadLen uint32
	seq        uint32
	methodLen  uint32
}

// Reasons a frame header is refused. errFatal ones leave the stream in an
// unknown state: the connection is closed after the error reply.
var (
	errBadCRC     = errors.New("bad frame header: CRC mismatch")
	errBadVersion = errors.New("bad frame header: unsupported version")
	errBadHL      = errors.New("bad frame header: an RPC request carries exactly 2 options (sequence, method length)")
)

// parseHeader checks the fixed header (b holds at least headerSize bytes)
// and, when b holds rpcHeader bytes, the options. It returns a fatal error
// when the frame cannot be trusted.
func parseHeader(b []byte) (header, error) {
	if crc32.ChecksumIEEE(b[:6]) != binary.LittleEndian.Uint32(b[6:10]) {
		return header{}, errBadCRC
	}
	if b[0]>>4 != frame.Version1 {
		return header{}, errBadVersion
	}
	if b[0]&0x0f != rpcHL {
		return header{}, errBadHL
	}
	h := header{flags: b[1], payloadLen: binary.LittleEndian.Uint32(b[2:6])}
	if len(b) >= rpcHeader {
		h.seq = binary.LittleEndian.Uint32(b[12:16])
		h.methodLen = binary.LittleEndian.Uint32(b[16:20])
	}
	return h, nil
}

// codecs the service answers; proto and raw would hand the service bodies
// it cannot decode (and goridge's codec panics writing a proto reply to a
// non-proto value), so they are refused up front.
const servedCodecs = frame.CodecJSON | frame.CodecMsgpack | frame.CodecGob

// check refuses a well-formed frame the service cannot answer; the caller
// skips the frame's payload and sends the error back with its sequence.
func (h header) check(stream byte) error {
	codecs := h.flags & (servedCodecs | frame.CodecProto | frame.CodecRaw)
	switch {
	case h.flags&(frame.ERROR|frame.CONTROL) != 0:
		return fmt.Errorf("flags 0x%02x: a request may not carry ERROR or CONTROL", h.flags)
	case codecs == 0 || codecs&(codecs-1) != 0 || codecs&servedCodecs == 0:
		return fmt.Errorf("flags 0x%02x: the codec must be one of JSON (0x08), msgpack (0x10) or gob (0x20)", h.flags)
	case stream != 0:
		return fmt.Errorf("stream flags 0x%02x: streams are not supported", stream)
	case h.methodLen == 0 || h.methodLen > h.payloadLen:
		return fmt.Errorf("method length %d does not fit the payload of %d bytes", h.methodLen, h.payloadLen)
	}
	return nil
}

// errorFrame encodes a goridge error reply: ERROR flag, the request's
// sequence and method, the message as payload (as goridge's codec does).
func errorFrame(codec byte, seq uint32, method, msg string) []byte {
	b := make([]byte, rpcHeader, rpcHeader+len(method)+len(msg))
	b = append(append(b, method...), msg...)
	putHeader(b, codec|frame.ERROR, uint32(len(b)-rpcHeader), seq, uint32(len(method)))
	return b
}

// putHeader writes an RPC frame's header into b[:rpcHeader].
func putHeader(b []byte, flags byte, payloadLen, seq, methodLen uint32) {
	b[0] = frame.Version1<<4 | rpcHL
	b[1] = flags
	binary.LittleEndian.PutUint32(b[2:6], payloadLen)
	binary.LittleEndian.PutUint32(b[6:10], crc32.ChecksumIEEE(b[:6]))
	b[10], b[11] = 0, 0
	binary.LittleEndian.PutUint32(b[12:16], seq)
	binary.LittleEndian.PutUint32(b[16:20], methodLen)
}

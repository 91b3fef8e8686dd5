package bridge

import "unicode/utf8"

// utf8Stream validates a text message as its pieces arrive: write reports
// false at the first byte that no continuation could make valid UTF-8,
// even when that byte ends a piece (a character may be split across frames
// and reads). It holds at most the 3 bytes of a character not yet complete.
type utf8Stream struct {
	pend [3]byte
	n    uint8 // bytes in pend; pend[0] is a lead byte
}

// seqLen is the length of the UTF-8 sequence a lead byte starts; 0 for a
// byte that cannot start one.
func seqLen(b byte) int {
	switch {
	case b < 0x80:
		return 1
	case b >= 0xC2 && b <= 0xDF:
		return 2
	case b >= 0xE0 && b <= 0xEF:
		return 3
	case b >= 0xF0 && b <= 0xF4:
		return 4
	}
	return 0
}

// contOK reports whether b may follow the bytes seq (a lead byte and the
// continuation bytes after it) in a valid sequence: the second byte's
// range depends on the lead (no overlongs, surrogates or code points past
// U+10FFFF), the others are 0x80..0xBF.
func contOK(lead byte, pos int, b byte) bool {
	lo, hi := byte(0x80), byte(0xBF)
	if pos == 1 {
		switch lead {
		case 0xE0:
			lo = 0xA0
		case 0xED:
			hi = 0x9F
		case 0xF0:
			lo = 0x90
		case 0xF4:
			hi = 0x8F
		}
	}
	return b >= lo && b <= hi
}

// write validates the next piece of the message.
func (u *utf8Stream) write(p []byte) bool {
	// Finish the character the previous piece left open.
	for u.n > 0 && len(p) > 0 {
		lead := u.pend[0]
		if !contOK(lead, int(u.n), p[0]) {
			return false
		}
		if int(u.n)+1 == seqLen(lead) {
			u.n = 0
		} else {
			u.pend[u.n] = p[0]
			u.n++
		}
		p = p[1:]
	}
	if len(p) == 0 {
		return true
	}
	// A character may be cut at the end: find its lead byte among the
	// last three bytes.
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if b := p[i]; b < 0x80 || b >= 0xC0 {
			if l := seqLen(b); l > len(p)-i {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	tail := p[cut:]
	if len(tail) == 0 {
		return true
	}
	for i := 1; i < len(tail); i++ {
		if !contOK(tail[0], i, tail[i]) {
			return false
		}
	}
	u.n = uint8(copy(u.pend[:], tail))
	return true
}

// complete reports whether the message ended at a character boundary.
func (u *utf8Stream) complete() bool { return u.n == 0 }

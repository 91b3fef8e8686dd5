package bridge

import (
	"testing"
	"unicode/utf8"
)

// completable reports whether p is valid UTF-8 or a prefix of some: the
// oracle for utf8Stream, by brute force over the byte values where the
// ranges of continuation bytes change.
func completable(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	edges := []byte{0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF}
	var try func(q []byte, depth int) bool
	try = func(q []byte, depth int) bool {
		if utf8.Valid(q) {
			return true
		}
		if depth == 3 {
			return false
		}
		for _, e := range edges {
			if try(append(q[:len(q):len(q)], e), depth+1) {
				return true
			}
		}
		return false
	}
	return try(p, 0)
}

// checkStream feeds p to a utf8Stream in the pieces cuts make and checks
// every answer against the oracle: a piece fails exactly when the message
// so far can no longer become valid, and the end is valid exactly when
// the whole is.
func checkStream(t *testing.T, p []byte, cuts []int) {
	t.Helper()
	var u utf8Stream
	start := 0
	for _, end := range append(cuts, len(p)) {
		if end < start || end > len(p) {
			continue
		}
		got := u.write(p[start:end])
		if want := completable(p[:end]); got != want {
			t.Fatalf("%q cut at %v: write of [%d:%d] = %v, want %v", p, cuts, start, end, got, want)
		}
		if !got {
			return
		}
		start = end
	}
	if got, want := u.complete(), utf8.Valid(p); got != want {
		t.Fatalf("%q cut at %v: complete = %v, want %v", p, cuts, got, want)
	}
}

func TestUTF8StreamEverySplit(t *testing.T) {
	for _, s := range []string{
		"hello", "κόσμε", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
		"\xf0\x9f\x98\x80 emoji \xe2\x82\xac", "\xed\xa0\x80", "\xe0\x80\xaf", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80",
		"\xc0\xaf", "ab\xffcd", "\xef\xbf\xbf", "\xed\x9f\xbf", "\xf0\x90\x80\x80x", "\xe2\x82", "\x80",
	} {
		p := []byte(s)
		for i := 0; i <= len(p); i++ {
			for j := i; j <= len(p); j++ {
				checkStream(t, p, []int{i, j})
			}
		}
		cuts := make([]int, len(p))
		for i := range cuts {
			cuts[i] = i + 1
		}
		checkStream(t, p, cuts)
	}
}

// FuzzUTF8Stream: any bytes cut anywhere get the oracle's answers.
func FuzzUTF8Stream(f *testing.F) {
	f.Add([]byte("κόσμε"), uint8(3), uint8(7))
	f.Add([]byte("\xf4\x90\x80\x80"), uint8(1), uint8(2))
	f.Add([]byte("\xed\xa0\x80ok"), uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, p []byte, a, b uint8) {
		if len(p) > 64 {
			p = p[:64]
		}
		checkStream(t, p, []int{int(a) % (len(p) + 1), int(b) % (len(p) + 1)})
	})
}

package sseclient

import "unicode/utf8"

// replacement is U+FFFD, which stands for each ill-formed sequence.
const replacement = "\uFFFD"

// appendUTF8 appends b to dst with every ill-formed UTF-8 sequence
// replaced by U+FFFD the way the WHATWG Encoding standard's decoder does
// it (one replacement per maximal subpart), so text reads as it does in a
// browser.
func appendUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			n = maximalSubpart(b)
			dst = append(dst, replacement...)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// maximalSubpart returns how many bytes at the start of b, which holds an
// ill-formed sequence there, the decoder replaces with one U+FFFD: a lead
// byte with the continuation bytes that were valid after it.
func maximalSubpart(b []byte) int {
	lo, hi := byte(0x80), byte(0xBF)
	need := 0
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}

package main

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"net"
)

// afterHeaders is the body of an HTTP/1.0 answer whose headers were read
// through br: the bytes br already holds, then conn. The event parser
// reads it with its own buffer, so no second one is kept per stream.
func afterHeaders(br *bufio.Reader, conn net.Conn) io.Reader {
	held, _ := br.Peek(br.Buffered())
	return io.MultiReader(bytes.NewReader(bytes.Clone(held)), conn)
}

// sample reads the start of an event's data, "<seq> <unix ns> ...": seq
// is -1 when the data does not start with one, and ns 0 when no time
// follows it.
func sample(data []byte) (seq int, ns int64) {
	n, rest, ok := leadingNumber(data)
	if !ok || n > math.MaxInt32 {
		return -1, 0
	}
	if rest, found := bytes.CutPrefix(rest, []byte(" ")); found {
		ns, _, _ = leadingNumber(rest)
	}
	return int(n), ns
}

// leadingNumber reads the decimal number that starts b and returns what
// follows its digits; ok is false when b starts with no digit or with a
// number beyond int64.
func leadingNumber(b []byte) (n int64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, b, false
		}
		n = n*10 + d
	}
	return n, b[i:], i > 0
}

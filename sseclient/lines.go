package sseclient

import (
	"bytes"
	"io"
)

// bom is the UTF-8 byte order mark a stream may start with.
var bom = []byte("\xEF\xBB\xBF")

// firstBuffer is the size of a line reader's buffer until a longer line
// needs more.
const firstBuffer = 4 << 10

// lineReader splits a stream into lines ended by CRLF, LF or CR, in a
// buffer that grows up to max+1 bytes and no further.
type lineReader struct {
	src      io.Reader
	buf      []byte
	r, w     int   // buf[r:w] is unread
	scanned  int   // buf[r:r+scanned] holds no line end
	err      error // the error that ended src, returned once buf is used up
	max      int   // longest line
	started  bool  // the byte order mark was looked for
	afterCR  bool  // the last line ended with CR: a LF next belongs to it
	dropping bool  // inside a line too long, discarding it
}

func (l *lineReader) reset(src io.Reader, max int) {
	*l = lineReader{src: src, buf: l.buf, max: max}
}

// next returns the next line without its line end; the slice is valid
// until the next call. It returns ErrLineTooLong once for a line longer
// than max, then skips that line. At the end of the stream it returns the
// source's error (io.EOF when it simply ended); an unterminated last line
// is dropped.
func (l *lineReader) next() ([]byte, error) {
	for {
		if l.afterCR && l.r < l.w {
			// A CR ended the last line, maybe at the end of a read: a LF
			// right after it is part of the same line end.
			l.afterCR = false
			if l.buf[l.r] == '\n' {
				l.r++
			}
		}
		if l.started || l.lookForBOM() {
			if i := lineEnd(l.buf[l.r+l.scanned : l.w]); i >= 0 {
				end := l.r + l.scanned + i
				line := l.buf[l.r:end]
				l.afterCR = l.buf[end] == '\r'
				l.r, l.scanned = end+1, 0
				switch {
				case l.dropping:
					l.dropping = false
					continue
				case len(line) > l.max:
					return nil, ErrLineTooLong
				}
				return line, nil
			}
			l.scanned = l.w - l.r
		}
		if l.err != nil {
			return nil, l.err
		}
		if l.scanned > l.max || l.dropping && l.scanned > 0 {
			l.r, l.w, l.scanned = 0, 0, 0
			if !l.dropping {
				l.dropping = true
				return nil, ErrLineTooLong
			}
		}
		l.fill()
	}
}

// lookForBOM strips a leading byte order mark once enough of the stream
// has come to tell, and reports whether it could.
func (l *lineReader) lookForBOM() bool {
	s := l.buf[l.r:l.w]
	if len(s) < len(bom) && l.err == nil && bytes.HasPrefix(bom, s) {
		return false // could still be one
	}
	if bytes.HasPrefix(s, bom) {
		l.r += len(bom)
	}
	l.started = true
	return true
}

// lineEnd returns the index of the first CR or LF in s, or -1.
func lineEnd(s []byte) int {
	i := bytes.IndexByte(s, '\n')
	before := s
	if i >= 0 {
		before = s[:i]
	}
	if j := bytes.IndexByte(before, '\r'); j >= 0 {
		return j
	}
	return i
}

// maxEmptyReads is how many reads returning nothing in a row fill accepts
// before it gives up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// fill reads more of the stream into buf, moving the unread bytes to its
// start and growing it while a line needs more room.
func (l *lineReader) fill() {
	if l.r > 0 {
		l.w = copy(l.buf, l.buf[l.r:l.w])
		l.r = 0
	}
	if l.w == len(l.buf) {
		buf := make([]byte, min(max(2*len(l.buf), firstBuffer), l.max+1))
		copy(buf, l.buf[:l.w])
		l.buf = buf
	}
	for range maxEmptyReads {
		n, err := l.src.Read(l.buf[l.w:])
		l.w += n
		if err != nil {
			l.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	l.err = io.ErrNoProgress
}

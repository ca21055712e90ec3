package sseclient_test

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeUTF8 is the WHATWG Encoding standard's UTF-8 decode, byte by byte
// as the standard writes it: the leading BOM is dropped, and each
// ill-formed sequence becomes U+FFFD.
func decodeUTF8(b []byte) string {
	if strings.HasPrefix(string(b), "\xEF\xBB\xBF") {
		b = b[3:]
	}
	var out strings.Builder
	var cp rune
	seen, needed := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune(utf8.RuneError)
			}
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen, lower, upper = 0, 0, 0, 0x80, 0xBF
			out.WriteRune(utf8.RuneError)
			i-- // the byte is read again
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		if seen++; seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(utf8.RuneError)
	}
	return out.String()
}

// reference interprets a whole stream as the standard's section 9.2.6
// does, as plainly as it can be written: decode, split into lines, then
// one field at a time.
func reference(stream []byte) (events []sseclient.Event, lastID string) {
	text := decodeUTF8(stream)
	var data strings.Builder
	typ, idBuf, retry := "", "", int64(-1)
	for {
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			return events, lastID // what is left is not a line
		}
		line := text[:i]
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
		if line == "" {
			lastID = idBuf
			if data.Len() > 0 {
				if typ == "" {
					typ = "message"
				}
				e := sseclient.Event{Type: typ, Data: strings.TrimSuffix(data.String(), "\n"), ID: lastID, Retry: -1}
				if retry >= 0 {
					e.Retry = time.Duration(retry) * time.Millisecond
				}
				events = append(events, e)
			}
			data.Reset()
			typ, retry = "", -1
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "data":
			data.WriteString(value + "\n")
		case "event":
			typ = value
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				ms, err := strconv.ParseInt(value, 10, 64)
				if err != nil || ms > maxMillis {
					ms = maxMillis // saturated, as a Duration holds no more
				}
				retry = ms
			}
		}
	}
}

// maxMillis is the longest retry a Duration holds, in milliseconds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// chunked reads stream in reads of random sizes drawn from seed.
type chunked struct {
	rest []byte
	rnd  *rand.Rand
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.rest), 1+c.rnd.IntN(16))
	copy(p, c.rest[:n])
	c.rest = c.rest[n:]
	return n, nil
}

// outcome is what reading a whole stream gave: events and errors in order.
type outcome struct {
	events []sseclient.Event
	errs   []error
	lastID string
}

func readOutcome(r *sseclient.Reader) outcome {
	var o outcome
	for {
		e, err := r.Next()
		if err == io.EOF {
			o.lastID = r.LastEventID()
			return o
		}
		if err != nil {
			o.errs = append(o.errs, err)
			if !errors.Is(err, sseclient.ErrEventTooLarge) && !errors.Is(err, sseclient.ErrLineTooLong) {
				return o // not one the Reader goes on after
			}
			continue
		}
		o.events = append(o.events, e)
	}
}

// sources returns stream as one read, one byte at a time, cut at one
// point, and in random chunks.
func sources(stream []byte, seed uint64) map[string]func() io.Reader {
	cut := 0
	if len(stream) > 0 {
		cut = int(seed % uint64(len(stream)+1))
	}
	return map[string]func() io.Reader{
		"one read": func() io.Reader { return strings.NewReader(string(stream)) },
		"byte":     func() io.Reader { return iotest.OneByteReader(strings.NewReader(string(stream))) },
		"cut": func() io.Reader {
			return io.MultiReader(strings.NewReader(string(stream[:cut])), strings.NewReader(string(stream[cut:])))
		},
		"chunks": func() io.Reader { return &chunked{rest: stream, rnd: rand.New(rand.NewPCG(seed, 1))} },
	}
}

// FuzzParse checks the Reader against the standard's algorithm, and that
// neither where reads end nor a size limit can change what it reads, make
// it panic, or let an event exceed the limit.
func FuzzParse(f *testing.F) {
	for i, tc := range conformance {
		f.Add([]byte(tc.stream), uint64(i))
	}
	f.Add([]byte("data: a\r"), uint64(8))
	f.Add([]byte(": "+strings.Repeat("x", 40)+"\ndata: b\n\ndata: "+strings.Repeat("y", 20)+"\n\n"), uint64(3))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		want, wantID := reference(stream)
		const limit = 16
		limited := map[string]outcome{}
		for name, src := range sources(stream, seed) {
			got := readOutcome(sseclient.NewReader(src()))
			require.Empty(t, got.errs, name)
			if !assert.Equal(t, want, got.events, name) || !assert.Equal(t, wantID, got.lastID, name) {
				t.Fatalf("stream %q", stream)
			}

			r := sseclient.NewReader(src())
			r.MaxEventSize = limit
			o := readOutcome(r)
			for _, e := range o.events {
				require.LessOrEqual(t, len(e.Data), limit, name)
			}
			for _, err := range o.errs {
				require.True(t, errors.Is(err, sseclient.ErrEventTooLarge) || errors.Is(err, sseclient.ErrLineTooLong), "%s: %v", name, err)
			}
			limited[name] = o
		}
		for name, o := range limited {
			assert.Equal(t, limited["one read"], o, "%s with a limit", name)
		}
	})
}

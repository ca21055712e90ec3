package ginsse_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrameExactBytes(t *testing.T) {
	for _, tc := range []struct {
		typ, id string
		retry   int64
		data    string
		want    string
	}{
		{"", "", -1, "x", "data: x\n\n"},
		{"a", "1", 3000, "x", "event: a\nid: 1\nretry: 3000\ndata: x\n\n"},
		{"", "", -1, "", "data: \n\n"},
		{"", "", 0, "a\nb", "retry: 0\ndata: a\ndata: b\n\n"},
		{"", "", -1, "a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
	} {
		got, err := ginsse.EncodeFrame(tc.typ, tc.id, tc.retry, tc.data)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got))
	}
}

func TestFrameMatchesSpecParser(t *testing.T) {
	for name, data := range map[string]string{
		"plain":              "hello",
		"empty":              "",
		"LF":                 "a\nb",
		"CR":                 "a\rb",
		"CRLF":               "a\r\nb",
		"mixed":              "a\r\nb\rc\nd",
		"CR CR":              "a\r\rb",
		"LF LF":              "\n\n",
		"trailing newline":   "line\n",
		"leading newline":    "\nline",
		"leading space":      " spaced",
		"colon":              "data: not a field",
		"unicode":            "héllo 世界 🎉",
		"unicode separators": "a\u2028b\u2029c\u0085d",
		"NUL":                "a\x00b",
		"1 MiB":              strings.Repeat("0123456789abcdef", 1<<16),
		"1 MiB of lines":     strings.Repeat("line\n", 1<<18),
	} {
		t.Run(name, func(t *testing.T) {
			frame, err := ginsse.EncodeFrame(" t y p e", "id 7", 1500, data)
			require.NoError(t, err)
			events := parseFrames(string(frame))
			require.Len(t, events, 1)
			assert.True(t, events[0].Data == lineEnds.Replace(data), "data survives")
			assert.Equal(t, " t y p e", events[0].Type)
			assert.Equal(t, "id 7", events[0].LastEventID)
			assert.Equal(t, 1500, events[0].Retry)
		})
	}
}

func TestFrameRefusesFieldInjection(t *testing.T) {
	for _, tc := range []struct{ typ, id string }{
		{"a\nevent: b", ""},
		{"a\rb", ""},
		{"", "1\nevent: x"},
		{"", "1\r"},
		{"", "1\x00"},
	} {
		_, err := ginsse.EncodeFrame(tc.typ, tc.id, -1, "x")
		assert.ErrorIs(t, err, ginsse.ErrInvalidEvent, "%q %q", tc.typ, tc.id)
	}
	_, err := ginsse.EncodeFrame("a\x00b", "", -1, "x")
	assert.NoError(t, err, "NUL is allowed in an event type")
}

func FuzzFrame(f *testing.F) {
	f.Add("update", "1-0", "hello\nworld", int64(-1))
	f.Add("", "", "", int64(0))
	f.Add("a\r", "b\x00", "\r\n\r", int64(5))
	f.Fuzz(func(t *testing.T, typ, id, data string, retry int64) {
		frame, err := ginsse.EncodeFrame(typ, id, retry, data)
		bad := strings.ContainsAny(typ, "\r\n") || strings.ContainsAny(id, "\r\n\x00")
		if bad {
			if !errors.Is(err, ginsse.ErrInvalidEvent) {
				t.Fatalf("EncodeFrame(%q, %q) = %v, want ErrInvalidEvent", typ, id, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		events := parseFrames(string(frame))
		if len(events) != 1 {
			t.Fatalf("%d events from %q", len(events), frame)
		}
		e := events[0]
		wantType := typ
		if wantType == "" {
			wantType = "message"
		}
		if e.Data != lineEnds.Replace(data) || e.Type != wantType || e.LastEventID != id {
			t.Fatalf("round trip of %q %q %q gave %+v", typ, id, data, e)
		}
		if retry >= 0 && e.Retry != int(retry) {
			t.Fatalf("retry %d came back as %d", retry, e.Retry)
		}
		if utf8.ValidString(typ) && utf8.ValidString(id) && utf8.ValidString(data) { // sseclient decodes the rest as a browser does, to U+FFFD
			got, err := sseclient.NewReader(strings.NewReader(string(frame))).Next()
			want := sseclient.Event{Type: e.Type, Data: e.Data, ID: e.LastEventID, Retry: -1}
			if retry >= 0 {
				want.Retry = time.Duration(min(retry, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
			}
			if err != nil || got != want {
				t.Fatalf("sseclient read %q as %+v, %v; the oracle as %+v", frame, got, err, e)
			}
		}
	})
}

// Whatever arrives on a Redis channel becomes exactly one event, never
// more: no publisher can inject fields or events.
func FuzzPayload(f *testing.F) {
	f.Add(`{"data":"x","type":"t","id":"1","retry":5}`)
	f.Add(`{"data": {"a": 1}, "type": "a\nb"}`)
	f.Add(`hola`)
	f.Add(`{"data":"x","id":5}`)
	f.Fuzz(func(t *testing.T, raw string) {
		typ, id, retry, data := ginsse.DecodePayload(raw)
		frame, err := ginsse.EncodeFrame(typ, id, retry, data)
		if err != nil {
			t.Fatalf("decoded payload %q does not encode: %v", raw, err)
		}
		if n := len(parseFrames(string(frame))); n != 1 {
			t.Fatalf("payload %q gave %d events", raw, n)
		}
	})
}

func TestDecodePayload(t *testing.T) {
	type ev struct {
		typ, id string
		retry   int64
		data    string
	}
	for _, tc := range []struct {
		raw  string
		want ev
	}{
		{`{"data":"x","type":"t","id":"1","retry":3000}`, ev{"t", "1", 3000, "x"}},
		{`{"retry": 10, "id": 5, "extra": [1,2], "type": "greeting", "data": {"message": "Hello!"}}`, ev{"greeting", "5", 10, `{"message": "Hello!"}`}},
		{"{\n  \"data\" : \"a\\nb\"\n}", ev{"", "", -1, "a\nb"}},
		{`{"data": null}`, ev{"", "", -1, "null"}},
		{`{"data": 42, "id": null}`, ev{"", "", -1, "42"}},
		{`hola`, ev{"", "", -1, "hola"}},
		{`{"type":"t"}`, ev{"", "", -1, `{"type":"t"}`}},
		{`{"data":"x","type":"a\nb"}`, ev{"", "", -1, `{"data":"x","type":"a\nb"}`}},
		{`{"data":"x","retry":-1}`, ev{"", "", -1, `{"data":"x","retry":-1}`}},
		{`{"data":"x","retry":1.5}`, ev{"", "", -1, `{"data":"x","retry":1.5}`}},
		{`{"data":"x"`, ev{"", "", -1, `{"data":"x"`}},
		// "t" of another publisher's shape is passed over, not a reason
		// to deliver the whole message as text.
		{`{"data":"x","t":"2024"}`, ev{"", "", -1, "x"}},
		{`{"data":"x","t":1.7e12}`, ev{"", "", -1, "x"}},
		{``, ev{"", "", -1, ""}},
	} {
		typ, id, retry, data := ginsse.DecodePayload(tc.raw)
		assert.Equal(t, tc.want, ev{typ, id, retry, data}, "payload %q", tc.raw)
	}
}

// sseParser is the encoder's oracle: a reading of the event stream
// interpretation of the WHATWG HTML standard (section 9.2.6) written apart
// from sseclient, so that FuzzFrame checks the two against each other.
type sseParser struct {
	data        strings.Builder
	typ, lastID string
	retry       int
	events      []sseEvent
}

func newParser() *sseParser { return &sseParser{retry: -1} }

// lineEnds normalises CRLF and CR to LF, as a browser's parser does to
// data: what an event's data is once it arrives.
var lineEnds = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// feed interprets whole lines: CRLF, LF and CR each end one.
func (p *sseParser) feed(stream string) {
	for len(stream) > 0 {
		i := strings.IndexAny(stream, "\r\n")
		if i < 0 {
			return // an unterminated last line is ignored, as by browsers at EOF
		}
		p.line(stream[:i])
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
	}
}

func (p *sseParser) line(l string) {
	switch {
	case l == "":
		p.dispatch()
		return
	case l[0] == ':':
		return // a comment
	}
	field, value, found := strings.Cut(l, ":")
	if found {
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		p.typ = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.Contains(value, "\x00") {
			p.lastID = value
		}
	case "retry":
		if n, err := strconv.Atoi(value); err == nil && strings.Trim(value, "0123456789") == "" {
			p.retry = n
		}
	}
}

func (p *sseParser) dispatch() {
	if p.data.Len() == 0 {
		p.typ = ""
		return
	}
	e := sseEvent{Type: p.typ, Data: strings.TrimSuffix(p.data.String(), "\n"), LastEventID: p.lastID, Retry: p.retry}
	if e.Type == "" {
		e.Type = "message"
	}
	p.events = append(p.events, e)
	p.data.Reset()
	p.typ = ""
}

// parseFrames returns the events a browser dispatches for stream.
func parseFrames(stream string) []sseEvent {
	p := newParser()
	p.feed(stream)
	return p.events
}

package sseclient_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ev is an event without a retry field.
func ev(typ, data, id string) sseclient.Event {
	return sseclient.Event{Type: typ, Data: data, ID: id, Retry: -1}
}

// conformance holds the cases of the WHATWG HTML standard's event stream
// interpretation (section 9.2.6), each with what a browser dispatches.
var conformance = []struct {
	name   string
	stream string
	want   []sseclient.Event
	lastID string // the last event ID at the end
}{
	{"LF", "data: a\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"CRLF", "data: a\r\n\r\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"CR", "data: a\r\r", []sseclient.Event{ev("message", "a", "")}, ""},
	{"mixed line ends", "data: a\rdata: b\r\ndata: c\n\r\n", []sseclient.Event{ev("message", "a\nb\nc", "")}, ""},
	{"CR CR LF is two line ends", "data: a\r\r\ndata: b\n\n", []sseclient.Event{ev("message", "a", ""), ev("message", "b", "")}, ""},
	{"LF CR is two line ends", "data: a\n\rdata: b\n\n", []sseclient.Event{ev("message", "a", ""), ev("message", "b", "")}, ""},
	{"BOM stripped", "\xEF\xBB\xBFdata: a\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"BOM stripped once", "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", []sseclient.Event{ev("message", "b", "")}, ""},
	{"BOM only leading", "data: a\n\n\xEF\xBB\xBFdata: b\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"BOM alone", "\xEF\xBB\xBF", nil, ""},
	{"data lines joined with LF", "data: a\ndata: b\n\n", []sseclient.Event{ev("message", "a\nb", "")}, ""},
	{"empty data line", "data\n\n", []sseclient.Event{ev("message", "", "")}, ""},
	{"empty data lines", "data:\ndata\n\n", []sseclient.Event{ev("message", "\n", "")}, ""},
	{"only the last LF removed", "data: a\ndata:\n\n", []sseclient.Event{ev("message", "a\n", "")}, ""},
	{"event sets type", "event: update\ndata: x\n\n", []sseclient.Event{ev("update", "x", "")}, ""},
	{"type reset after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []sseclient.Event{ev("a", "1", ""), ev("message", "2", "")}, ""},
	{"type reset by empty dispatch", "event: a\n\ndata: 2\n\n", []sseclient.Event{ev("message", "2", "")}, ""},
	{"empty type is message", "event\ndata: x\n\n", []sseclient.Event{ev("message", "x", "")}, ""},
	{"last event type wins", "event: a\nevent: b\ndata: x\n\n", []sseclient.Event{ev("b", "x", "")}, ""},
	{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", []sseclient.Event{ev("message", "a", "1"), ev("message", "b", "1")}, "1"},
	{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []sseclient.Event{ev("message", "a", "1"), ev("message", "b", "1")}, "1"},
	{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\n\nid:\ndata: c\n\n", []sseclient.Event{ev("message", "a", "1"), ev("message", "b", ""), ev("message", "c", "")}, ""},
	{"id-only frame sets the last event ID", "id: 7\n\n", nil, "7"},
	{"id without dispatch is not taken", "data: a\n\nid: 7\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"id after data in the same event", "data: a\nid: 3\n\n", []sseclient.Event{ev("message", "a", "3")}, "3"},
	{"retry", "retry: 1500\ndata: a\n\ndata: b\n\n", []sseclient.Event{{Type: "message", Data: "a", Retry: 1500 * time.Millisecond}, ev("message", "b", "")}, ""},
	{"retry zero", "retry: 0\ndata: a\n\n", []sseclient.Event{{Type: "message", Data: "a", Retry: 0}}, ""},
	{"retry not digits", "retry: 1.5\nretry: -1\nretry: 1e3\nretry:  100\nretry: 10 \nretry\nretry:\ndata: a\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"comments skipped", ": hi\n:\ndata: a\n: there\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"comment only", ": ok\n\n", nil, ""},
	{"one leading space removed", "data:  a\n\ndata:a\n\n", []sseclient.Event{ev("message", " a", ""), ev("message", "a", "")}, ""},
	{"tab kept", "data:\ta\n\n", []sseclient.Event{ev("message", "\ta", "")}, ""},
	{"colon in value", "data: a: b\n\n", []sseclient.Event{ev("message", "a: b", "")}, ""},
	{"unknown field ignored", "foo: bar\ndata: a\n\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"field names are case-sensitive", "Data: a\nEVENT: b\n\n", nil, ""},
	{"space before colon", "data : a\n\n", nil, ""},
	{"blank lines dispatch nothing", "\n\n\r\n\r", nil, ""},
	{"unterminated event dropped", "data: a\n\ndata: b\n", []sseclient.Event{ev("message", "a", "")}, ""},
	{"unterminated line dropped", "data: a\n\ndata: b", []sseclient.Event{ev("message", "a", "")}, ""},
	{"UTF-8", "data: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n\n", []sseclient.Event{ev("message", "café € 😀", "")}, ""},
	{"ill-formed byte", "data: a\xffb\n\n", []sseclient.Event{ev("message", "a\uFFFDb", "")}, ""},
	{"truncated sequences", "data: \xe2\x82|\xf0\x9f\x98|\xc3\n\n", []sseclient.Event{ev("message", "\uFFFD|\uFFFD|\uFFFD", "")}, ""},
	{"surrogate", "data: \xed\xa0\x80\n\n", []sseclient.Event{ev("message", "\uFFFD\uFFFD\uFFFD", "")}, ""},
	{"overlong", "data: \xc0\xaf\xe0\x80\xaf\n\n", []sseclient.Event{ev("message", "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD", "")}, ""},
	{"ill-formed type and id", "event: \xff\nid: \xfe\ndata: a\n\n", []sseclient.Event{ev("\uFFFD", "a", "\uFFFD")}, "\uFFFD"},
	{"ginsse frame", "event: update\nid: 42\ndata: line 1\ndata: line 2\n\n", []sseclient.Event{ev("update", "line 1\nline 2", "42")}, "42"},
}

// readAll reads events until the end of the stream, failing on any other
// error.
func readAll(t testing.TB, r *sseclient.Reader) []sseclient.Event {
	t.Helper()
	var got []sseclient.Event
	for {
		e, err := r.Next()
		if err == io.EOF {
			return got
		}
		require.NoError(t, err)
		got = append(got, e)
	}
}

func TestReaderConformance(t *testing.T) {
	for _, tc := range conformance {
		t.Run(tc.name, func(t *testing.T) {
			r := sseclient.NewReader(strings.NewReader(tc.stream))
			assert.Equal(t, tc.want, readAll(t, r))
			assert.Equal(t, tc.lastID, r.LastEventID())
		})
	}
}

// TestReaderChunking reads each case in two reads cut at every byte, and
// one byte at a time: the events never depend on where reads end.
func TestReaderChunking(t *testing.T) {
	for _, tc := range conformance {
		t.Run(tc.name, func(t *testing.T) {
			for cut := range len(tc.stream) + 1 {
				src := io.MultiReader(strings.NewReader(tc.stream[:cut]), strings.NewReader(tc.stream[cut:]))
				assert.Equal(t, tc.want, readAll(t, sseclient.NewReader(src)), "cut at %d", cut)
			}
			r := sseclient.NewReader(iotest.OneByteReader(strings.NewReader(tc.stream)))
			assert.Equal(t, tc.want, readAll(t, r), "one byte at a time")
		})
	}
}

func TestReaderCRLFSplitAcrossReads(t *testing.T) {
	src := io.MultiReader(strings.NewReader("data: a\r"), strings.NewReader("\ndata: b\r"), strings.NewReader("\n\r"), strings.NewReader("\n"))
	assert.Equal(t, []sseclient.Event{ev("message", "a\nb", "")}, readAll(t, sseclient.NewReader(src)))
}

func TestReaderRetry(t *testing.T) {
	r := sseclient.NewReader(strings.NewReader("retry: 250\n\nretry: x\n\n"))
	assert.Empty(t, readAll(t, r), "retry alone dispatches nothing")
	d, ok := r.Retry()
	assert.True(t, ok)
	assert.Equal(t, 250*time.Millisecond, d)

	_, ok = sseclient.NewReader(strings.NewReader("data: a\n\n")).Retry()
	assert.False(t, ok)

	r = sseclient.NewReader(strings.NewReader("retry: 99999999999999999999999\n\n"))
	readAll(t, r)
	d, ok = r.Retry()
	assert.True(t, ok)
	assert.Positive(t, d, "a huge retry saturates")
}

func TestReaderEventTooLarge(t *testing.T) {
	stream := "data: 0123456789\n\n" + // exactly 10 bytes: fine
		"data: 12345\ndata: 1234\n\n" + // 10 with the LF: fine
		"id: 5\ndata: 12345\ndata: 12345\nevent: big\n\n" + // 11: dropped, id and all
		"data: ok\n\n"
	r := sseclient.NewReader(strings.NewReader(stream))
	r.MaxEventSize = 10
	e, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, "0123456789", e.Data)
	e, err = r.Next()
	require.NoError(t, err)
	assert.Equal(t, "12345\n1234", e.Data)
	_, err = r.Next()
	assert.ErrorIs(t, err, sseclient.ErrEventTooLarge)
	e, err = r.Next()
	require.NoError(t, err)
	assert.Equal(t, ev("message", "ok", ""), e, "the Reader goes on after the dropped event, without its id")
	_, err = r.Next()
	assert.Equal(t, io.EOF, err)
}

func TestReaderLineTooLong(t *testing.T) {
	stream := ": " + strings.Repeat("x", 100) + "\ndata: dropped\n\n" + "data: ok\n\n"
	for name, src := range map[string]io.Reader{
		"one read":   strings.NewReader(stream),
		"byte reads": iotest.OneByteReader(strings.NewReader(stream)),
	} {
		r := sseclient.NewReader(src)
		r.MaxEventSize = 10
		_, err := r.Next()
		assert.ErrorIs(t, err, sseclient.ErrLineTooLong, name)
		e, err := r.Next()
		require.NoError(t, err, name)
		assert.Equal(t, "ok", e.Data, name)
	}
}

// endless repeats b forever.
type endless struct {
	b []byte
	i int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], e.b[e.i:])
		n += c
		e.i = (e.i + c) % len(e.b)
	}
	return n, nil
}

func TestReaderMemoryIsBounded(t *testing.T) {
	// A 64 MiB line, from a source that never holds it whole.
	src := io.MultiReader(strings.NewReader(":"), io.LimitReader(&endless{b: bytes.Repeat([]byte("x"), 4096)}, 64<<20), strings.NewReader("\n\ndata: after\n\n"))
	r := sseclient.NewReader(src)
	_, err := r.Next()
	require.ErrorIs(t, err, sseclient.ErrLineTooLong)
	e, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, "after", e.Data)
	assert.LessOrEqual(t, sseclient.BufferSize(r), sseclient.DefaultMaxEventSize+16)

	// Many data lines, each within bounds, that add up to too much.
	src = io.MultiReader(io.LimitReader(&endless{b: []byte("data: " + strings.Repeat("y", 1000) + "\n")}, 8<<20), strings.NewReader("\n"))
	_, err = sseclient.NewReader(src).Next()
	assert.ErrorIs(t, err, sseclient.ErrEventTooLarge)
}

func TestReaderSourceError(t *testing.T) {
	boom := errors.New("boom")
	src := io.MultiReader(strings.NewReader("data: a\n\ndata: half"), iotest.ErrReader(boom))
	r := sseclient.NewReader(src)
	e, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, "a", e.Data)
	_, err = r.Next()
	assert.ErrorIs(t, err, boom)
}

func TestReaderResetKeepsLastEventIDAndRetry(t *testing.T) {
	r := sseclient.NewReader(strings.NewReader("retry: 20\nid: 1\ndata: a\n\ndata: half"))
	assert.Equal(t, []sseclient.Event{{Type: "message", Data: "a", ID: "1", Retry: 20 * time.Millisecond}}, readAll(t, r))
	r.Reset(strings.NewReader("\ndata: b\n\n"))
	assert.Equal(t, []sseclient.Event{ev("message", "b", "1")}, readAll(t, r), "the half event is gone; the id stays")
	d, _ := r.Retry()
	assert.Equal(t, 20*time.Millisecond, d)
}

// The hooks see what a browser keeps to itself: comments, and last event
// ID moves that dispatch no event.
func TestReaderHooks(t *testing.T) {
	stream := ": ok\r\n\r\n:\n:  two spaces\nid: 1\n\nid: 1\ndata: a\n\nid: 2\ndata: a\n\nid\n\n"
	r := sseclient.NewReader(strings.NewReader(stream))
	var comments, ids []string
	r.OnComment = func(text string) { comments = append(comments, text) }
	r.OnLastEventID = func(id string) { ids = append(ids, id+"@"+r.LastEventID()) }
	assert.Equal(t, []sseclient.Event{ev("message", "a", "1"), ev("message", "a", "2")}, readAll(t, r))
	assert.Equal(t, []string{" ok", "", "  two spaces"}, comments)
	assert.Equal(t, []string{"1@1", "2@2", "@"}, ids, "an id-only frame moves it; a repeated id does not")
}

// An event dropped for its size does not move the last event ID.
func TestReaderHookSkipsDroppedEvent(t *testing.T) {
	r := sseclient.NewReader(strings.NewReader("id: 9\ndata: " + strings.Repeat("x", 100) + "\n\nid: 10\ndata: b\n\n"))
	r.MaxEventSize = 50
	var ids []string
	r.OnLastEventID = func(id string) { ids = append(ids, id) }
	_, err := r.Next()
	require.ErrorIs(t, err, sseclient.ErrLineTooLong)
	e, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, ev("message", "b", "10"), e)
	assert.Equal(t, []string{"10"}, ids)
}

// Every event moves the last event ID, as on a ginsse stream with history,
// and still NextRaw allocates nothing.
func TestReaderNextRawAllocatesNothing(t *testing.T) {
	frame := []byte("event: update\nid: 1732491234567-0\ndata: {\"n\":1}\n\nevent: update\nid: 1732491234567-1\ndata: {\"n\":1}\n\n")
	r := sseclient.NewReader(&endless{b: frame})
	allocs := testing.AllocsPerRun(1000, func() {
		e, err := r.NextRaw()
		if err != nil || !bytes.Equal(e.Data, []byte(`{"n":1}`)) || string(e.Type) != "update" {
			t.Fatalf("got %q, %v", e.Data, err)
		}
	})
	assert.Zero(t, allocs)
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 2.0, "Next allocates the data and the new id only")
}

func BenchmarkReaderNextRaw(b *testing.B) {
	// Two events, so that each moves the last event ID.
	frame := []byte("event: update\nid: 1732491234567-0\ndata: {\"message\":\"Hello!\"}\n\nevent: update\nid: 1732491234567-1\ndata: {\"message\":\"Hello!\"}\n\n")
	r := sseclient.NewReader(&endless{b: frame})
	b.SetBytes(int64(len(frame) / 2))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.NextRaw(); err != nil {
			b.Fatal(err)
		}
	}
}

// The watch of Options.IdleTimeout runs on every event.
func BenchmarkIdleTimeoutPerEvent(b *testing.B) {
	c, err := sseclient.New("http://127.0.0.1/", sseclient.Options{IdleTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	round := sseclient.IdleRound(c, &endless{b: []byte("data: x\n\n")}, make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		round()
	}
}

package sseclient

import (
	"bytes"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// DefaultMaxEventSize is the MaxEventSize used when none is set: 1 MiB.
const DefaultMaxEventSize = 1 << 20

// fieldRoom is how much longer than MaxEventSize a line may be: room for
// a field name, its colon and a space.
const fieldRoom = 8

// messageType is the type of an event that named none.
var messageType = []byte("message")

// A Reader reads the events of one event stream from an io.Reader,
// interpreting it exactly as the WHATWG HTML standard's "event stream
// interpretation" tells a browser to: lines end with CRLF, LF or CR (also
// when a CRLF is split between two reads); one leading byte order mark is
// dropped; comments and unknown fields are skipped; an event is dispatched
// at a blank line, and only when it has data; an event left unterminated
// at the end of the stream is dropped. Text is decoded as UTF-8, with
// U+FFFD for ill-formed bytes.
//
// Its memory is bounded: an event whose data exceeds MaxEventSize is
// dropped with ErrEventTooLarge, and a line longer than that (plus its
// field name) with ErrLineTooLong; either way the Reader skips to the
// blank line that ends the event, and the next call goes on with the
// event after it.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	// MaxEventSize bounds the data of one event, in bytes, and each line
	// to that plus 8 bytes for its field name. Zero means
	// DefaultMaxEventSize. Set it before the first call to Next or
	// NextRaw.
	MaxEventSize int

	// OnComment, when set, is called with the text of each comment line,
	// everything after its leading colon: the heartbeats (": ping") a
	// browser skips, for callers that watch a quiet stream's liveness.
	// It runs inside Next or NextRaw and must not call them.
	OnComment func(text string)

	// OnLastEventID, when set, is called each time the last event ID
	// changes, at the blank line that ends the frame setting it. That
	// includes a frame with an id and no data, which dispatches no event,
	// so a caller saving its resume position (or showing it to another
	// goroutine) sees every move. It runs inside Next or NextRaw.
	OnLastEventID func(id string)

	lines      lineReader
	begun      bool
	data, typ  []byte // the data and event type buffers
	id         []byte // the last event ID buffer
	lastID     []byte // the last event ID, as of the last dispatch
	lastStr    string // lastID as a string, made when asked for
	strFresh   bool   // lastStr is lastID
	typStr     string // the last Type Next returned, reused while it repeats
	retry      time.Duration
	retrySet   bool
	blockRetry time.Duration // set by the event being read; -1 if none
	skipping   bool          // dropping an event too large, up to its end
	fix        []byte        // scratch for text with ill-formed UTF-8
}

// NewReader returns a Reader of the event stream src.
func NewReader(src io.Reader) *Reader {
	r := &Reader{blockRetry: -1}
	r.lines.src = src
	return r
}

// Reset makes r read a new stream from src, as an EventSource does when it
// reconnects: an event half read is dropped, and the last event ID and the
// reconnection time are kept, so events of the new stream that set no id
// carry the last one. Buffers are reused.
func (r *Reader) Reset(src io.Reader) {
	r.lines.reset(src, r.maxLine())
	r.data, r.typ = r.data[:0], r.typ[:0]
	r.id = append(r.id[:0], r.lastID...)
	r.blockRetry, r.skipping = -1, false
}

// LastEventID returns the stream's last event ID as of the last blank
// line: what a reconnecting browser sends as Last-Event-ID. An id-only
// frame ("id: 7", then a blank line) changes it without an event.
//
// The string is made when asked for, not at each event, so that NextRaw
// allocates nothing on a stream whose every event has a new id.
func (r *Reader) LastEventID() string {
	if !r.strFresh {
		r.lastStr, r.strFresh = string(r.lastID), true
	}
	return r.lastStr
}

// setLastEventID sets the last event ID, as a stream's id would.
func (r *Reader) setLastEventID(id string) {
	r.lastID, r.lastStr, r.strFresh = append(r.lastID[:0], id...), id, true
}

// Retry returns the reconnection time the stream last set with a valid
// retry field, and false if it set none.
func (r *Reader) Retry() (time.Duration, bool) { return r.retry, r.retrySet }

// Next returns the next event. At the end of the stream it returns io.EOF,
// or the error that ended it. Type repeats share one string and ID is the
// stream's string, so an event usually costs one allocation, for Data.
func (r *Reader) Next() (Event, error) {
	raw, err := r.NextRaw()
	if err != nil {
		return Event{}, err
	}
	if string(raw.Type) != r.typStr {
		r.typStr = string(raw.Type)
	}
	return Event{Type: r.typStr, Data: string(raw.Data), ID: r.LastEventID(), Retry: raw.Retry}, nil
}

// NextRaw is Next without allocating: the event it returns is valid only
// until the next call.
func (r *Reader) NextRaw() (RawEvent, error) {
	if !r.begun {
		r.begun = true
		r.lines.max = r.maxLine()
	}
	for {
		line, err := r.lines.next()
		switch {
		case err == ErrLineTooLong:
			r.skip()
			return RawEvent{}, err
		case err != nil:
			return RawEvent{}, err
		case len(line) == 0:
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
		case r.skipping:
		case r.field(line) != nil:
			r.skip()
			return RawEvent{}, ErrEventTooLarge
		}
	}
}

func (r *Reader) maxLine() int {
	if r.MaxEventSize <= 0 {
		return DefaultMaxEventSize + fieldRoom
	}
	return r.MaxEventSize + fieldRoom
}

func (r *Reader) maxEvent() int { return r.lines.max - fieldRoom }

// field interprets one line that is not blank.
func (r *Reader) field(line []byte) error {
	if line[0] == ':' {
		if r.OnComment != nil {
			r.OnComment(string(r.text(line[1:])))
		}
		return nil
	}
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		v := r.text(value)
		if len(r.data)+len(v) > r.maxEvent() {
			return ErrEventTooLarge
		}
		r.data = append(append(r.data, v...), '\n')
	case "event":
		r.typ = append(r.typ[:0], r.text(value)...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.id = append(r.id[:0], r.text(value)...)
		}
	case "retry":
		if d, ok := parseRetry(value); ok {
			r.retry, r.retrySet, r.blockRetry = d, true, d
		}
	}
	return nil
}

// text returns value decoded as a browser decodes it, in scratch space
// when it holds ill-formed UTF-8.
func (r *Reader) text(value []byte) []byte {
	if utf8.Valid(value) {
		return value
	}
	r.fix = appendUTF8(r.fix[:0], value)
	return r.fix
}

// dispatch ends an event at a blank line. The last event ID is taken even
// when there is no data, and the buffers are emptied either way.
func (r *Reader) dispatch() (RawEvent, bool) {
	retry := r.blockRetry
	r.blockRetry = -1
	if r.skipping {
		r.skipping = false
		return RawEvent{}, false
	}
	if !bytes.Equal(r.id, r.lastID) {
		r.lastID, r.strFresh = append(r.lastID[:0], r.id...), false
		if r.OnLastEventID != nil {
			r.OnLastEventID(r.LastEventID())
		}
	}
	if len(r.data) == 0 {
		r.typ = r.typ[:0]
		return RawEvent{}, false
	}
	ev := RawEvent{Type: r.typ, Data: r.data[:len(r.data)-1], ID: r.id, Retry: retry}
	if len(ev.Type) == 0 {
		ev.Type = messageType
	}
	r.data, r.typ = r.data[:0], r.typ[:0]
	return ev, true
}

// skip drops the event being read, its id included, and ignores the rest
// of it up to its blank line.
func (r *Reader) skip() {
	r.skipping = true
	r.data, r.typ = r.data[:0], r.typ[:0]
	r.id = append(r.id[:0], r.lastID...)
}

// maxRetryMillis keeps a retry value within time.Duration.
const maxRetryMillis = math.MaxInt64 / int64(time.Millisecond)

// parseRetry reads a retry field's value: milliseconds as ASCII digits
// only, anything else ignored. Values too large for a Duration saturate.
func parseRetry(v []byte) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var ms int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = min(ms*10+int64(c-'0'), maxRetryMillis)
	}
	return time.Duration(ms) * time.Millisecond, true
}

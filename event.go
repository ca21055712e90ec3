package ginsse

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// event is one server-sent event before it is framed.
type event struct {
	typ   string // "event" field; empty means the browser's default "message"
	id    string // "id" field; empty sends none
	retry int64  // "retry" field in milliseconds; negative sends none
	data  string
	at    int64 // when the publisher sent it, Unix ms, from the message's "t"; 0 when unknown
}

// validate refuses field values that would break out of their line on the
// wire: the spec ends a field at CR or LF, and a NUL makes browsers ignore
// an id.
func (e *event) validate() error {
	if strings.ContainsAny(e.typ, "\r\n") {
		return fmt.Errorf("%w: event type %q contains a line break", ErrInvalidEvent, e.typ)
	}
	if strings.ContainsAny(e.id, "\r\n\x00") {
		return fmt.Errorf("%w: id %q contains a line break or NUL", ErrInvalidEvent, e.id)
	}
	return nil
}

// retryMillis converts a Retry duration to the wire's milliseconds.
func retryMillis(d time.Duration) (int64, error) {
	if d < 0 {
		return 0, fmt.Errorf("%w: retry %v is negative", ErrInvalidEvent, d)
	}
	return d.Milliseconds(), nil
}

// appendFrame appends e as one event-stream frame, in the format of the
// WHATWG HTML standard (section 9.2, server-sent events):
//
//	event: <type>
//	id: <id>
//	retry: <milliseconds>
//	data: <line>      one per line of data
//	                  a blank line ends the event
//
// Data is split on CRLF, LF and CR, the only line ends the spec knows, so
// other Unicode separators pass through unchanged. Every line of data gets
// its own "data:" field: an empty string still dispatches an event with
// empty data, and a trailing line break survives as an empty last line.
// The caller has validated e.
func appendFrame(b []byte, e *event) []byte {
	b, _, _ = appendFrameID(b, e)
	return b
}

// appendFrameID is appendFrame that also reports where the id line is,
// b[at:end] (empty when e has no id), so a stream can write its own id.
func appendFrameID(b []byte, e *event) (_ []byte, at, end int) {
	if e.typ != "" {
		b = append(b, "event: "...)
		b = append(b, e.typ...)
		b = append(b, '\n')
	}
	at = len(b)
	if e.id != "" {
		b = appendIDLine(b, e.id)
	}
	end = len(b)
	if e.retry >= 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, e.retry, 10)
		b = append(b, '\n')
	}
	data := e.data
	for {
		i := strings.IndexAny(data, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n'), at, end
}

func appendIDLine(b []byte, id string) []byte {
	b = append(b, "id: "...)
	b = append(b, id...)
	return append(b, '\n')
}

// Comments keep a connection alive without dispatching anything.
var (
	helloFrame     = []byte(": ok\n\n")
	heartbeatFrame = []byte(": heartbeat\n\n")
)

// disconnectFrame tells the page that Disconnect ended its stream with
// NoReconnect. It carries no id, so the browser keeps its Last-Event-ID.
var disconnectFrame = []byte("event: " + disconnectEvent + "\ndata: {\"reason\":\"revoked\"}\n\n")

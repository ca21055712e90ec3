package sseclient

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// Errors that callers may branch on with errors.Is.
var (
	// ErrInvalidOptions marks a URL or Options that cannot work; New
	// returns it with a message naming the field.
	ErrInvalidOptions = errors.New("sseclient: invalid options")

	// ErrStatus marks an answer with a status other than 200 (204
	// included): a browser's EventSource gives up on it, and so does a
	// Client unless Options.KeepRetrying is set. The *ResponseError holds
	// the status.
	ErrStatus = errors.New("sseclient: unexpected status")

	// ErrContentType marks a 200 answer whose Content-Type is not
	// text/event-stream. The *ResponseError holds the content type.
	ErrContentType = errors.New("sseclient: not an event stream")

	// ErrEventTooLarge marks an event whose data exceeds MaxEventSize.
	ErrEventTooLarge = errors.New("sseclient: event too large")

	// ErrLineTooLong marks a line longer than MaxEventSize plus room for
	// its field name.
	ErrLineTooLong = errors.New("sseclient: line too long")

	// ErrEnded is what Err and Options.OnState report while a Client
	// reconnects because the server ended the stream. It is never
	// yielded.
	ErrEnded = errors.New("sseclient: the server ended the stream")

	// ErrIdle is what Err and Options.OnState report while a Client
	// reconnects because an open stream sent nothing for
	// Options.IdleTimeout. It is never yielded.
	ErrIdle = errors.New("sseclient: the stream sent nothing within IdleTimeout")

	// ErrDisconnected is yielded after a ginsse-disconnect event: the
	// server ended the stream with ginsse.NoReconnect and asks the client
	// not to come back, as a page closes its EventSource.
	ErrDisconnected = errors.New("sseclient: the server asked the client not to reconnect")

	// ErrBusy is yielded by Events while another loop over the same
	// Client is running.
	ErrBusy = errors.New("sseclient: Events is already running")
)

// ResponseError is an answer that is not an event stream: a status other
// than 200, or a Content-Type other than text/event-stream. errors.Is
// matches it with ErrStatus or ErrContentType.
type ResponseError struct {
	StatusCode  int    // the answer's status
	ContentType string // the answer's Content-Type header, as sent

	// Body is the start of the answer's body, at most 4 KiB: often the
	// reason, such as ginsse's JSON {"error": "..."} for a bad channel.
	Body string
}

// errorBodyShown is how much of Body an error message quotes.
const errorBodyShown = 200

// Error describes the answer, with the start of its body.
func (e *ResponseError) Error() string {
	var msg string
	if e.StatusCode != http.StatusOK {
		msg = fmt.Sprintf("%v: %d %s", ErrStatus, e.StatusCode, http.StatusText(e.StatusCode))
	} else {
		msg = fmt.Sprintf("%v: Content-Type %q", ErrContentType, e.ContentType)
	}
	if body := printable(e.Body, errorBodyShown); body != "" {
		msg += ": " + body
	}
	return msg
}

// printable is the start of s, up to n bytes, on one line: spaces for
// control characters, so a body cannot forge lines in a log.
func printable(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

// Unwrap returns ErrStatus or ErrContentType.
func (e *ResponseError) Unwrap() error {
	if e.StatusCode != http.StatusOK {
		return ErrStatus
	}
	return ErrContentType
}

package sseclient

import (
	"fmt"
	"net/http"
	"time"
)

// Defaults of Options.
const (
	// DefaultRetry is the reconnection time before the server sets one,
	// as in browsers.
	DefaultRetry = 3 * time.Second

	// DefaultMaxBackoff bounds the wait between two attempts.
	DefaultMaxBackoff = 30 * time.Second
)

// Options configure a Client. The zero value is usable: every field's
// zero value means its default.
type Options struct {
	// HTTPClient sends the requests. Nil means http.DefaultClient. Its
	// Timeout must be zero, since it would cut every stream at that age;
	// bound connecting with the Transport's dial and TLS timeouts instead.
	HTTPClient *http.Client

	// Header is sent with every request: credentials such as
	// Authorization or Cookie. Accept defaults to text/event-stream; the
	// Client sets Cache-Control and Last-Event-ID itself.
	Header http.Header

	// LastEventID is sent as Last-Event-ID with the first request, to
	// resume where an earlier client left off. Empty, the default,
	// starts afresh. It must be a valid header value: no control
	// characters but tab.
	LastEventID string

	// Retry is the reconnection time until the server sets one with a
	// retry field. Default 3s (DefaultRetry); negative is invalid.
	Retry time.Duration

	// MaxBackoff bounds every wait between two attempts, the server's
	// retry hint included. Default 30s (DefaultMaxBackoff), or Retry
	// when that is longer; it must not be below Retry.
	MaxBackoff time.Duration

	// MaxEventSize bounds the data of one event, in bytes, and each line
	// to that plus 8. Default 1 MiB (DefaultMaxEventSize); negative is
	// invalid.
	MaxEventSize int

	// IdleTimeout, when set, bounds how long an open stream may send
	// nothing at all: no event, no comment, no heartbeat. The time the
	// loop's body takes with an event does not count. Past it the
	// Client drops the connection and reconnects, as after a network
	// error (Err reports ErrIdle), so a connection that died without a
	// word (a vanished host, a NAT that forgot it) does not hold the
	// Client forever. Browsers have no such bound; zero, the default,
	// means none. Set it a few times the server's heartbeat interval:
	// ginsse's default of 15s suggests 45s. The wait for the answer's
	// headers is the Transport's ResponseHeaderTimeout.
	IdleTimeout time.Duration

	// KeepRetrying makes the Client retry, with backoff, after answers a
	// browser gives up on: a status other than 200 (204 included) and a
	// Content-Type other than text/event-stream. Off by default; turn it
	// on for services that must not stop while the server is down or
	// misrouted.
	KeepRetrying bool

	// OnState, when set, is called on every change of the Client's
	// state, from the goroutine running Events, before the loop goes on:
	// for logging and metrics. It must not call Events.
	OnState func(StateChange)
}

// withDefaults returns o with zero values replaced by defaults, or an
// error naming the field that cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Retry == 0 {
		o.Retry = DefaultRetry
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.Retry)
	}
	if o.MaxEventSize == 0 {
		o.MaxEventSize = DefaultMaxEventSize
	}
	switch {
	case o.HTTPClient.Timeout != 0:
		return o, fmt.Errorf("%w: HTTPClient.Timeout is %v, and would cut every stream", ErrInvalidOptions, o.HTTPClient.Timeout)
	case o.Retry < 0:
		return o, fmt.Errorf("%w: Retry is negative", ErrInvalidOptions)
	case o.MaxBackoff < o.Retry:
		return o, fmt.Errorf("%w: MaxBackoff %v is below Retry %v", ErrInvalidOptions, o.MaxBackoff, o.Retry)
	case o.MaxEventSize < 0:
		return o, fmt.Errorf("%w: MaxEventSize is negative", ErrInvalidOptions)
	case o.IdleTimeout < 0:
		return o, fmt.Errorf("%w: IdleTimeout is negative", ErrInvalidOptions)
	case !headerSafe(o.LastEventID):
		return o, fmt.Errorf("%w: LastEventID %q holds a character no header can carry", ErrInvalidOptions, o.LastEventID)
	}
	return o, nil
}

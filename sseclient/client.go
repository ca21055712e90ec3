package sseclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// A Client reads one event stream the way a browser's EventSource does:
// it connects, yields events, and reconnects after network errors and
// stream ends, sending the last event ID so the server can resume.
//
// State, Err and LastEventID are safe to call from any goroutine while
// Events runs. One loop over Events runs at a time.
type Client struct {
	url    string
	opts   Options
	jitter func(int64) int64

	running atomic.Bool
	reader  *Reader // used only by the running loop

	mu     sync.Mutex
	state  State
	err    error
	lastID string
}

// New returns a Client of the event stream at rawURL, an http or https
// URL. It connects only when Events runs. Invalid options return an error
// wrapping ErrInvalidOptions that names the field.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q is not http or https", ErrInvalidOptions, rawURL)
	}
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
	}
	c := &Client{url: rawURL, opts: opts, jitter: rand.Int64N, lastID: opts.LastEventID}
	c.reader = NewReader(nil)
	c.reader.MaxEventSize = opts.MaxEventSize
	c.reader.setLastEventID(opts.LastEventID)
	c.reader.OnLastEventID = c.setLastID
	return c, nil
}

// LastEventID returns the stream's last event ID: what the next reconnect
// sends as Last-Event-ID. An ID that no HTTP header can carry (one with a
// control character other than tab, which net/http refuses to send) is
// not sent, so the server starts afresh instead of the Client failing
// every attempt.
func (c *Client) LastEventID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastID
}

func (c *Client) setLastID(id string) {
	c.mu.Lock()
	c.lastID = id
	c.mu.Unlock()
}

// errBreak says the loop's body broke out of it.
var errBreak = errors.New("sseclient: loop ended by its body")

// Events returns the stream's events as an iterator. The Client connects
// when the loop starts and, from then on, reconnects by itself as a
// browser does: after a network error or the end of a stream it waits the
// reconnection time (the server's retry field, else Options.Retry),
// doubled for each attempt in a row that fails, and sends Last-Event-ID
// when the last event ID is not empty.
//
// The error is nil with every event. A non-nil error comes once, as the
// last value, and says why the Client stopped for good:
//
//   - ctx.Err(), when ctx ends (also while waiting to reconnect);
//   - a *ResponseError (ErrStatus, ErrContentType) when the server
//     answers what a browser gives up on, unless Options.KeepRetrying;
//   - ErrEventTooLarge or ErrLineTooLong, for an event over the limit;
//   - ErrDisconnected, after a ginsse-disconnect event, which is yielded
//     first;
//   - ErrBusy, when another loop over c is running.
//
// What the Client recovers from is not yielded: Options.OnState and Err
// report it. So a loop ends after an error, or when its body breaks out;
// either way the connection is closed, and no goroutine is left behind,
// by the time the loop statement returns. Events may run again after
// that, resuming from LastEventID.
func (c *Client) Events(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if !c.running.CompareAndSwap(false, true) {
			yield(Event{}, ErrBusy)
			return
		}
		defer c.running.Store(false)
		if err := c.run(ctx, yield); err != nil {
			yield(Event{}, err)
		}
	}
}

// run connects and reconnects until ctx ends, the body breaks out, or an
// answer or event ends the loop; it returns why, nil after a break.
func (c *Client) run(ctx context.Context, yield func(Event, error) bool) error {
	c.setState(StateChange{State: Connecting})
	failures := 0
	for {
		opened, err := c.attempt(ctx, yield)
		switch {
		case errors.Is(err, errBreak):
			c.setState(StateChange{State: Closed})
			return nil
		case ctx.Err() != nil:
			err = ctx.Err()
		case c.recoverable(err):
			if opened {
				failures = 0
			} else {
				failures++
			}
			retry, ok := c.reader.Retry()
			if !ok {
				retry = c.opts.Retry
			}
			d := backoff(retry, c.opts.MaxBackoff, failures, c.jitter)
			c.setState(StateChange{State: Reconnecting, Err: err, Delay: d})
			if sleep(ctx, d) {
				continue
			}
			err = ctx.Err()
		}
		c.setState(StateChange{State: Closed, Err: err})
		return err
	}
}

// recoverable reports whether the Client tries again after err.
func (c *Client) recoverable(err error) bool {
	switch {
	case errors.Is(err, ErrEventTooLarge), errors.Is(err, ErrLineTooLong), errors.Is(err, ErrDisconnected):
		return false
	case errors.Is(err, ErrStatus), errors.Is(err, ErrContentType):
		return c.opts.KeepRetrying
	}
	return true
}

// attempt makes one request and reads its stream to the end. It reports
// whether a stream opened, and why it ended (ErrEnded when the server
// ended it).
func (c *Client) attempt(ctx context.Context, yield func(Event, error) bool) (opened bool, err error) {
	// Cancelling the request on the way out unblocks the body's reads and
	// ends the transport's work for this request.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.request(ctx)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if err := accept(resp); err != nil {
		return false, err
	}
	c.setState(StateChange{State: Open})
	body, idle := c.watch(resp.Body, cancel)
	defer idle.stop()
	c.reader.Reset(body)
	for {
		ev, err := c.reader.Next()
		switch {
		case err == nil:
		case idle.fired():
			return true, ErrIdle
		case err == io.EOF:
			return true, ErrEnded
		default:
			return true, err
		}
		idle.pause() // the loop's body taking its time is not the stream's silence
		more := yield(ev, nil)
		idle.resume()
		if !more {
			return true, errBreak
		}
		if ev.Type == DisconnectType {
			return true, ErrDisconnected
		}
	}
}

// request sends the GET that opens a stream, as an EventSource sends it.
func (c *Client) request(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	if c.opts.Header != nil {
		req.Header = c.opts.Header.Clone()
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Del("Last-Event-ID")
	if id := c.reader.LastEventID(); id != "" && headerSafe(id) {
		req.Header.Set("Last-Event-ID", id)
	}
	return c.opts.HTTPClient.Do(req)
}

// headerSafe reports whether s can be sent as a header value: net/http
// refuses control characters other than tab.
func headerSafe(s string) bool {
	for i := range len(s) {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// drainLimit is how much of a refused answer's body is read, so its
// connection can serve the next attempt.
const drainLimit = 4 << 10

// accept checks that resp is an event stream: status 200 and a
// Content-Type of text/event-stream, with or without parameters.
func accept(resp *http.Response) error {
	ct := resp.Header.Get("Content-Type")
	essence, _, _ := strings.Cut(ct, ";")
	if resp.StatusCode == http.StatusOK && strings.EqualFold(strings.TrimSpace(essence), "text/event-stream") {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, drainLimit))
	return &ResponseError{StatusCode: resp.StatusCode, ContentType: ct, Body: string(body)}
}

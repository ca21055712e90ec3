// Package sseclient reads HTML5 server-sent event streams from Go: a
// Client that behaves like a browser's EventSource, and a Reader that
// parses a stream on its own. It works with any server of
// text/event-stream, ginsse's or another, over HTTP/1.1 and HTTP/2, and
// needs only the standard library.
//
// # Reading a stream
//
// New takes the stream's URL and Options; Events is an iterator over the
// events, which connects when the loop starts and reconnects by itself:
//
//	c, err := sseclient.New("https://example.com/stream?channel=news", sseclient.Options{})
//	if err != nil {
//		return err // a bad URL or option
//	}
//	for ev, err := range c.Events(ctx) {
//		if err != nil {
//			return err // the Client stopped for good: see below
//		}
//		fmt.Println(ev.Type, ev.ID, ev.Data)
//	}
//
// Each Event has the Type ("message" unless the server named one), the
// Data, the ID (the stream's last event ID, as lastEventId in a browser)
// and the Retry the event set. The loop ends only when its body breaks out
// or after an error, which is always the last value: ctx ending, an answer
// that is not a stream (ErrStatus, ErrContentType), or an event larger
// than Options.MaxEventSize (ErrEventTooLarge). Network errors and streams
// that end are not yielded; the Client reconnects after them.
//
// # Reconnecting
//
// As a browser does, a Client waits the reconnection time before it
// reconnects: the server's retry field, else Options.Retry (3s). Each
// attempt in a row that fails doubles the wait, with up to a quarter added
// at random, within Options.MaxBackoff (30s). Each reconnect sends the
// last event ID as Last-Event-ID, so a server with history (ginsse with
// Options.History) resumes the stream with nothing lost or repeated.
//
// An answer other than 200, or a Content-Type other than
// text/event-stream, stops the Client for good, as it stops a browser;
// Options.KeepRetrying retries after those too. State, Err and
// Options.OnState show where the Client is: Connecting, Open,
// Reconnecting (and why), Closed (and why). A connection that dies
// without a word holds a browser forever; Options.IdleTimeout drops a
// stream that sent nothing, not even a heartbeat, for that long, and
// reconnects.
//
// # ginsse gaps
//
// A ginsse server that cannot replay everything a resuming client missed
// sends a ginsse-gap event first. Event.IsGap recognises it, and
// Event.GapChannels names the channels whose state the application should
// fetch afresh.
//
// A server that disconnects a client for good — revoked access — sends a
// ginsse-disconnect event; the Client yields it and stops with
// ErrDisconnected rather than reconnecting, as a page should close its
// EventSource.
//
// # Parsing alone
//
// A Reader parses any io.Reader as an event stream, exactly as the WHATWG
// HTML standard's event stream interpretation says, in bounded memory.
// Reader.NextRaw returns events as views into its buffers, allocating
// nothing, for load generators and tests that read many streams.
//
// # Goroutines
//
// A Client runs no goroutine of its own: Events works in the goroutine
// that ranges over it, and cancelling ctx or breaking out of the loop
// closes the connection before the loop statement returns. (With
// Options.IdleTimeout, a runtime timer looks at the stream now and then;
// it is stopped when the connection ends.) A Client's
// State, Err and LastEventID are safe for concurrent use; one loop over
// Events runs at a time. A Reader is not safe for concurrent use. Event,
// State and StateChange are plain values.
package sseclient

package sseclient

import (
	"encoding/json"
	"time"
)

// GapType is the type of the event a ginsse server sends when a resumed
// stream cannot replay everything the client missed. Its data names the
// channels with a gap, {"channels":["news"]}; the application should fetch
// their state afresh. The events that were still retained follow it.
const GapType = "ginsse-gap"

// DisconnectType is the type of the event a ginsse server sends before it
// ends a stream that the application disconnected for good
// (ginsse.NoReconnect). A Client yields it, then stops with
// ErrDisconnected instead of reconnecting.
const DisconnectType = "ginsse-disconnect"

// Event is one event as a browser's EventSource dispatches it. It is a
// plain value, safe to keep and to share between goroutines.
type Event struct {
	// Type is the value of the event's "event" field, or "message" when
	// it had none.
	Type string

	// Data is the event's data lines joined with LF, without a final LF.
	Data string

	// ID is the stream's last event ID when the event was dispatched: the
	// event's own id field, or the last one the stream sent before it, as
	// MessageEvent.lastEventId in a browser. It is what a reconnect sends
	// as Last-Event-ID.
	ID string

	// Retry is the reconnection time a retry field within the event set,
	// or -1 when the event had none. A Client applies it by itself.
	Retry time.Duration
}

// IsGap reports whether e is a ginsse-gap event.
func (e Event) IsGap() bool { return e.Type == GapType }

// GapChannels returns the channels a ginsse-gap event names. It reports
// false for any other event, and for a gap whose data is not the JSON
// object ginsse sends.
func (e Event) GapChannels() ([]string, bool) {
	if !e.IsGap() {
		return nil, false
	}
	var gap struct {
		Channels []string `json:"channels"`
	}
	if err := json.Unmarshal([]byte(e.Data), &gap); err != nil {
		return nil, false
	}
	return gap.Channels, true
}

// RawEvent is an event as views into a Reader's buffers, for callers that
// read many events and keep few: reading one allocates nothing. Its slices
// are valid until the next call to the Reader's Next or NextRaw, and must
// not be modified. The fields mean what Event's do.
type RawEvent struct {
	Type  []byte
	Data  []byte
	ID    []byte
	Retry time.Duration
}

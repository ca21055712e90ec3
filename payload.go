package ginsse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// payload is the JSON object Flask-SSE publishes on the Redis channel.
type payload struct {
	Data  json.RawMessage `json:"data"`
	Type  string          `json:"type,omitempty"`
	ID    string          `json:"id,omitempty"`
	Retry *int64          `json:"retry,omitempty"`
	// T is when the Sender published it, Unix ms, for the delivery lag;
	// only without History, whose positions carry Redis's time.
	T int64 `json:"t,omitempty"`
}

// encodePayload validates one Send call and returns the Redis message.
func encodePayload(typ string, data any, p *sendParams) ([]byte, error) {
	if err := validateChannel(p.channel); err != nil {
		return nil, err
	}
	e := event{typ: typ, id: p.id, retry: -1}
	if err := e.validate(); err != nil {
		return nil, err
	}
	msg := payload{Type: typ, ID: p.id, T: p.at}
	if p.retrySet {
		ms, err := retryMillis(p.retry)
		if err != nil {
			return nil, err
		}
		msg.Retry = &ms
	}
	var err error
	switch d := data.(type) {
	case string:
		msg.Data, err = json.Marshal(d)
	case []byte:
		msg.Data, err = json.Marshal(string(d))
	default:
		msg.Data, err = json.Marshal(d)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrInvalidEvent, err)
	}
	return json.Marshal(msg)
}

// decodePayload turns a Redis message into an event. It accepts what
// Flask-SSE and ginsse publish, in any key order, ignoring unknown keys.
// Anything else, or a payload whose fields would break the wire format,
// arrives as plain data so that no publisher can kill a stream.
func decodePayload(raw string) event {
	plain := event{data: raw, retry: -1}
	var m struct {
		Data  json.RawMessage `json:"data"`
		Type  *string         `json:"type"`
		ID    json.RawMessage `json:"id"`
		Retry *json.Number    `json:"retry"`
		T     json.RawMessage `json:"t"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal([]byte(raw), &m) != nil || m.Data == nil {
		return plain
	}
	// "t" is ours (Options.StampTime); from another publisher it may be
	// anything, which only leaves the event out of the delivery lag.
	at, _ := strconv.ParseInt(string(m.T), 10, 64)
	e := event{retry: -1, at: at}
	if m.Type != nil {
		e.typ = *m.Type
	}
	if m.ID != nil && string(m.ID) != "null" {
		var id string
		if json.Unmarshal(m.ID, &id) != nil {
			id = string(m.ID) // a number, as Python may send
		}
		e.id = id
	}
	if m.Retry != nil {
		ms, err := strconv.ParseInt(m.Retry.String(), 10, 64)
		if err != nil || ms < 0 {
			return plain
		}
		e.retry = ms
	}
	var str string
	if m.Data[0] == '"' && json.Unmarshal(m.Data, &str) == nil {
		e.data = str
	} else {
		e.data = string(bytes.TrimSpace(m.Data))
	}
	if e.validate() != nil {
		return plain
	}
	return e
}

// dispatch encodes one message from Redis and fans it out. With history
// on, an id that is not a history position is dropped: it would spoil the
// client's Last-Event-ID.
func (s *Sender) dispatch(channel, raw string) {
	e := decodePayload(raw)
	var pos position
	if s.opts.History > 0 && e.id != "" {
		var ok bool
		if pos, ok = livePosition(e.id, time.Now()); !ok {
			e.id = ""
		}
	}
	s.hub.publish(channel, newFrame(&e, pos))
}

// maxClockSkew bounds how far the time in a live event's position may be
// from this host's clock.
const maxClockSkew = 24 * time.Hour

// livePosition reads the id of an event just published as a history
// position. The publish script writes Redis's current time there; an id
// of the same shape from another publisher ("2024-06", or one far in the
// future) is not a position, and would otherwise move every stream's
// cursor and make it skip the events that follow.
func livePosition(id string, now time.Time) (position, bool) {
	pos, ok := parsePosition(id)
	if !ok {
		return position{}, false
	}
	ms := now.UnixMilli()
	skew := maxClockSkew.Milliseconds()
	if pos.ms > uint64(ms+skew) || int64(pos.ms) < ms-skew {
		return position{}, false
	}
	return pos, true
}

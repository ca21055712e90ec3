package ginsse

// Internals exposed to the black-box tests in package ginsse_test.

import (
	"strings"
	"time"
)

// EncodeFrame validates and encodes one event as Send and the stream would.
// retry < 0 sends no retry field.
func EncodeFrame(typ, id string, retry int64, data string) ([]byte, error) {
	e := event{typ: typ, id: id, retry: retry, data: data}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return appendFrame(nil, &e), nil
}

// DecodePayload decodes a Redis message as the subscription loop does.
func DecodePayload(raw string) (typ, id string, retry int64, data string) {
	e := decodePayload(raw)
	return e.typ, e.id, e.retry, e.data
}

// MaxRound is the most channels one opening or feed round takes.
const MaxRound = maxRound

// HeldStream is a stream on the hub without a client.
type HeldStream struct{ st *stream }

// OpenTogether opens one stream on each of names while the lock that
// orders SUBSCRIBE commands is held, so that every channel arrives while
// the first round runs, as a storm's channels do.
func OpenTogether(s *Sender, names []string) []HeldStream {
	held := make([]HeldStream, len(names))
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for i, name := range names {
		held[i].st = newStream()
		s.subscribe(held[i].st, []string{s.opts.Prefix + name})
	}
	return held
}

// Confirmed waits up to d for Redis to confirm the stream's channel.
func (h HeldStream) Confirmed(d time.Duration) bool {
	select {
	case <-h.st.members[0].t.ready:
		return true
	case <-time.After(d):
		return false
	}
}

// Data waits up to d for the first n frames of the stream's channel and
// returns their data lines.
func (h HeldStream) Data(d time.Duration, n int) ([]string, bool) {
	m := &h.st.members[0]
	deadline := time.After(d)
	var got []string
	for next := m.next; len(got) < n; {
		if f := m.t.win.at(next); f != nil {
			_, data, _ := strings.Cut(string(f.b[f.idEnd:]), "data: ")
			got = append(got, strings.TrimSpace(data))
			next++
			continue
		}
		select {
		case <-h.st.wake:
		case <-deadline:
			return got, false
		}
	}
	return got, true
}

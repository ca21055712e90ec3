package ginsse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// position is a place in a channel's history: the ID of a Redis Stream
// entry, milliseconds and sequence. The zero position is before every
// entry.
type position struct {
	ms, seq uint64
}

func (p position) less(q position) bool {
	return p.ms < q.ms || (p.ms == q.ms && p.seq < q.seq)
}

// String returns the position as Redis writes an entry ID.
func (p position) String() string {
	return string(p.append(nil))
}

func (p position) append(b []byte) []byte {
	b = strconv.AppendUint(b, p.ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, p.seq, 10)
}

// parsePosition reads a Redis Stream entry ID such as "1732491234567-0".
func parsePosition(s string) (position, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return position{}, false
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return position{}, false
	}
	return position{m, q}, true
}

// maxPositionLen is the longest text of one position.
const maxPositionLen = 41

// parseResume reads a Last-Event-ID given to a stream of n channels: one
// position per channel, in the stream's (sorted) channel order, separated
// by commas. A single "0" resumes every channel from its first retained
// event.
func parseResume(id string, n int) ([]position, error) {
	if len(id) > n*(maxPositionLen+1) {
		return nil, fmt.Errorf("%w: %d bytes is too long for %d channel(s)", ErrInvalidLastEventID, len(id), n)
	}
	pos := make([]position, n)
	if id == "0" {
		return pos, nil
	}
	parts := strings.Split(id, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("%w: %q holds %d position(s) for %d channel(s)", ErrInvalidLastEventID, truncate(id, 60), len(parts), n)
	}
	for i, p := range parts {
		var ok bool
		if pos[i], ok = parsePosition(p); !ok {
			return nil, fmt.Errorf("%w: %q is not a history position", ErrInvalidLastEventID, truncate(p, 60))
		}
	}
	return pos, nil
}

// appendResume appends the Last-Event-ID text for positions.
func appendResume(b []byte, pos []position) []byte {
	for i, p := range pos {
		if i > 0 {
			b = append(b, ',')
		}
		b = p.append(b)
	}
	return b
}

// historyKey names the Redis Stream that keeps a Redis channel's history.
// The hash tag puts it in the channel's own cluster slot, so the publish
// script touches one slot.
func historyKey(redisChannel string) string {
	return "{" + redisChannel + "}:history"
}

// publishScript appends one event to its channel's history and publishes
// it with the entry's ID, atomically and in one round trip. ARGV[1] is the
// payload without an id; the published copy gains "id".
var publishScript = redis.NewScript(`
local age = tonumber(ARGV[4])
if age > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XTRIM', KEYS[1], 'MINID', now - age)
  redis.call('PEXPIRE', KEYS[1], age)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'p', ARGV[1])
redis.call(ARGV[5], ARGV[2], string.sub(ARGV[1], 1, -2) .. ',"id":"' .. id .. '"}')
return id
`)

// historyArgs are publishScript's arguments for one event.
func (s *Sender) historyArgs(channel string, payload []byte) []any {
	cmd := "PUBLISH"
	if s.opts.Sharded {
		cmd = "SPUBLISH"
	}
	return []any{payload, channel, s.opts.History, s.opts.HistoryAge.Milliseconds(), cmd}
}

// replayPage is how many history entries one round trip reads.
const replayPage = 256

// tails returns the newest history position of every channel: where a
// stream that resumes nothing starts.
func (s *Sender) tails(ctx context.Context, names []string) ([]position, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.XRevRangeN(ctx, historyKey(name), "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	pos := make([]position, len(names))
	for i, c := range cmds {
		if msgs := c.Val(); len(msgs) > 0 {
			pos[i], _ = parsePosition(msgs[0].ID)
		}
	}
	return pos, nil
}

// redisEntry is one event read back from a history, or a marker that
// more entries follow the page.
type redisEntry struct {
	pos  position
	e    event
	more bool
}

// historyPage reads up to replayPage entries of a channel after pos, or
// from pos itself when inclusive, and reports whether the page is full.
func (s *Sender) historyPage(ctx context.Context, name string, pos position, inclusive bool) ([]redisEntry, bool, error) {
	start := "-"
	if pos != (position{}) {
		start = pos.String()
		if !inclusive {
			start = "(" + start
		}
	}
	var msgs []redis.XMessage
	var err error
	// A cluster moving the slot, or a failover, fails a read for a moment.
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-time.After(time.Duration(try) * 100 * time.Millisecond):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		msgs, err = s.client.XRangeN(rctx, historyKey(name), start, "+", replayPage).Result()
		cancel()
		if err == nil || errors.Is(err, redis.Nil) {
			break
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("%w: read history of %q: %w", ErrUnavailable, name, err)
	}
	page := make([]redisEntry, 0, len(msgs))
	for _, m := range msgs {
		p, ok := parsePosition(m.ID)
		raw, isStr := m.Values["p"].(string)
		if !ok || !isStr {
			continue // not written by ginsse
		}
		e := decodePayload(raw)
		e.id = m.ID
		page = append(page, redisEntry{pos: p, e: e})
	}
	return page, len(msgs) == replayPage, nil
}

// gapEvent is sent before a replay that cannot cover everything the client
// missed, so the application can fetch its state afresh.
const gapEvent = "ginsse-gap"

// resumeDeadline bounds the whole replay of one stream.
const resumeDeadline = 30 * time.Second

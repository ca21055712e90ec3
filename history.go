package ginsse

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

func (p position) compare(q position) int {
	switch {
	case p.less(q):
		return -1
	case q.less(p):
		return 1
	}
	return 0
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
// event. It reports false for an id it cannot read as that; the stream
// then sends a gap and the whole history. Only an id longer than any
// ginsse writes for up to most channels is an error.
func parseResume(id string, n, most int) ([]position, bool, error) {
	if len(id) > most*(maxPositionLen+1) {
		return nil, false, fmt.Errorf("%w: %d bytes is longer than any id of up to %d channels", ErrInvalidLastEventID, len(id), most)
	}
	pos := make([]position, n)
	if id == "0" {
		return pos, true, nil
	}
	parts := strings.Split(id, ",")
	if len(parts) != n {
		return pos, false, nil
	}
	for i, p := range parts {
		var ok bool
		if pos[i], ok = parsePosition(p); !ok {
			return make([]position, n), false, nil
		}
	}
	return pos, true, nil
}

// historyKey names the Redis Stream that keeps a Redis channel's history.
// The hash tag puts it in the channel's own cluster slot, so the publish
// script touches one slot.
func historyKey(redisChannel string) string {
	return "{" + redisChannel + "}:history"
}

// luaNow sets the local now to Redis's clock in milliseconds. Scripts
// take the time from Redis, not from the Sender that runs them, so that
// times written by Senders on different hosts compare.
const luaNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// publishScript appends one event to its channel's history and publishes
// it with the entry's ID, atomically and in one round trip. ARGV[1] is the
// payload without an id; the published copy gains "id".
var publishScript = redis.NewScript(publishSource)

const publishSource = `
local age = tonumber(ARGV[4])
if age > 0 then
` + luaNow + `
  redis.call('XTRIM', KEYS[1], 'MINID', now - age)
  redis.call('PEXPIRE', KEYS[1], age)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'p', ARGV[1])
redis.call(ARGV[5], ARGV[2], string.sub(ARGV[1], 1, -2) .. ',"id":"' .. id .. '"}')
return id
`

// historyCmd is the command that runs publishScript for one payload on
// channel, keeping keep entries for at most age: by the script's SHA, or
// whole when eval. go-redis never retries it (see noRetry).
func (s *Sender) historyCmd(ctx context.Context, eval bool, channel string, payload []byte, keep int, age time.Duration) redis.Cmder {
	name, body, pub := "evalsha", publishScript.Hash(), "PUBLISH"
	if eval {
		name, body = "eval", publishSource
	}
	if s.opts.Sharded {
		pub = "SPUBLISH"
	}
	cmd := redis.NewCmd(ctx, name, body, 1, historyKey(channel), payload, channel, keep, age.Milliseconds(), pub)
	cmd.SetFirstKeyPos(3)
	return noRetry{cmd}
}

// replayPage is how many history entries one round trip reads.
const replayPage = 256

// pageFrom reads up to replayPage entries of a channel's history after p,
// or from p itself when inclusive (zero p: from the first entry), and
// reports whether the page is full.
func (s *Sender) pageFrom(ctx context.Context, name string, p position, inclusive bool) ([]*frame, bool, error) {
	return s.page(pageCmd(ctx, s.client, name, p, inclusive), name)
}

// pageCmd runs or, on a pipeline, queues pageFrom's read.
func pageCmd(ctx context.Context, c redis.Cmdable, name string, p position, inclusive bool) *redis.XMessageSliceCmd {
	start := "-"
	if p != (position{}) {
		start = p.String()
		if !inclusive {
			start = "(" + start
		}
	}
	return c.XRangeN(ctx, historyKey(name), start, "+", replayPage)
}

// page takes the answer of a pageCmd.
func (s *Sender) page(cmd *redis.XMessageSliceCmd, name string) ([]*frame, bool, error) {
	msgs, err := s.entries(cmd, name)
	return entryFrames(msgs), len(msgs) == replayPage, err
}

// newestCmd queues on a pipeline the read of the n newest entries of a
// channel's history.
func newestCmd(ctx context.Context, c redis.Cmdable, name string, n int) *redis.XMessageSliceCmd {
	return c.XRevRangeN(ctx, historyKey(name), "+", "-", int64(n))
}

// newest takes the answer of a newestCmd: the entries oldest first, and
// whether they are all the history holds.
func (s *Sender) newest(cmd *redis.XMessageSliceCmd, name string, n int) ([]*frame, bool, error) {
	msgs, err := s.entries(cmd, name)
	slices.Reverse(msgs)
	return entryFrames(msgs), len(msgs) < n, err
}

// entries counts a history read and takes its answer.
func (s *Sender) entries(cmd *redis.XMessageSliceCmd, name string) ([]redis.XMessage, error) {
	s.historyReads.Add(1)
	msgs, err := cmd.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: read history of %q: %w", ErrUnavailable, name, err)
	}
	return msgs, nil
}

// entryFrames encodes history entries as frames whose id is their
// position. Entries ginsse did not write are skipped.
func entryFrames(msgs []redis.XMessage) []*frame {
	frames := make([]*frame, 0, len(msgs))
	for _, m := range msgs {
		p, ok := parsePosition(m.ID)
		raw, isStr := m.Values["p"].(string)
		if !ok || !isStr {
			continue
		}
		e := decodePayload(raw)
		e.id = m.ID
		frames = append(frames, newFrame(&e, p))
	}
	return frames
}

// persist runs op, each try bounded by Options.Timeout, until it succeeds.
// A history read never fails a stream: while Redis cannot answer, the
// stream waits with its heartbeats. persist reports false when t lost its
// last stream or the Sender closed first; it notices the first only
// after its current wait, up to a second.
func (s *Sender) persist(t *topic, op func(ctx context.Context) error) bool {
	backoff := firstBackoff
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		err := op(ctx)
		cancel()
		if err == nil {
			return true
		}
		if try == 0 {
			s.log.Warn("ginsse: history read failed; retrying", "channel", t.name, "err", err)
		}
		if !s.pause(&backoff, maxBackoff) || t.left.Load() {
			return false
		}
	}
}

// gapEvent is sent before a replay that cannot cover everything the client
// missed, so the application can fetch its state afresh.
const gapEvent = "ginsse-gap"

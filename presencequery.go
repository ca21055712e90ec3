package ginsse

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence is who has a stream on a channel, on every Sender sharing the
// Redis or the cluster.
type Presence struct {
	Channel string
	// Users are the Identity.User of the channel's streams, sorted, each
	// once however many streams and replicas it has.
	Users []string
	// Streams counts the channel's streams, anonymous ones included.
	Streams int
}

// Presence returns who is on channel across every Sender with
// Options.Presence on that shares the Redis: correct within about a
// second of a stream opening or closing, and without the Senders that
// gave no sign of life for Options.PresenceTTL (crashed, or cut off from
// Redis). It costs one round trip, whatever the number of streams. It
// returns an error wrapping ErrInvalidChannel for an invalid channel, and
// ErrUnavailable when Redis cannot answer within Options.Timeout.
//
// It is a Go API, not a route: serve it behind the same guard as the
// stream, so that a page sees only the presence of a channel it may read.
func (s *Sender) Presence(ctx context.Context, channel string) (Presence, error) {
	p := Presence{Channel: channel}
	users := map[string]bool{}
	err := s.readPresence(ctx, channel, func(r *rosterJSON) {
		p.Streams += r.Streams
		for u := range r.Users {
			users[u] = true
		}
	})
	if err != nil {
		return Presence{}, err
	}
	p.Users = make([]string, 0, len(users))
	for u := range users {
		p.Users = append(p.Users, u)
	}
	slices.Sort(p.Users)
	return p, nil
}

// PresenceStats returns the number of streams on channel and of distinct
// users among them, as Presence counts them, without the list.
func (s *Sender) PresenceStats(ctx context.Context, channel string) (streams, users int, err error) {
	seen := map[string]bool{}
	err = s.readPresence(ctx, channel, func(r *rosterJSON) {
		streams += r.Streams
		for u := range r.Users {
			seen[u] = true
		}
	})
	return streams, len(seen), err
}

// readPresence reads a channel's rosters and the Senders' signs of life in
// one pipeline, and hands each living Sender's roster to add. The rosters
// of Senders known to be silent for longer than the TTL are removed.
func (s *Sender) readPresence(ctx context.Context, channel string, add func(*rosterJSON)) error {
	if err := validateChannel(channel); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	key := presenceKey(s.opts.Prefix + channel)
	pipe := s.client.Pipeline()
	alive := pipe.ZRangeWithScores(ctx, presenceAlive(s.opts.Prefix), 0, -1)
	rosters := pipe.HGetAll(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("%w: presence of %q: %w", ErrUnavailable, channel, err)
	}
	since := float64(time.Now().Add(-s.opts.PresenceTTL).UnixMilli())
	seen := make(map[string]float64, len(alive.Val()))
	for _, z := range alive.Val() {
		if m, ok := z.Member.(string); ok {
			seen[m] = z.Score
		}
	}
	var dead []string
	for id, raw := range rosters.Val() {
		at, known := seen[id]
		switch {
		case known && at < since:
			dead = append(dead, id)
		case known:
			var r rosterJSON
			if json.Unmarshal([]byte(raw), &r) == nil {
				add(&r)
			}
		}
		// Unknown: a Sender whose sign of life Redis lost (it writes
		// it again within a third of the TTL), or one dead for a day.
	}
	if len(dead) > 0 {
		s.client.HDel(ctx, key, dead...) // best effort: the next query filters them too
	}
	return nil
}

// presenceAlive is the sorted set of the Senders' signs of life.
func presenceAlive(prefix string) string { return "{" + prefix + "ginsse/replicas}" }

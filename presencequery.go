package ginsse

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

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
// gave no sign of life for their Options.PresenceTTL (crashed, or cut off
// from Redis), timed by Redis's clock. It costs one round trip, whatever the number of streams. It
// returns an error wrapping ErrInvalidChannel for an invalid channel, and
// ErrUnavailable when Redis cannot answer within Options.Timeout.
//
// It is a Go API, not a route: serve it behind the same guard as the
// stream, so that a page sees only the presence of a channel it may read.
func (s *Sender) Presence(ctx context.Context, channel string) (Presence, error) {
	res, err := s.queryPresence(ctx, readScript, channel)
	if err != nil {
		return Presence{}, err
	}
	p := Presence{Channel: channel, Users: []string{}}
	rosters, _ := res.([]any)
	for _, raw := range rosters {
		var r rosterJSON
		if str, ok := raw.(string); !ok || json.Unmarshal([]byte(str), &r) != nil {
			continue
		}
		p.Streams += r.Streams
		for u := range r.Users {
			p.Users = append(p.Users, u)
		}
	}
	slices.Sort(p.Users)
	p.Users = slices.Compact(p.Users) // a user on several Senders
	return p, nil
}

// PresenceStats returns the number of streams on channel and of distinct
// users among them, as Presence counts them. Redis counts them, so only
// the two numbers travel, however many users the channel has.
func (s *Sender) PresenceStats(ctx context.Context, channel string) (streams, users int, err error) {
	res, err := s.queryPresence(ctx, statsScript, channel)
	if err != nil {
		return 0, 0, err
	}
	if n, _ := res.([]any); len(n) == 2 {
		st, _ := n[0].(int64)
		us, _ := n[1].(int64)
		return int(st), int(us), nil
	}
	return 0, 0, nil
}

// queryPresence runs a read-only presence script for channel.
func (s *Sender) queryPresence(ctx context.Context, sc *redis.Script, channel string) (any, error) {
	if err := validateChannel(channel); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	res, err := evalScript(ctx, s.client, sc, []string{presenceTag(s.opts.Prefix)}, s.opts.Prefix+channel)
	if err != nil {
		return nil, fmt.Errorf("%w: presence of %q: %w", ErrUnavailable, channel, err)
	}
	return res, nil
}

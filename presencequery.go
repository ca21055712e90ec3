package ginsse

import (
	"context"
	"encoding/json"
	"errors"
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

// readPresence reads the rosters of a channel kept by the Senders alive
// within the TTL, in one script run, and hands each to add.
func (s *Sender) readPresence(ctx context.Context, channel string, add func(*rosterJSON)) error {
	if err := validateChannel(channel); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	keys := []string{presenceTag(s.opts.Prefix)}
	since := time.Now().Add(-s.opts.PresenceTTL).UnixMilli()
	res, err := readScript.EvalSha(ctx, s.client, keys, s.opts.Prefix+channel, since).Result()
	if isNoScript(err) {
		res, err = readScript.Eval(ctx, s.client, keys, s.opts.Prefix+channel, since).Result()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: presence of %q: %w", ErrUnavailable, channel, err)
	}
	rosters, _ := res.([]any)
	for _, raw := range rosters {
		var r rosterJSON
		if str, ok := raw.(string); ok && json.Unmarshal([]byte(str), &r) == nil {
			add(&r)
		}
	}
	return nil
}

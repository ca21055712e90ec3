package ginsse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence is kept in Redis per channel and per replica: the hash
// {<channel>}:presence holds one field per Sender with streams on the
// channel, whose value is that Sender's roster of the channel, and the
// sorted set {<prefix>ginsse/replicas} holds each Sender's last sign of
// life. A query reads both and counts only the rosters of Senders alive
// within Options.PresenceTTL, so a Sender that crashes drops out within
// it.
//
// A Sender writes a channel's roster at most once per presenceFlush, only
// when it changed, all changed channels in one pipeline; it signs of life
// every third of the TTL. Nothing is written per stream or per event.
const (
	presenceFlush = time.Second
	// presenceKeep is how long a roster, and a Sender's sign of life,
	// outlive their last write: long after any TTL, so that a query can
	// tell a dead Sender's roster (known, silent) from a new one's
	// (unknown yet), and remove only the first.
	presenceKeep = 24 * time.Hour
)

func presenceKey(redisChannel string) string { return "{" + redisChannel + "}:presence" }

// roster is who is on one channel on this Sender: streams by user, and
// anonymous streams.
type roster struct {
	users map[string]int
	anon  int
}

// rosterJSON is a roster as Redis keeps it.
type rosterJSON struct {
	Streams int            `json:"s"`
	Users   map[string]int `json:"u,omitempty"`
}

// presence is this Sender's side of presence: its rosters, the channels
// whose roster changed since the last write, and the loop that writes
// them.
type presence struct {
	s     *Sender
	id    string // this Sender's name in Redis: random, new at each start
	alive string // the sorted set of Senders' signs of life
	mu    sync.Mutex
	chans map[string]*roster // by Redis channel
	dirty map[string]bool

	entries atomic.Int64 // users on channels here (a user on two channels counts twice)
	writes  atomic.Int64 // Redis commands written for presence
}

func newPresence(s *Sender) *presence {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &presence{
		s:     s,
		id:    hex.EncodeToString(b),
		alive: presenceAlive(s.opts.Prefix),
		chans: make(map[string]*roster),
		dirty: make(map[string]bool),
	}
}

// join counts a stream of user (empty: anonymous) on names.
func (p *presence) join(names []string, user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range names {
		r := p.chans[name]
		if r == nil {
			r = &roster{users: make(map[string]int)}
			p.chans[name] = r
		}
		if user == "" {
			r.anon++
		} else if r.users[user]++; r.users[user] == 1 {
			p.entries.Add(1)
		}
		p.dirty[name] = true
	}
}

// leave undoes join.
func (p *presence) leave(names []string, user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range names {
		r := p.chans[name]
		if r == nil {
			continue
		}
		if user == "" {
			r.anon--
		} else if r.users[user]--; r.users[user] == 0 {
			delete(r.users, user)
			p.entries.Add(-1)
		}
		if r.anon == 0 && len(r.users) == 0 {
			delete(p.chans, name)
		}
		p.dirty[name] = true
	}
}

// changes takes the rosters to write: the encoded roster of each changed
// channel, or nil for a channel this Sender no longer has.
func (p *presence) changes(all bool) map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if all {
		for name := range p.chans {
			p.dirty[name] = true
		}
	}
	out := make(map[string][]byte, len(p.dirty))
	for name := range p.dirty {
		var b []byte
		if r := p.chans[name]; r != nil {
			streams := r.anon
			for _, n := range r.users {
				streams += n
			}
			b, _ = json.Marshal(rosterJSON{Streams: streams, Users: r.users})
		}
		out[name] = b
	}
	clear(p.dirty)
	return out
}

// again marks channels whose write failed, to be written next time.
func (p *presence) again(names map[string][]byte) {
	p.mu.Lock()
	for name := range names {
		p.dirty[name] = true
	}
	p.mu.Unlock()
}

// run writes the changed rosters every presenceFlush, and a sign of life
// every third of the TTL, until Close; then it takes this Sender's
// rosters out of Redis.
func (p *presence) run() {
	t := time.NewTicker(presenceFlush)
	defer t.Stop()
	var lastBeat time.Time
	all := false // write every roster, not only the changed ones
	for {
		select {
		case <-p.s.quit:
			p.withdraw()
			return
		case <-t.C:
		}
		if since := time.Since(lastBeat); since >= p.s.opts.PresenceTTL/3 {
			lost, err := p.signOfLife(!lastBeat.IsZero())
			if err != nil {
				continue // the rosters wait for Redis
			}
			// Silent for about the TTL (by another Sender's clock), its
			// rosters may have been removed as a dead Sender's: it writes
			// them all again.
			all = all || lost || (!lastBeat.IsZero() && since > p.s.opts.PresenceTTL/2)
			lastBeat = time.Now()
		}
		changed := p.changes(all)
		all = false
		if err := p.write(changed); err != nil {
			p.again(changed)
			p.s.log.Warn("ginsse: presence write failed; retrying", "channels", len(changed), "err", err)
		}
	}
}

// signOfLife writes this Sender's sign of life, and reports whether Redis
// had lost the one before (a restart without persistence): the rosters
// must then be written again.
func (p *presence) signOfLife(known bool) (lost bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	now := time.Now()
	pipe := p.s.client.Pipeline()
	added := pipe.ZAdd(ctx, p.alive, redis.Z{Score: float64(now.UnixMilli()), Member: p.id})
	pipe.ZRemRangeByScore(ctx, p.alive, "-inf", strconv.FormatInt(now.Add(-presenceKeep).UnixMilli(), 10))
	pipe.PExpire(ctx, p.alive, presenceKeep)
	_, err = pipe.Exec(ctx)
	p.writes.Add(3)
	return known && added.Val() == 1, err
}

// write sends the changed rosters in one pipeline.
func (p *presence) write(changed map[string][]byte) error {
	if len(changed) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	pipe := p.s.client.Pipeline()
	for name, b := range changed {
		key := presenceKey(name)
		if b == nil {
			pipe.HDel(ctx, key, p.id)
			p.writes.Add(1)
			continue
		}
		pipe.HSet(ctx, key, p.id, b)
		pipe.PExpire(ctx, key, presenceKeep)
		p.writes.Add(2)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// withdraw takes this Sender's rosters and sign of life out of Redis as
// it closes, so they go at once rather than after the TTL.
func (p *presence) withdraw() {
	p.mu.Lock()
	names := make([]string, 0, len(p.chans))
	for name := range p.chans {
		names = append(names, name)
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	pipe := p.s.client.Pipeline()
	for _, name := range names {
		pipe.HDel(ctx, presenceKey(name), p.id)
	}
	pipe.ZRem(ctx, p.alive, p.id)
	_, _ = pipe.Exec(ctx)
	p.writes.Add(int64(len(names) + 1))
}

package ginsse

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
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
		out[name] = p.encode(name)
	}
	clear(p.dirty)
	return out
}

// encode is this Sender's roster of a channel as Redis keeps it; nil when
// it has none. The caller holds mu.
func (p *presence) encode(name string) []byte {
	r := p.chans[name]
	if r == nil {
		return nil
	}
	streams := r.anon
	for _, n := range r.users {
		streams += n
	}
	b, _ := json.Marshal(rosterJSON{Streams: streams, Users: r.users})
	return b
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
// rosters out of Redis. With join and leave on, it also runs the channels
// whose leaves are due.
func (p *presence) run() {
	t := time.NewTicker(presenceFlush)
	defer t.Stop()
	var lastBeat time.Time
	var live []string // the Senders alive at the last sign of life
	all := false      // write every roster, not only the changed ones
	for {
		select {
		case <-p.s.quit:
			p.withdraw()
			return
		case <-t.C:
		}
		if since := time.Since(lastBeat); since >= p.s.opts.PresenceTTL/3 {
			lost, now, err := p.signOfLife(!lastBeat.IsZero())
			if err != nil {
				continue // the rosters wait for Redis
			}
			// Silent for about the TTL (by another Sender's clock), its
			// rosters may have been removed as a dead Sender's: it writes
			// them all again. A Sender that died leaves its users to be
			// marked gone by the others' next writes.
			all = all || lost || (!lastBeat.IsZero() && since > p.s.opts.PresenceTTL/2) ||
				(p.s.opts.JoinLeave && !subset(live, now))
			lastBeat, live = time.Now(), now
		}
		changed := p.changes(all)
		all = false
		if p.s.opts.JoinLeave {
			ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
			p.addDue(changed, p.dueLeaves(ctx))
			cancel()
		}
		if failed := p.write(changed, live); len(failed) > 0 {
			p.again(failed)
		}
	}
}

// subset reports whether every Sender of old is in now.
func subset(old, now []string) bool {
	for _, id := range old {
		if !slices.Contains(now, id) {
			return false
		}
	}
	return true
}

// addDue adds to changed the channels whose leaves are due, with this
// Sender's roster of each (none: nil).
func (p *presence) addDue(changed map[string][]byte, due []string) {
	if len(due) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range due {
		if _, ok := changed[name]; !ok {
			changed[name] = p.encode(name)
		}
	}
}

// signOfLife writes this Sender's sign of life and returns the Senders
// alive within the TTL, itself included. It reports whether Redis had
// lost its sign of life before (a restart without persistence): the
// rosters must then be written again.
func (p *presence) signOfLife(known bool) (lost bool, live []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	now := time.Now()
	pipe := p.s.client.Pipeline()
	added := pipe.ZAdd(ctx, p.alive, redis.Z{Score: float64(now.UnixMilli()), Member: p.id})
	pipe.ZRemRangeByScore(ctx, p.alive, "-inf", strconv.FormatInt(now.Add(-presenceKeep).UnixMilli(), 10))
	pipe.PExpire(ctx, p.alive, presenceKeep)
	alive := pipe.ZRangeByScore(ctx, p.alive, &redis.ZRangeBy{Min: strconv.FormatInt(now.Add(-p.s.opts.PresenceTTL).UnixMilli(), 10), Max: "+inf"})
	_, err = pipe.Exec(ctx)
	p.writes.Add(4)
	return known && added.Val() == 1, alive.Val(), err
}

// write sends the changed rosters in one pipeline, each by the roster
// script, and returns those that failed.
func (p *presence) write(changed map[string][]byte, live []string) (failed map[string][]byte) {
	if len(changed) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	names := make([]string, 0, len(changed))
	for name := range changed {
		names = append(names, name)
	}
	cmds := p.runRosters(ctx, names, changed, live, false)
	var again []string
	var at []int
	for i, c := range cmds {
		if isNoScript(c.Err()) { // a Redis that restarted, or a promoted replica
			again, at = append(again, names[i]), append(at, i)
		}
	}
	for j, c := range p.runRosters(ctx, again, changed, live, true) {
		cmds[at[j]] = c
	}
	failed = map[string][]byte{}
	due := map[string]int64{}
	var firstErr error
	for i, c := range cmds {
		name := names[i]
		if err := c.Err(); err != nil {
			failed[name] = changed[name]
			firstErr = cmp.Or(firstErr, err)
		} else if ms, _ := c.Int64(); ms > 0 {
			due[name] = ms
		}
	}
	if err := p.scheduleLeaves(ctx, due); err != nil {
		firstErr = cmp.Or(firstErr, err)
	}
	if firstErr != nil {
		p.s.log.Warn("ginsse: presence write failed; retrying", "channels", len(failed), "err", firstErr)
	}
	return failed
}

// runRosters runs the roster script for names in one pipeline.
func (p *presence) runRosters(ctx context.Context, names []string, rosters map[string][]byte, live []string, eval bool) []*redis.Cmd {
	if len(names) == 0 {
		return nil
	}
	pipe := p.s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(names))
	for i, name := range names {
		cmds[i] = p.rosterCmd(ctx, name, rosters[name], live, eval)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx)
	p.writes.Add(int64(len(names)))
	return cmds
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

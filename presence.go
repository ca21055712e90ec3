package ginsse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence is kept in Redis in one cluster slot, under the hash tag
// {<prefix>ginsse/presence}, so that one script sees all of it:
//
//   - :alive, a sorted set of the Senders' last signs of life;
//   - :r:<id>, a hash per Sender, its roster of each channel it has
//     streams on;
//   - with join and leave, :u:<channel>, the users announced present on a
//     channel, and :due, the channels with a leave pending, by due time.
//
// Each second, a Sender that has something to write runs the presence
// script once: its changed rosters, its sign of life (every third of
// Options.PresenceTTL), the removal of the Senders silent for longer than
// the TTL, and with join and leave the events. So Redis sees one command
// per Sender a second at most, whatever the number of streams or of
// channels that changed. A query counts only the rosters of Senders alive
// within the TTL, so a Sender that crashes drops out within it.
const (
	presenceFlush = time.Second
	// presenceKeep is how long a Sender's roster outlives its last
	// write: long after any TTL.
	presenceKeep = 24 * time.Hour
)

// presenceTag is the hash tag of every presence key of the prefix.
func presenceTag(prefix string) string { return "{" + prefix + "ginsse/presence}" }

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
	tag   string // presenceTag of the Sender's prefix
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
		tag:   presenceTag(s.opts.Prefix),
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

// run writes, each presenceFlush, the rosters that changed, and a sign of
// life every third of the TTL, until Close; then it takes this Sender's
// rosters out of Redis. With join and leave on it runs every time, for
// the leaves that are due.
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
		since := time.Since(lastBeat)
		beat := since >= p.s.opts.PresenceTTL/3
		// Silent for about the TTL (by another Sender's clock), its
		// rosters may have been removed as a dead Sender's: it writes them
		// all again.
		all = all || (!lastBeat.IsZero() && since > p.s.opts.PresenceTTL/2)
		changed := p.changes(all)
		if len(changed) == 0 && !beat && !p.s.opts.JoinLeave {
			continue
		}
		lost, events, err := p.flush(changed, !lastBeat.IsZero())
		if err != nil {
			p.again(changed)
			p.s.log.Warn("ginsse: presence write failed; retrying", "channels", len(changed), "err", err)
			continue
		}
		lastBeat, all = time.Now(), lost // Redis forgot this Sender: write everything again
		p.announce(events)
	}
}

// flush runs the presence script once: the changed rosters and a sign of
// life. It reports whether Redis had lost this Sender's sign of life (a
// restart without persistence), and returns the join and leave events to
// send.
func (p *presence) flush(changed map[string][]byte, known bool) (lost bool, events []presenceEvent, err error) {
	o := p.s.opts
	args := make([]any, 0, 8+2*len(changed))
	join := 0
	if o.JoinLeave {
		join = 1
	}
	args = append(args, p.id, o.PresenceTTL.Milliseconds(), o.PresenceGrace.Milliseconds(),
		presenceKeep.Milliseconds(), join, len(changed))
	for name, b := range changed {
		args = append(args, name, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	p.writes.Add(1)
	res, err := evalScript(ctx, p.s.client, presenceScript, []string{p.tag}, args...)
	if err != nil {
		return false, nil, err
	}
	out, _ := res.([]any)
	if len(out) == 0 {
		return false, nil, nil
	}
	isNew, _ := out[0].(int64)
	for i := 1; i+2 < len(out); i += 3 {
		name, _ := out[i].(string)
		typ, _ := out[i+1].(string)
		user, _ := out[i+2].(string)
		events = append(events, presenceEvent{name, typ, user})
	}
	return known && isNew == 1, events, nil
}

// evalScript runs sc, sending it whole where Redis does not have it: a
// Redis that restarted, or a replica promoted after a failover. A nil
// reply is no error.
func evalScript(ctx context.Context, c redis.Scripter, sc *redis.Script, keys []string, args ...any) (any, error) {
	res, err := sc.Run(ctx, c, keys, args...).Result() // EVALSHA, then EVAL on NOSCRIPT
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return res, err
}

// withdraw takes this Sender's rosters and sign of life out of Redis as
// it closes, so that they go at once rather than after the TTL; with
// join and leave, its users are then marked gone by the next write of a
// Sender still there.
func (p *presence) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.Timeout)
	defer cancel()
	p.writes.Add(1)
	_, _ = evalScript(ctx, p.s.client, withdrawScript, []string{p.tag}, p.id, p.withdrawArg())
}

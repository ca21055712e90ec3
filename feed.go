package ginsse

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// subscribe adds st to the hub under names and queues the channels new to
// this Sender to be opened (see openRound). It never fails the stream:
// while Redis is away the subscription waits, and the stream with it.
func (s *Sender) subscribe(st *stream, names []string) {
	fresh := s.hub.add(st, names)
	if len(fresh) == 0 {
		return
	}
	jobs := make([]*job, len(fresh))
	for i, t := range fresh {
		jobs[i] = &job{t: t}
	}
	s.opening.push(jobs...)
}

// openRound opens channels new to the Sender, all of the round with one
// SUBSCRIBE. With history it first seeds each one's window with the
// newest entries of its history, one pipeline for all, read before
// subscribing so that the read after the confirmation (feedRound) covers
// every event in between. A channel whose read failed waits for a later
// round.
func (s *Sender) openRound(jobs []*job) (again, failed []*job, err error) {
	ready := make([]*topic, 0, len(jobs))
	if s.opts.History == 0 {
		for _, j := range jobs {
			ready = append(ready, j.t)
		}
	} else {
		n := min(s.hub.frames, replayPage)
		cmds := s.readRound(jobs, func(ctx context.Context, p redis.Pipeliner, j *job) *redis.XMessageSliceCmd {
			return newestCmd(ctx, p, j.t.name, n)
		})
		for i, j := range jobs {
			seed, whole, e := s.newest(cmds[i], j.t.name, n)
			if e != nil {
				failed, err = append(failed, j), e
				continue
			}
			j.t.win.seed(seed, whole)
			s.hub.wakeTopic(j.t)
			ready = append(ready, j.t)
		}
	}
	if len(ready) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		s.sendSubscribe(ctx, ready)
	}
	return nil, failed, err
}

// feedRound reads, for each history window of the round, what it missed
// between its newest entry and the subscription — after openRound, or
// after the subscription was lost and came back — one pipeline for all,
// and makes the windows live. A window missing more than a page, or lost
// again meanwhile, stays for the next round.
func (s *Sender) feedRound(jobs []*job) (again, failed []*job, err error) {
	reading := jobs[:0]
	for _, j := range jobs {
		if j.started || j.next() {
			reading = append(reading, j)
		}
	}
	if len(reading) == 0 {
		return nil, nil, nil
	}
	cmds := s.readRound(reading, func(ctx context.Context, p redis.Pipeliner, j *job) *redis.XMessageSliceCmd {
		return pageCmd(ctx, p, j.t.name, j.after, false)
	})
	for i, j := range reading {
		page, full, e := s.page(cmds[i], j.t.name)
		switch {
		case e != nil:
			failed, err = append(failed, j), e
		case full:
			j.got, j.after = append(j.got, page...), page[len(page)-1].pos
			again = append(again, j)
		default:
			if j.t.win.catchUp(append(j.got, page...), j.gen) {
				s.hub.wakeTopic(j.t)
			}
			if j.next() {
				again = append(again, j)
			}
		}
	}
	return again, failed, err
}

// readRound sends one history read per job, made by read, in one
// pipeline within Options.Timeout, and returns the commands in the jobs'
// order; each holds its own answer or error.
func (s *Sender) readRound(jobs []*job, read func(context.Context, redis.Pipeliner, *job) *redis.XMessageSliceCmd) []*redis.XMessageSliceCmd {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	p := s.client.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = read(ctx, p, j)
	}
	_, _ = p.Exec(ctx)
	return cmds
}

// next sets where a feed job reads from, and reports false when its
// window needs no read: it is live, or its subscription is not back yet
// (the confirmation queues a new job).
func (j *job) next() bool {
	after, gen, ok := j.t.win.feedFrom()
	j.started, j.after, j.gen, j.got = ok, after, gen, nil
	return ok
}

// sendSubscribe subscribes the topics that still want it. A failure is
// logged, not returned: plain pub/sub subscribes the channel again when
// it reconnects, and sharded pub/sub retries it on its shard.
func (s *Sender) sendSubscribe(ctx context.Context, fresh []*topic) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	names := make([]string, 0, len(fresh))
	for _, t := range fresh {
		if s.hub.current(t) {
			s.hub.sent(t)
			names = append(names, t.name)
		}
	}
	if len(names) == 0 {
		return
	}
	if unsent, err := s.sub.subscribe(ctx, names); err != nil {
		s.hub.unsent(unsent)
		s.log.Warn("ginsse: subscribe failed; streams wait for Redis", "channels", unsent, "err", err)
		s.subscribeLater(unsent)
	}
}

// subscribeLater sends a SUBSCRIBE that failed again, in a goroutine of
// the Sender's: on its shard's connection with sharded pub/sub, else on
// the one connection (see retrySubscribe).
func (s *Sender) subscribeLater(names []string) {
	if sh, ok := s.sub.(*shards); ok {
		s.goOwned(func() { sh.reroute(names, "") })
	} else {
		s.goOwned(func() { s.retrySubscribe(names) })
	}
}

// retrySubscribe sends a failed SUBSCRIBE again until it goes out or no
// stream wants the channels. go-redis keeps a channel whose SUBSCRIBE
// failed, but when the failure made it reconnect, the new connection
// subscribed only the channels it had before: without this the channel
// would stay unsubscribed until the connection was lost once more.
func (s *Sender) retrySubscribe(names []string) {
	backoff := firstBackoff
	for s.pause(&backoff, maxBackoff) {
		s.subMu.Lock()
		names = s.hub.wanted(names)
		var err error
		if len(names) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
			names, err = s.sub.subscribe(ctx, names)
			cancel()
		}
		s.subMu.Unlock()
		if err == nil {
			return
		}
	}
}

// unsubscribe removes st from the hub and unsubscribes the channels no
// local stream uses any more.
func (s *Sender) unsubscribe(st *stream) {
	empty := s.hub.remove(st)
	if len(empty) == 0 || s.closed() {
		return
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	names := empty[:0]
	for _, name := range empty {
		if s.hub.unused(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if err := s.sub.unsubscribe(ctx, names); err != nil {
		// go-redis already forgot the channels, so a reconnect will not
		// subscribe them again; Redis drops them with the connection.
		s.log.Debug("ginsse: unsubscribe", "channels", names, "err", err)
	}
}

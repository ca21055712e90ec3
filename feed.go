package ginsse

import (
	"context"
	"time"
)

// subscribe adds st to the hub under names and subscribes the channels
// new to this Sender. Without history the SUBSCRIBE goes out at once; with
// history each new channel first reads its newest entries into its window
// (see openTopic). Neither fails the stream: while Redis is away the
// subscription waits, and the stream with it.
func (s *Sender) subscribe(st *stream, names []string) {
	fresh := s.hub.add(st, names)
	if s.opts.History > 0 {
		for _, t := range fresh {
			s.goOwned(func() { s.openTopic(t) })
		}
		return
	}
	if len(fresh) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		s.sendSubscribe(ctx, fresh)
	}
}

// openTopic seeds a new channel's window with the newest entries of its
// history, read before subscribing so that the read after the
// confirmation (runFeed) covers every event in between.
func (s *Sender) openTopic(t *topic) {
	var seed []*frame
	var whole bool
	n := min(s.hub.frames, replayPage)
	if !s.persist(t, func(ctx context.Context) (err error) {
		seed, whole, err = s.newestEntries(ctx, t.name, n)
		return err
	}) {
		return
	}
	t.win.seed(seed, whole)
	s.hub.wakeTopic(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	s.sendSubscribe(ctx, []*topic{t})
}

// runFeed reads what a history window missed between its newest entry and
// the subscription — after openTopic, or after the subscription was lost
// and came back — and makes the window live.
func (s *Sender) runFeed(t *topic) {
	for {
		after, gen, ok := t.win.feedFrom()
		if !ok {
			return
		}
		var entries []*frame
		for {
			var page []*frame
			var full bool
			if !s.persist(t, func(ctx context.Context) (err error) {
				page, full, err = s.pageFrom(ctx, t.name, after, false)
				return err
			}) {
				t.win.stopFeeding()
				return
			}
			entries = append(entries, page...)
			if !full {
				break
			}
			after = page[len(page)-1].pos
		}
		if t.win.catchUp(entries, gen) {
			s.hub.wakeTopic(t)
		}
	}
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
	if err := s.sub.subscribe(ctx, names); err != nil {
		s.hub.unsent(names)
		s.log.Warn("ginsse: subscribe failed; streams wait for Redis", "channels", names, "err", err)
		if sh, ok := s.sub.(*shards); ok {
			s.goOwned(func() { sh.reroute(names, "") })
		} else {
			s.goOwned(func() { s.retrySubscribe(names) })
		}
	}
}

// retrySubscribe sends a failed SUBSCRIBE again until it goes out or no
// stream wants the channels. go-redis keeps a channel whose SUBSCRIBE
// failed, but when the failure made it reconnect, the new connection
// subscribed only the channels it had before: without this the channel
// would stay unsubscribed until the connection was lost once more.
func (s *Sender) retrySubscribe(names []string) {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-s.quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
		s.subMu.Lock()
		want := s.hub.wanted(names)
		var err error
		if len(want) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
			err = s.sub.subscribe(ctx, want)
			cancel()
		}
		s.subMu.Unlock()
		if len(want) == 0 || err == nil {
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

package ginsse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sender publishes events to Redis and streams the events of its channels
// to the clients connected to it. One Sender holds one Redis pub/sub
// connection for all its streams, whatever their number, plus a small pool
// for publishing. It is safe for concurrent use.
//
// Create one with Register or New, and Close it when the server shuts
// down.
type Sender struct {
	opts       Options
	client     redis.UniversalClient
	ownsClient bool
	sub        subscriber
	batch      *batcher
	hub        *hub
	beat       *clock
	log        *slog.Logger

	subMu sync.Mutex // orders SUBSCRIBE and UNSUBSCRIBE commands

	quit      chan struct{} // closed by Close
	closeOnce sync.Once
	spawnMu   sync.Mutex     // no goroutine starts once quit is closed
	wg        sync.WaitGroup // the Sender's own goroutines

	open          atomic.Int64 // streams admitted and not yet ended
	published     atomic.Int64
	publishErrors atomic.Int64
	delivered     atomic.Int64
	reconnects    atomic.Int64
	replayed      atomic.Int64
	historyReads  atomic.Int64
	outageOpens   atomic.Int64
	shed          atomic.Int64
}

// New returns a Sender for opts, with its subscription loop started. It
// returns an error wrapping ErrInvalidOptions that names the field when
// opts cannot work. It does not reach Redis yet: a Redis that is down
// shows as Send errors and 503 answers until it is back.
func New(opts Options) (*Sender, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Sender{
		opts:   o,
		client: o.Client,
		hub:    newHub(o.History > 0, o.windowFrames(), o.QueueSize, o.ReplayMemory),
		log:    o.Logger,
		quit:   make(chan struct{}),
	}
	if s.client == nil {
		s.client = o.newClient()
		s.ownsClient = true
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.sub = s.newSubscriber()
	s.startBatcher()
	if o.Heartbeat > 0 {
		s.beat = newClock()
		s.goOwned(func() { s.tick(o.Heartbeat) })
	}
	return s, nil
}

// goOwned runs f in a goroutine that Close waits for, unless the Sender
// is closing, and reports whether it started it.
func (s *Sender) goOwned(f func()) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.closed() {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Close ends every open stream, each with a retry hint spread between
// Options.RetryMin and RetryMax so that its browsers come back to the
// other replicas over that time rather than all at once; it then stops the
// subscription and, if the Sender made its own Redis client, closes it.
// Send returns ErrClosed afterwards, and a new stream gets 200, a retry
// hint and an end. Close is safe to call more than once; hook it to
// http.Server.RegisterOnShutdown so Shutdown does not wait for streams
// that never end by themselves.
func (s *Sender) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.spawnMu.Lock()
		close(s.quit)
		s.spawnMu.Unlock()
		err = s.sub.close()
		s.wg.Wait()
		if s.ownsClient {
			err = errors.Join(err, s.client.Close())
		}
	})
	if err != nil {
		return fmt.Errorf("ginsse: close: %w", err)
	}
	return nil
}

func (s *Sender) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// SendOption adjusts one Send or Publish call.
type SendOption func(*sendParams)

type sendParams struct {
	channel  string
	id       string
	retry    time.Duration
	retrySet bool
}

// Channel publishes to the named channel instead of the default one.
func Channel(name string) SendOption {
	return func(p *sendParams) { p.channel = name }
}

// ID sets the event's id, which the browser sends back as Last-Event-ID
// when it reconnects. An id must not contain CR, LF or NUL.
func ID(id string) SendOption {
	return func(p *sendParams) { p.id = id }
}

// Retry tells the browser how long to wait before reconnecting after it
// loses the stream. It is sent in whole milliseconds and must not be
// negative.
func Retry(d time.Duration) SendOption {
	return func(p *sendParams) { p.retry, p.retrySet = d, true }
}

// Publish sends an event of type typ (empty for the browser's default
// "message") to every stream of the channel, on every Sender sharing the
// Redis. data that is a string or []byte goes as it is; anything else is
// encoded as JSON. Publish returns an error wrapping ErrInvalidChannel or
// ErrInvalidEvent for input it refuses, ErrUnavailable when Redis cannot
// be reached within Options.Timeout, and ErrClosed after Close.
func (s *Sender) Publish(ctx context.Context, typ string, data any, opts ...SendOption) error {
	p := sendParams{channel: s.opts.DefaultChannel}
	for _, o := range opts {
		o(&p)
	}
	if p.id != "" && s.opts.History > 0 {
		return fmt.Errorf("%w: with History on, ids are history positions and cannot be set (channel %q)", ErrInvalidEvent, p.channel)
	}
	payload, err := encodePayload(typ, data, &p)
	if err != nil {
		return err
	}
	if s.closed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.batch.publish(ctx, s.opts.Prefix+p.channel, payload); err != nil {
		s.publishErrors.Add(1)
		return fmt.Errorf("%w: publish to %q: %w", ErrUnavailable, p.channel, err)
	}
	s.published.Add(1)
	return nil
}

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

// tick drives the shared heartbeat clock until Close.
func (s *Sender) tick(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.beat.fire()
		}
	}
}

// clock is one heartbeat shared by all streams: each tick closes the
// channel streams wait on, so no stream needs a timer of its own.
type clock struct {
	ch atomic.Pointer[chan struct{}]
}

func newClock() *clock {
	c := &clock{}
	ch := make(chan struct{})
	c.ch.Store(&ch)
	return c
}

// wait returns a channel closed at the next tick; nil (never ready) for a
// nil clock.
func (c *clock) wait() <-chan struct{} {
	if c == nil {
		return nil
	}
	return *c.ch.Load()
}

func (c *clock) fire() {
	next := make(chan struct{})
	close(*c.ch.Swap(&next))
}

// Stats is a snapshot of a Sender's figures since it was created.
type Stats struct {
	Streams       int   // streams open now
	Channels      int   // Redis channels subscribed now
	Published     int64 // events published by this Sender
	PublishErrors int64 // publishes that failed
	Delivered     int64 // frames written to clients
	SlowCloses    int64 // streams closed because their queue overflowed
	Reconnects    int64 // times the subscription came back after losing Redis
	Replayed      int64 // events sent from history to resuming streams
	HistoryReads  int64 // history reads sent to Redis (XRANGE, XREVRANGE)
	OutageOpens   int64 // streams that answered 200 before Redis confirmed their channels, and waited
	Shed          int64 // streams sent away with a retry hint because MaxStreams were open
	WindowBytes   int64 // bytes of frames the channels' windows hold now
}

// Stats returns the Sender's current figures. It is cheap and safe to call
// at any time.
func (s *Sender) Stats() Stats {
	streams, channels := s.hub.counts()
	return Stats{
		Streams:       streams,
		Channels:      channels,
		Published:     s.published.Load(),
		PublishErrors: s.publishErrors.Load(),
		Delivered:     s.delivered.Load(),
		SlowCloses:    s.hub.slow.Load(),
		Reconnects:    s.reconnects.Load(),
		Replayed:      s.replayed.Load(),
		HistoryReads:  s.historyReads.Load(),
		OutageOpens:   s.outageOpens.Load(),
		Shed:          s.shed.Load(),
		WindowBytes:   s.hub.budget.held.Load(),
	}
}

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
	ends       *deadlines // streams' expiry and rotation
	ctl        *control   // Disconnect commands
	reach      reaches    // open streams, for commands
	pres       *presence  // nil without Options.Presence
	opening    *rounds    // channels new to the Sender (see openRound)
	feeding    *rounds    // history windows to make live (see feedRound)
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
	expired       atomic.Int64
	rotated       atomic.Int64
	revoked       atomic.Int64
	refreshes     atomic.Int64
	lag           lagHistogram
}

// New returns a Sender for opts, with its subscription loop started. It
// returns an error wrapping ErrInvalidOptions that names the field when
// opts cannot work. It does not reach Redis yet: a Redis that is down
// shows as Send errors, and as streams that wait for it, until it is back.
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
	s.opening = newRounds(s, s.openRound, func(*job) {})
	s.feeding = newRounds(s, s.feedRound, func(j *job) { j.t.win.stopFeeding() })
	s.ctl = newControl(s)
	s.hub.control = s.ctl.name
	s.sub = s.newSubscriber()
	s.startBatcher()
	s.startControl()
	s.ends = newDeadlines()
	s.goOwned(s.runDeadlines)
	if o.Presence {
		s.pres = newPresence(s)
		s.goOwned(s.pres.run)
	}
	if o.Heartbeat > 0 {
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
		s.reach.raise(0, nil) // each stream sees quit when it wakes
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

// Retries after a Redis failure wait firstBackoff, doubling up to
// maxBackoff while the failures go on, so that a Redis that is down is
// not hammered.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// pause waits *backoff, then doubles it up to limit; it reports false if
// the Sender closed first.
func (s *Sender) pause(backoff *time.Duration, limit time.Duration) bool {
	timer := time.NewTimer(*backoff)
	defer timer.Stop()
	select {
	case <-s.quit:
		return false
	case <-timer.C:
	}
	*backoff = min(*backoff*2, limit)
	return true
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
	at       int64 // the "t" stamp, Unix ms; 0 for none
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
	if s.opts.StampTime && s.opts.History == 0 {
		p.at = time.Now().UnixMilli() // with History, the position holds Redis's time
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

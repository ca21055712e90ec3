package ginsse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	resync     *clock // fired when the subscription is back after losing Redis
	log        *slog.Logger

	subMu sync.Mutex // orders SUBSCRIBE and UNSUBSCRIBE commands

	quit      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the Sender's own goroutines

	published     atomic.Int64
	publishErrors atomic.Int64
	delivered     atomic.Int64
	reconnects    atomic.Int64
	replayed      atomic.Int64
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
		hub:    newHub(),
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
	if o.History > 0 {
		s.resync = newClock()
	}
	if o.Heartbeat > 0 {
		s.beat = newClock()
		s.wg.Add(1)
		go s.tick(o.Heartbeat)
	}
	return s, nil
}

// Close ends every open stream, stops the subscription and, if the Sender
// made its own Redis client, closes it. Send returns ErrClosed afterwards
// and new streams answer 503. Close is safe to call more than once; hook
// it to http.Server.RegisterOnShutdown so Shutdown does not wait for
// streams that never end by themselves.
func (s *Sender) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.quit)
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

// payload is the JSON object Flask-SSE publishes on the Redis channel.
type payload struct {
	Data  json.RawMessage `json:"data"`
	Type  string          `json:"type,omitempty"`
	ID    string          `json:"id,omitempty"`
	Retry *int64          `json:"retry,omitempty"`
}

// encodePayload validates one Send call and returns the Redis message.
func encodePayload(typ string, data any, p *sendParams) ([]byte, error) {
	if err := validateChannel(p.channel); err != nil {
		return nil, err
	}
	e := event{typ: typ, id: p.id, retry: -1}
	if err := e.validate(); err != nil {
		return nil, err
	}
	msg := payload{Type: typ, ID: p.id}
	if p.retrySet {
		ms, err := retryMillis(p.retry)
		if err != nil {
			return nil, err
		}
		msg.Retry = &ms
	}
	var err error
	switch d := data.(type) {
	case string:
		msg.Data, err = json.Marshal(d)
	case []byte:
		msg.Data, err = json.Marshal(string(d))
	default:
		msg.Data, err = json.Marshal(d)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrInvalidEvent, err)
	}
	return json.Marshal(msg)
}

// decodePayload turns a Redis message into an event. It accepts what
// Flask-SSE and ginsse publish, in any key order, ignoring unknown keys.
// Anything else, or a payload whose fields would break the wire format,
// arrives as plain data so that no publisher can kill a stream.
func decodePayload(raw string) event {
	plain := event{data: raw, retry: -1}
	var m struct {
		Data  json.RawMessage `json:"data"`
		Type  *string         `json:"type"`
		ID    json.RawMessage `json:"id"`
		Retry *json.Number    `json:"retry"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal([]byte(raw), &m) != nil || m.Data == nil {
		return plain
	}
	e := event{retry: -1}
	if m.Type != nil {
		e.typ = *m.Type
	}
	if m.ID != nil && string(m.ID) != "null" {
		var id string
		if json.Unmarshal(m.ID, &id) != nil {
			id = string(m.ID) // a number, as Python may send
		}
		e.id = id
	}
	if m.Retry != nil {
		ms, err := strconv.ParseInt(m.Retry.String(), 10, 64)
		if err != nil || ms < 0 {
			return plain
		}
		e.retry = ms
	}
	var str string
	if m.Data[0] == '"' && json.Unmarshal(m.Data, &str) == nil {
		e.data = str
	} else {
		e.data = string(bytes.TrimSpace(m.Data))
	}
	if e.validate() != nil {
		return plain
	}
	return e
}

// dispatch encodes one message from Redis and fans it out. With history
// on, an id that is not a history position is dropped: it would spoil the
// client's Last-Event-ID.
func (s *Sender) dispatch(channel, raw string) {
	e := decodePayload(raw)
	var pos position
	if s.opts.History > 0 && e.id != "" {
		var ok bool
		if pos, ok = livePosition(e.id, time.Now()); !ok {
			e.id = ""
		}
	}
	s.hub.publish(channel, newFrame(&e, pos))
}

// maxClockSkew bounds how far the time in a live event's position may be
// from this host's clock.
const maxClockSkew = 24 * time.Hour

// livePosition reads the id of an event just published as a history
// position. The publish script writes Redis's current time there; an id
// of the same shape from another publisher ("2024-06", or one far in the
// future) is not a position, and would otherwise move every stream's
// cursor and make it skip the events that follow.
func livePosition(id string, now time.Time) (position, bool) {
	pos, ok := parsePosition(id)
	if !ok {
		return position{}, false
	}
	ms := now.UnixMilli()
	skew := maxClockSkew.Milliseconds()
	if pos.ms > uint64(ms+skew) || int64(pos.ms) < ms-skew {
		return position{}, false
	}
	return pos, true
}

// subscribe adds st to the hub under names and waits until Redis confirmed
// every new channel, so that no event published after the stream answered
// 200 is missed.
func (s *Sender) subscribe(ctx context.Context, st *stream, names []string) error {
	fresh := s.hub.add(st, names)
	if len(fresh) > 0 {
		if err := s.sendSubscribe(ctx, fresh); err != nil {
			s.unsubscribe(st)
			return err
		}
	}
	timer := time.NewTimer(s.opts.Timeout)
	defer timer.Stop()
	for i := range st.members {
		select {
		case <-st.members[i].t.ready:
		case <-ctx.Done():
			s.unsubscribe(st)
			return ctx.Err()
		case <-s.quit:
			s.unsubscribe(st)
			return ErrClosed
		case <-timer.C:
			s.unsubscribe(st)
			return fmt.Errorf("%w: subscribe: no confirmation within %v", ErrUnavailable, s.opts.Timeout)
		}
	}
	return nil
}

func (s *Sender) sendSubscribe(ctx context.Context, fresh []*topic) error {
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
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.sub.subscribe(ctx, names); err != nil {
		s.hub.unsent(names)
		return fmt.Errorf("%w: subscribe: %w", ErrUnavailable, err)
	}
	return nil
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
	defer s.wg.Done()
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
	}
}

package ginsse

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a Sender. The zero value is ready to use: it talks to
// Redis at localhost:6379, serves the channel named by the "channel" query
// parameter (default "sse") and sends a heartbeat every 15 seconds.
//
// Each field maps one to one onto the configuration table in the README.
type Options struct {
	// Client is an existing Redis client to use, for TLS, ACLs, Sentinel or
	// Cluster set-ups. The Sender does not close a client it was given.
	// Set at most one of Client, URL and Addr.
	Client redis.UniversalClient

	// URL is a Redis URL such as "redis://user:pass@host:6379/0" or
	// "rediss://..." for TLS. It is what Flask-SSE calls REDIS_URL.
	URL string

	// Addr is the host:port of a single Redis server. Default "localhost:6379"
	// when neither Client nor URL is set.
	Addr string

	// DB is the Redis database number used with Addr. Default 0. Pub/sub
	// ignores it; it matters for commands that touch keys.
	DB int

	// Prefix is prepended to every channel name on the Redis side, so that
	// several applications can share one Redis. Default "" (no prefix). It
	// may hold the same characters as a channel name, up to 64 of them.
	Prefix string

	// ChannelParam is the query parameter that names the channels a stream
	// subscribes to. Default "channel".
	ChannelParam string

	// DefaultChannel is the channel a stream subscribes to, and Send
	// publishes to, when none is named. Default "sse".
	DefaultChannel string

	// MaxChannels caps how many distinct channels one stream may name; a
	// request naming more answers 400. Default 16.
	MaxChannels int

	// Heartbeat is how often every open stream receives a comment line, so
	// that proxies and load balancers keep idle connections open. Default
	// 15s; a negative value turns heartbeats off.
	Heartbeat time.Duration

	// QueueSize is how far, in frames, a stream may fall behind its
	// channel. Frames are held once per channel, in the channel's window,
	// not once per stream. Without history a stream further behind is
	// closed (the browser reconnects) so that it never holds the others
	// up; with history it catches up from the window or from Redis, and
	// ReplayWindow sizes the window instead. Default 128.
	QueueSize int

	// MaxStreams caps the streams this Sender serves at once. Past it, a
	// new stream gets 200, a retry hint between RetryMin and RetryMax and
	// an immediate end instead of an error, so the browser comes back
	// later, perhaps to another replica; Stats.Shed counts them. Size it
	// below the process's open-file limit, less the files the rest of the
	// server needs. Default 0: no limit.
	MaxStreams int

	// RetryMin and RetryMax bound the reconnection delay ginsse tells a
	// browser (the SSE "retry" field) when it ends a stream on purpose:
	// at Close, and when MaxStreams are open. Each stream gets a delay
	// drawn uniformly between them, so a replica's browsers come back
	// spread over that window instead of in the same instant. Defaults 1s
	// and 5s.
	RetryMin, RetryMax time.Duration

	// MaxStreamAge, when set, ends each stream with a retry hint once it
	// is that old, less a random part of up to a quarter of it, so that
	// streams opened together do not end together. The browser comes back
	// through the guard, perhaps to another replica: after a deploy or a
	// scale-out, streams spread over the replicas within MaxStreamAge.
	// With History on, the stream resumes from its Last-Event-ID and
	// nothing is lost. Default 0: streams live as long as their
	// connection.
	MaxStreamAge time.Duration

	// Refresh, when set, extends a stream whose Identity.ExpiresAt is
	// near without a reconnect: it is called, in a goroutine of the
	// stream's, Options.Timeout before ExpiresAt, and returns the new
	// ExpiresAt — from a session store, say. The stream goes on while it
	// runs. An error, a time no later than the ExpiresAt it had, or no
	// answer within Timeout ends the stream at that ExpiresAt as if there
	// were no Refresh: with a retry hint, back through the guard. It is
	// asked at most once per Timeout, however little an answer extends the
	// stream. Refresh must honour its context: a stream that ends cancels
	// it and waits for it at most Timeout.
	Refresh func(ctx context.Context, id Identity) (time.Time, error)

	// StampTime, without History, adds the time of each Publish to the
	// message, as "t" in Unix milliseconds, so that the Senders that
	// deliver it can count its delivery lag (Stats.DeliveryLag); with
	// History the lag comes from the event's position, and nothing is
	// added. Python's Flask-SSE rejects a message with a key it does not
	// know: leave it off when Flask-SSE reads the channels.
	StampTime bool

	// Presence, when set, keeps who is on each channel in Redis for
	// Sender.Presence, with this Sender's streams: at most one write per
	// changed channel a second, and a sign of life every third of
	// PresenceTTL. Queries work on any Sender, with it on or off.
	Presence bool

	// PresenceTTL is how long a Sender that gives no sign of life — it
	// crashed, or lost Redis — still counts in presence, by Redis's clock;
	// each Sender's sign of life carries its own. Default 30s.
	PresenceTTL time.Duration

	// JoinLeave, with Presence, sends each channel's streams a
	// "ginsse-join" event when a user's first stream on the channel opens,
	// on any Sender, and a "ginsse-leave" event when their last one has
	// been closed for PresenceGrace; the data is {"user": NAME}. Each is
	// sent once, whatever the number of Senders, and with History on it is
	// a history event that a resume replays. Anonymous streams send none.
	JoinLeave bool

	// PresenceGrace is how long a user may be gone from a channel — a
	// reconnect, a rotation, a restart — before ginsse-leave is sent; one
	// who comes back within it sends neither leave nor join. Default 5s.
	PresenceGrace time.Duration

	// WriteTimeout bounds each write to a client. The deadline keeps
	// moving as the stream writes, so streams outlive an http.Server
	// WriteTimeout, and a client that stops reading is dropped once a
	// write has waited between 7/8 of WriteTimeout and all of it. Default
	// 10s; a negative value sets no deadline.
	WriteTimeout time.Duration

	// Timeout bounds each Redis round trip made for a caller: a publish, or
	// the confirmation of a new subscription before a stream answers 200.
	// Default 2s.
	Timeout time.Duration

	// History turns on reliable delivery: each channel keeps its last
	// History events in a Redis Stream, every event carries its position
	// there as its id, and a client that reconnects with Last-Event-ID
	// receives what it missed. Default 0: off, plain pub/sub.
	History int

	// HistoryAge, with History on, also drops retained events older than
	// this, and lets a channel's history expire once it has been idle that
	// long. Default 0: events are dropped by count only.
	HistoryAge time.Duration

	// ReplayWindow, with History on, is how many of each channel's newest
	// events the Sender keeps in memory, as the frames it already sent, so
	// that streams which resume or fall behind within them are served
	// without reading Redis. Reads that must go to Redis are made once per
	// channel for all its waiting streams. The window is released when the
	// channel's last local stream leaves. Default History, at most 1024;
	// it cannot exceed History.
	ReplayWindow int

	// ReplayMemory bounds the bytes all channels' windows hold together.
	// Past it, the channel taking a new frame drops its oldest, down to
	// QueueSize frames. Default 64 MiB; a negative value sets no bound.
	ReplayMemory int64

	// Sharded uses Redis 7 sharded pub/sub (SSUBSCRIBE, SPUBLISH), which
	// spreads channels over a cluster's shards instead of broadcasting
	// every event to every node. Every publisher and Sender of a channel
	// must agree on it. Default false.
	Sharded bool

	// Logger receives stream closes that are not plain client disconnects
	// and changes in the Redis subscription. Default nil: silent.
	Logger *slog.Logger
}

// Defaults, in one place.
const (
	defaultAddr         = "localhost:6379"
	defaultChannelParam = "channel"
	defaultChannel      = "sse"
	defaultMaxChannels  = 16
	defaultHeartbeat    = 15 * time.Second
	defaultQueueSize    = 128
	defaultWriteTimeout = 10 * time.Second
	defaultTimeout      = 2 * time.Second
	defaultPresenceTTL  = 30 * time.Second
	defaultGrace        = 5 * time.Second
	defaultRetryMin     = time.Second
	defaultRetryMax     = 5 * time.Second
	defaultReplayWindow = 1024
	defaultReplayMemory = 64 << 20
	maxPrefixLen        = 64
)

// withDefaults returns o with every zero field set to its default, or an
// error naming the first field that cannot work.
func (o Options) withDefaults() (Options, error) {
	set := 0
	for _, s := range []bool{o.Client != nil, o.URL != "", o.Addr != ""} {
		if s {
			set++
		}
	}
	if set > 1 {
		return o, optionError("Client", "set only one of Client, URL and Addr")
	}
	if o.URL != "" {
		if _, err := redis.ParseURL(o.URL); err != nil {
			return o, optionError("URL", err.Error())
		}
	}
	if set == 0 {
		o.Addr = defaultAddr
	}
	if o.Addr != "" {
		if _, _, err := net.SplitHostPort(o.Addr); err != nil {
			return o, optionError("Addr", err.Error())
		}
	}
	if o.DB < 0 {
		return o, optionError("DB", "must not be negative")
	}
	if o.Prefix != "" {
		if len(o.Prefix) > maxPrefixLen || !validName(o.Prefix) {
			return o, optionError("Prefix", fmt.Sprintf("%q must be up to %d letters, digits or _ . : -", o.Prefix, maxPrefixLen))
		}
	}
	if o.History < 0 {
		return o, optionError("History", "must not be negative")
	}
	if o.HistoryAge < 0 {
		return o, optionError("HistoryAge", "must not be negative")
	}
	if o.HistoryAge > 0 && o.History == 0 {
		return o, optionError("HistoryAge", "needs History")
	}
	if o.ChannelParam == "" {
		o.ChannelParam = defaultChannelParam
	}
	if o.DefaultChannel == "" {
		o.DefaultChannel = defaultChannel
	}
	if err := validateChannel(o.DefaultChannel); err != nil {
		return o, optionError("DefaultChannel", err.Error())
	}
	if o.MaxChannels < 0 {
		return o, optionError("MaxChannels", "must not be negative")
	}
	if o.MaxChannels == 0 {
		o.MaxChannels = defaultMaxChannels
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = defaultHeartbeat
	}
	if o.QueueSize < 0 {
		return o, optionError("QueueSize", "must not be negative")
	}
	if o.QueueSize == 0 {
		o.QueueSize = defaultQueueSize
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.Timeout < 0 {
		return o, optionError("Timeout", "must not be negative")
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxStreams < 0 {
		return o, optionError("MaxStreams", "must not be negative")
	}
	if o.MaxStreamAge < 0 {
		return o, optionError("MaxStreamAge", "must not be negative")
	}
	switch {
	case o.PresenceTTL < 0:
		return o, optionError("PresenceTTL", "must not be negative")
	case o.PresenceTTL == 0:
		o.PresenceTTL = defaultPresenceTTL
	case o.PresenceTTL < 3*presenceFlush:
		return o, optionError("PresenceTTL", "must be at least 3s: a Sender signs of life every third of it")
	}
	switch {
	case o.JoinLeave && !o.Presence:
		return o, optionError("JoinLeave", "needs Presence")
	case o.PresenceGrace < 0:
		return o, optionError("PresenceGrace", "must not be negative")
	case o.PresenceGrace == 0:
		o.PresenceGrace = defaultGrace
	}
	return o.withReplayDefaults()
}

// withReplayDefaults fills and checks the retry hint and replay window
// fields.
func (o Options) withReplayDefaults() (Options, error) {
	if o.RetryMin < 0 || o.RetryMax < 0 {
		return o, optionError("RetryMin", "RetryMin and RetryMax must not be negative")
	}
	if o.RetryMin == 0 {
		o.RetryMin = defaultRetryMin
		if o.RetryMax > 0 {
			o.RetryMin = min(o.RetryMin, o.RetryMax)
		}
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(defaultRetryMax, o.RetryMin)
	}
	if o.RetryMax < o.RetryMin {
		return o, optionError("RetryMax", fmt.Sprintf("%v is less than RetryMin %v", o.RetryMax, o.RetryMin))
	}
	if o.ReplayWindow < 0 {
		return o, optionError("ReplayWindow", "must not be negative")
	}
	if o.ReplayWindow > 0 && o.History == 0 {
		return o, optionError("ReplayWindow", "needs History")
	}
	if o.ReplayWindow > o.History {
		return o, optionError("ReplayWindow", fmt.Sprintf("%d is more than History %d", o.ReplayWindow, o.History))
	}
	if o.ReplayWindow == 0 {
		o.ReplayWindow = min(o.History, defaultReplayWindow)
	}
	if o.ReplayMemory == 0 {
		o.ReplayMemory = defaultReplayMemory
	}
	return o, nil
}

// windowFrames is how many frames each channel's window holds.
func (o Options) windowFrames() int {
	if o.History > 0 {
		return o.ReplayWindow
	}
	return o.QueueSize
}

func optionError(field, msg string) error {
	return fmt.Errorf("%w: Options.%s: %s", ErrInvalidOptions, field, msg)
}

// newClient builds the Redis client for options that did not bring one.
// Its timeouts follow Options.Timeout so that a Redis that is down makes
// Send fail fast instead of hanging; its pool stays small because streams
// never use it.
func (o Options) newClient() redis.UniversalClient {
	var ro *redis.Options
	if o.URL != "" {
		ro, _ = redis.ParseURL(o.URL) // checked in withDefaults
	} else {
		ro = &redis.Options{Addr: o.Addr, DB: o.DB}
	}
	if ro.DialTimeout == 0 {
		ro.DialTimeout = o.Timeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = o.Timeout
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = o.Timeout
	}
	if ro.PoolSize == 0 {
		ro.PoolSize = 3
	}
	if ro.PipelinePoolSize == 0 {
		// go-redis would open a second pool of up to 10 connections for
		// pipelines; publishing pipelines share the small pool instead.
		ro.PipelinePoolSize = -1
	}
	ro.MaxRetries = -1 // Send reports the failure; the caller decides to retry.
	return redis.NewClient(ro)
}

// OptionsFromEnv reads the Redis location from the environment keys that
// Flask-SSE users know: SSE_REDIS_URL, or else SSE_REDIS_HOST (default
// localhost), SSE_REDIS_PORT (default 6379) and SSE_REDIS_DB (default 0).
// The other fields keep their zero values; set them on the result.
func OptionsFromEnv() (Options, error) {
	if u := os.Getenv("SSE_REDIS_URL"); u != "" {
		if _, err := redis.ParseURL(u); err != nil {
			return Options{}, fmt.Errorf("%w: SSE_REDIS_URL: %v", ErrInvalidOptions, err)
		}
		return Options{URL: u}, nil
	}
	host := envOr("SSE_REDIS_HOST", "localhost")
	port := envOr("SSE_REDIS_PORT", "6379")
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Options{}, fmt.Errorf("%w: SSE_REDIS_PORT: %q is not a port number", ErrInvalidOptions, port)
	}
	db, err := strconv.Atoi(envOr("SSE_REDIS_DB", "0"))
	if err != nil || db < 0 {
		return Options{}, fmt.Errorf("%w: SSE_REDIS_DB: %q is not a database number", ErrInvalidOptions, os.Getenv("SSE_REDIS_DB"))
	}
	return Options{Addr: net.JoinHostPort(host, port), DB: db}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

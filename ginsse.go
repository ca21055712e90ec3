// Package ginsse streams HTML5 server-sent events from gin applications,
// fanned out through Redis pub/sub so that every replica of an application
// reaches every browser.
//
// It is the Go successor of Python's Flask-SSE, in two parts: Register
// attaches a streaming route to a gin RouterGroup, and Send publishes an
// event from any handler (or Sender.Publish from any goroutine).
//
//	r := gin.Default()
//	stream := r.Group("/stream", requireLogin) // group middleware guards the streams
//	events := ginsse.Register(stream, ginsse.Options{Addr: "localhost:6379"})
//	defer events.Close()
//	r.Use(events.Middleware()) // makes ginsse.Send work in later routes
//	r.POST("/send", func(c *gin.Context) {
//		err := ginsse.Send(c, "greeting", gin.H{"message": "Hello!"})
//		...
//	})
//
// A browser subscribes with new EventSource("/stream?channel=news"); a
// stream may name several channels. Without a channel parameter it gets
// the default channel, "sse".
//
// # Wire format
//
// Each event is one frame as the WHATWG HTML standard defines it: optional
// "event:", "id:" and "retry:" fields, one "data:" line per line of data
// (split on CRLF, LF and CR only), and a blank line:
//
//	event: greeting
//	id: 42
//	data: {"message":"Hello!"}
//
// Strings and byte slices are sent as they are; other data is encoded as
// JSON. A stream starts with the comment ": ok" and receives ": heartbeat"
// comments while idle.
//
// # Architecture
//
// A Sender holds one Redis pub/sub connection for all its streams. It
// subscribes a channel when the first local stream for it arrives and
// unsubscribes when the last one leaves. Each message read from Redis is
// encoded into a frame once, into the channel's window of recent frames,
// and every stream of the channel is woken without blocking to follow the
// window with its own cursor: a stream that falls further behind than
// Options.QueueSize is closed, and its browser reconnects, so one slow
// client never holds up the others. Each stream is served by its own
// request goroutine, which waits on two channels: its wake-up signal,
// which also brings its heartbeats, commands and Close, and the request's
// context.
//
// The stream route answers non-200 only for what no retry can fix (an
// invalid channel, a guard's refusal), because a browser's EventSource
// gives up for good on any other answer. When Redis goes away, Send fails
// fast with ErrUnavailable, open streams stay open, new streams answer 200
// and wait, and the subscription comes back by itself, resubscribing every
// channel. Close and Options.MaxStreams end streams with a retry hint
// spread over Options.RetryMin..RetryMax. Concurrent publishes are
// gathered into pipelines.
//
// # Reliable delivery
//
// With Options.History, each channel keeps its last events in a Redis
// Stream, written together with the publish by one Lua script, and every
// event's id is its position there. A browser that reconnects sends its
// Last-Event-ID and receives every retained event after it, then the live
// ones, with no gap and no duplicate. Each channel's window doubles as its
// replay window (Options.ReplayWindow): a resume inside it is served from
// memory, and reads that must go to Redis are made once per channel for
// all the streams waiting, so a reconnect storm costs a few reads per
// channel rather than one per browser. A stream of several channels gets
// one id holding a position per channel. A stream that falls behind
// catches up instead of being closed, and when the subscription comes back
// each channel reads once what it missed. An id older than the history, or
// one the stream cannot read, sends a "ginsse-gap" event first and then
// everything retained.
//
// On a Redis Cluster, Options.Sharded uses sharded pub/sub with one
// subscription connection per shard, following slot moves.
//
// Sender.Stats reports open streams, channels, publishes, deliveries,
// slow closes, reconnects and replays; package ginsseprom exports them to
// Prometheus. All of a Sender's methods are safe for concurrent use.
//
// Messages on the Redis channel are the JSON object Flask-SSE publishes,
// {"data": ..., "type": ..., "id": ..., "retry": ...}, so Python and Go
// applications can share channels.
package ginsse

import (
	"context"
	"errors"

	"github.com/gin-gonic/gin"
)

// Errors that callers may branch on with errors.Is.
var (
	// ErrNoSender is returned by Send when the Sender's Middleware did not
	// run for the request.
	ErrNoSender = errors.New("ginsse: no sender in context (use Sender.Middleware)")

	// ErrNotStream is returned by Channels outside a stream route.
	ErrNotStream = errors.New("ginsse: not a stream request")

	// ErrInvalidChannel marks a channel name that is empty, too long or
	// holds characters other than letters, digits and _ . : -.
	ErrInvalidChannel = errors.New("ginsse: invalid channel")

	// ErrInvalidEvent marks an event that cannot be sent as given: a type
	// or id with a line break, an id with NUL, a negative retry, or data
	// that cannot be encoded as JSON.
	ErrInvalidEvent = errors.New("ginsse: invalid event")

	// ErrInvalidLastEventID marks a Last-Event-ID longer than any ginsse
	// writes; the stream answers 400. Any shorter id that is not a position
	// of the stream's channels gets a gap event and the whole history.
	ErrInvalidLastEventID = errors.New("ginsse: invalid Last-Event-ID")

	// ErrInvalidOptions marks Options that cannot work; the message names
	// the field.
	ErrInvalidOptions = errors.New("ginsse: invalid options")

	// ErrUnavailable marks a failure to reach Redis in time.
	ErrUnavailable = errors.New("ginsse: redis unavailable")

	// ErrClosed is returned after the Sender was closed.
	ErrClosed = errors.New("ginsse: sender closed")

	// ErrInvalidSelector marks a Disconnect selector that names no user,
	// tag or channel, a user and a tag at once, a user or tag longer than
	// 256 bytes, or an invalid channel.
	ErrInvalidSelector = errors.New("ginsse: invalid selector")
)

// Register creates a Sender for opts and attaches its streaming GET route
// at the root of group. The group's middleware guards the streams; it can
// call Channels to see exactly which channels a request will subscribe to.
// Register panics when opts are invalid, with a message naming the field;
// use New and Sender.Mount to get an error instead.
func Register(group *gin.RouterGroup, opts Options) *Sender {
	s, err := New(opts)
	if err != nil {
		panic(err)
	}
	s.Mount(group)
	return s
}

// Mount attaches the Sender's streaming GET route at the root of group,
// behind the group's middleware.
func (s *Sender) Mount(group *gin.RouterGroup) {
	// The resolver runs ahead of the group's own middleware so that a
	// guard can ask Channels what the request will subscribe to. It only
	// records; it never answers.
	saved := group.Handlers
	group.Handlers = append(gin.HandlersChain{s.resolve}, saved...)
	defer func() { group.Handlers = saved }()
	group.GET("", s.serve)
}

// Resolve returns middleware that reads a request's channels as the
// stream route does, so that guards that call Channels work on another
// route too: a presence route behind the same guards as the stream, say.
//
//	r.GET("/presence", events.Resolve(), requireLogin, canRead, presence)
func (s *Sender) Resolve() gin.HandlerFunc { return s.resolve }

type senderKey struct{}

// Middleware returns gin middleware that makes the Sender available to
// Send and FromContext in the handlers after it.
func (s *Sender) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(senderKey{}, s)
		c.Next()
	}
}

// FromContext returns the Sender that Middleware put in c.
func FromContext(c *gin.Context) (*Sender, bool) {
	v, ok := c.Get(senderKey{})
	if !ok {
		return nil, false
	}
	s, ok := v.(*Sender)
	return s, ok
}

// Send publishes an event through the Sender that Middleware put in c, to
// the default channel unless Channel says otherwise. It returns
// ErrNoSender when there is none; see Sender.Publish for the rest.
func Send(c *gin.Context, typ string, data any, opts ...SendOption) error {
	s, ok := FromContext(c)
	if !ok {
		return ErrNoSender
	}
	var ctx context.Context = c
	if c.Request != nil {
		ctx = c.Request.Context()
	}
	return s.Publish(ctx, typ, data, opts...)
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
)

// The three servers compared, behind the same routes: GET /stream?channel=
// and POST /send?channel=&data=.
const (
	modeGinsse    = "ginsse"    // this library
	modePerClient = "perclient" // the obvious port of Flask-SSE: one Redis subscription per stream
	modeMemory    = "memory"    // no Redis at all: the ceiling
)

var modes = []string{modeGinsse, modePerClient, modeMemory}

// serve runs one server until the process is killed. history is the
// ginsse server's Options.History (0: off); the others ignore it.
func serve(mode, listen, redisAddr string, history int, maxAge time.Duration, presence bool) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/ready", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	switch mode {
	case modeGinsse:
		logs := &logCounter{counts: map[string]int64{}}
		opts := ginsse.Options{Addr: redisAddr, QueueSize: 256, History: history, Logger: slog.New(logs), MaxStreamAge: maxAge, Presence: presence}
		if strings.Contains(redisAddr, ",") { // a Redis Cluster's nodes: sharded pub/sub, as the example runs it
			cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(redisAddr, ","),
				PoolSize: 3, PipelinePoolSize: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			defer cluster.Close()
			opts.Addr, opts.Client, opts.Sharded = "", cluster, true
		}
		s := ginsse.Register(r.Group("/stream", identity), opts)
		defer s.Close()
		r.GET("/presence", func(c *gin.Context) {
			p, err := s.Presence(c, c.Query("channel"))
			if err != nil {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			c.JSON(http.StatusOK, gin.H{"channel": p.Channel, "users": p.Users, "streams": p.Streams})
		})
		r.POST("/disconnect", func(c *gin.Context) {
			sel := ginsse.Selector{User: c.Query("user"), Channel: c.Query("channel")}
			if err := s.Disconnect(c, sel); err != nil {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			c.Status(http.StatusNoContent)
		})
		r.GET("/stats", func(c *gin.Context) { c.JSON(http.StatusOK, serverStats{Stats: s.Stats(), Warnings: logs.snapshot()}) })
		r.POST("/send", s.Middleware(), func(c *gin.Context) {
			if err := ginsse.Send(c, "", c.Query("data"), ginsse.Channel(c.Query("channel"))); err != nil {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			c.Status(http.StatusNoContent)
		})
	case modePerClient:
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		r.GET("/stream", perClientStream(rdb))
		r.POST("/send", func(c *gin.Context) {
			if err := rdb.Publish(c, c.Query("channel"), c.Query("data")).Err(); err != nil {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			c.Status(http.StatusNoContent)
		})
	case modeMemory:
		b := &broadcaster{subs: map[string]map[chan []byte]bool{}}
		r.GET("/stream", b.stream)
		r.POST("/send", func(c *gin.Context) {
			b.publish(c.Query("channel"), []byte("data: "+c.Query("data")+"\n\n"))
			c.Status(http.StatusNoContent)
		})
	default:
		return fmt.Errorf("unknown server %q", mode)
	}
	srv := &http.Server{Addr: listen, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// identity gives a ginsse stream the identity its query names: user, and
// expires, a time in Unix milliseconds.
func identity(c *gin.Context) {
	id := ginsse.Identity{User: c.Query("user")}
	if ms, err := strconv.ParseInt(c.Query("expires"), 10, 64); err == nil {
		id.ExpiresAt = time.UnixMilli(ms)
	}
	ginsse.SetIdentity(c, id)
}

// serverStats is what GET /stats of the ginsse server answers: the
// Sender's figures and its warnings, counted by what they say.
type serverStats struct {
	ginsse.Stats
	Warnings map[string]int64
}

// logCounter is a slog.Handler that counts warnings instead of printing
// them: a storm would print one per stream. A warning is known by its
// message and the end of its error, the part that names no channel.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (h *logCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg := a.Value.String()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			key += ": " + msg
		}
		return true
	})
	h.mu.Lock()
	h.counts[key]++
	h.mu.Unlock()
	return nil
}

func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) snapshot() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.counts)
}

// perClientStream is the handler most ports of Flask-SSE write: each
// stream opens its own Redis subscription.
func perClientStream(rdb *redis.Client) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		ps := rdb.Subscribe(ctx, c.Query("channel"))
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			c.String(http.StatusServiceUnavailable, err.Error())
			return
		}
		msgs := ps.Channel()
		startStream(c)
		c.Stream(func(w io.Writer) bool {
			select {
			case m, ok := <-msgs:
				if !ok {
					return false
				}
				_, err := fmt.Fprintf(w, "data: %s\n\n", m.Payload)
				return err == nil
			case <-ctx.Done():
				return false
			}
		})
	}
}

// startStream answers 200 with the stream's headers and a first comment,
// as ginsse does, so every server is timed from the same point.
func startStream(c *gin.Context) {
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	_, _ = c.Writer.WriteString(": ok\n\n")
	c.Writer.Flush()
}

// broadcaster is an in-memory fan-out with no Redis: what one process can
// do at best.
type broadcaster struct {
	mu   sync.RWMutex
	subs map[string]map[chan []byte]bool
}

func (b *broadcaster) publish(channel string, frame []byte) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for ch := range b.subs[channel] {
		select {
		case ch <- frame:
		default: // a slow client loses the frame
		}
	}
}

func (b *broadcaster) stream(c *gin.Context) {
	channel := c.Query("channel")
	ch := make(chan []byte, 256)
	b.mu.Lock()
	if b.subs[channel] == nil {
		b.subs[channel] = map[chan []byte]bool{}
	}
	b.subs[channel][ch] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.subs[channel], ch)
		b.mu.Unlock()
	}()
	ctx := c.Request.Context()
	startStream(c)
	c.Stream(func(w io.Writer) bool {
		select {
		case f := <-ch:
			_, err := w.Write(f)
			return err == nil
		case <-ctx.Done():
			return false
		}
	})
}

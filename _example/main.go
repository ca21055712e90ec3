// Command _example is the ginsse demo: a page that subscribes to
// server-sent events and a form that sends them, on an embedded Redis
// unless one is named.
//
//	go run ./_example                      # embedded Redis, history on
//	go run ./_example -redis redis://localhost:6379/0
//	go run ./_example -redis-cluster 127.0.0.1:7000,127.0.0.1:7001
//
// Routes: GET / (the page), GET /stream?channel=NAME,
// GET /presence?channel=NAME, POST /send, POST /revoke and POST /grant,
// and GET /metrics (Prometheus).
package main

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/ginsseprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

//go:embed index.html
var indexHTML []byte

// config is what the flags and their environment fallbacks set.
type config struct {
	addr         string
	redisURL     string
	redisCluster string
	heartbeat    time.Duration
	adminToken   string
	history      int
	maxStreams   int
	maxStreamAge time.Duration
	streamTTL    time.Duration
	presenceTTL  time.Duration
	grace        time.Duration
	joinLeave    bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], log); err != nil {
		log.Error("ginsse example", "err", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line, with environment fallbacks.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("ginsse-example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", envOr("ADDR", "localhost:8080"), "listen address (env ADDR)")
	fs.StringVar(&cfg.redisURL, "redis", os.Getenv("REDIS_URL"), "Redis URL; empty starts an embedded Redis (env REDIS_URL)")
	fs.StringVar(&cfg.redisCluster, "redis-cluster", os.Getenv("REDIS_CLUSTER"), "Redis Cluster nodes host:port,host:port,... with sharded pub/sub (env REDIS_CLUSTER)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 15*time.Second, "heartbeat interval; negative turns it off")
	fs.StringVar(&cfg.adminToken, "admin-token", envOr("ADMIN_TOKEN", "letmein"), "token for the firehose channel (env ADMIN_TOKEN)")
	history, err := strconv.Atoi(envOr("HISTORY", "1000"))
	if err != nil {
		return cfg, fmt.Errorf("HISTORY: %w", err)
	}
	fs.IntVar(&cfg.history, "history", history, "events kept per channel for clients that reconnect; 0 turns it off (env HISTORY)")
	fs.IntVar(&cfg.maxStreams, "max-streams", 0, "streams served at once; past it new ones get a retry hint (0: no limit)")
	fs.DurationVar(&cfg.maxStreamAge, "max-stream-age", 0, "end each stream with a retry hint after about this long, so streams spread over replicas (0: off)")
	fs.DurationVar(&cfg.streamTTL, "stream-ttl", 0, "each stream's identity expires this long after it opens; the stream ends with a retry hint (0: never)")
	fs.DurationVar(&cfg.presenceTTL, "presence-ttl", 30*time.Second, "how long a replica that gives no sign of life still counts in presence (at least 3s)")
	fs.DurationVar(&cfg.grace, "presence-grace", 5*time.Second, "how long a user may be gone before ginsse-leave; back within it, neither leave nor join")
	fs.BoolVar(&cfg.joinLeave, "join-leave", false, "send ginsse-join and ginsse-leave events, data {\"user\": NAME}, on every channel")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.redisURL != "" && cfg.redisCluster != "" {
		return cfg, errors.New("set -redis or -redis-cluster, not both")
	}
	return cfg, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// run serves the demo until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, log *slog.Logger) error {
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	opts := ginsse.Options{Heartbeat: cfg.heartbeat, History: cfg.history, MaxStreams: cfg.maxStreams,
		MaxStreamAge: cfg.maxStreamAge, Presence: true, PresenceTTL: cfg.presenceTTL, StampTime: true,
		JoinLeave: cfg.joinLeave, PresenceGrace: cfg.grace, Logger: log}
	// store keeps the demo's revocations, in the same Redis.
	var store redis.UniversalClient
	switch {
	case cfg.redisCluster != "":
		cluster := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: strings.Split(cfg.redisCluster, ","),
			// Publishing and history reads need few connections per node;
			// pipelines share them rather than a second pool of their own.
			PoolSize:         3,
			PipelinePoolSize: -1,
			DialTimeout:      2 * time.Second,
			ReadTimeout:      2 * time.Second,
			WriteTimeout:     2 * time.Second,
		})
		defer cluster.Close()
		opts.Client, opts.Sharded = cluster, true
		store = cluster
		log.Info("using Redis Cluster with sharded pub/sub", "nodes", cfg.redisCluster)
	case cfg.redisURL != "":
		opts.URL = cfg.redisURL
		ro, err := redis.ParseURL(cfg.redisURL)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		store = redis.NewClient(ro)
		log.Info("using Redis", "url", cfg.redisURL)
	default:
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer mr.Close()
		opts.Addr = mr.Addr()
		store = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		log.Info("using embedded in-process Redis (miniredis); pass -redis to use a real one", "addr", mr.Addr())
	}
	sender, err := ginsse.New(opts)
	if err != nil {
		return err
	}
	defer sender.Close()
	if store != opts.Client {
		defer store.Close()
	}

	srv := &http.Server{
		Addr:              cfg.addr,
		Handler:           newRouter(sender, &revocations{rdb: store, log: log}, cfg.adminToken, cfg.streamTTL),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second, // streams outlive it: ginsse extends the deadline per write
	}
	srv.RegisterOnShutdown(func() { sender.Close() })
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("ginsse example listening", "url", "http://"+cfg.addr+"/", "history", cfg.history)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newRouter builds the demo's routes around a Sender.
func newRouter(sender *ginsse.Sender, rv *revocations, adminToken string, streamTTL time.Duration) *gin.Engine {
	if os.Getenv(gin.EnvGinMode) == "" {
		gin.SetMode(gin.ReleaseMode)
	}
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/", func(c *gin.Context) {
		c.Data(http.StatusOK, "text/html; charset=utf-8", indexHTML)
	})
	guards := []gin.HandlerFunc{identify(streamTTL), guardFirehose(adminToken), rv.guard}
	sender.Mount(r.Group("/stream", guards...))
	// The presence of a channel, behind the same guards as its stream.
	r.GET("/presence", append(append([]gin.HandlerFunc{sender.Resolve()}, guards...), presence(sender))...)
	r.POST("/send", sender.Middleware(), send)
	r.POST("/revoke", revokeHandler(sender, rv))
	r.POST("/grant", grantHandler(rv))
	registry := prometheus.NewRegistry()
	registry.MustRegister(ginsseprom.NewCollector(sender), collectors.NewGoCollector())
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})))
	return r
}

// userName is what the demo accepts as a user: 1–64 letters, digits,
// underscores, dots and hyphens.
var userName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// userRule is the error for a user that is not a userName.
const userRule = "user must be 1-64 letters, digits, '_', '.' or '-'"

// maxData bounds the data /send takes from a client: each event is kept in
// the history and written to every stream of its channel.
const maxData = 64 << 10

// identify attaches the stream's user — the cookie "user", else the query
// parameter "user"; none is anonymous — and, with a ttl, when its
// identity expires. A user that is not a userName answers 400.
func identify(ttl time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		user, err := c.Cookie("user")
		if err != nil || user == "" {
			user = c.Query("user")
		}
		if user != "" && !userName.MatchString(user) {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": userRule})
			return
		}
		id := ginsse.Identity{User: user}
		if ttl > 0 {
			id.ExpiresAt = time.Now().Add(ttl)
		}
		ginsse.SetIdentity(c, id)
		c.Next()
	}
}

// guardFirehose refuses the firehose channel, anywhere in the request's
// channel list, to requests without the admin token.
func guardFirehose(token string) gin.HandlerFunc {
	return func(c *gin.Context) {
		chans, err := ginsse.Channels(c)
		if err != nil || !slices.Contains(chans, "firehose") {
			c.Next() // an invalid request gets its 400 from the stream handler
			return
		}
		given := c.Query("token")
		if given == "" {
			given, _ = c.Cookie("token")
		}
		if subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "the firehose channel needs the admin token (query or cookie \"token\")"})
			return
		}
		c.Next()
	}
}

// send publishes the form's event: 202 once published, 400 for invalid
// input (data over 64 KiB included), 503 when Redis is unreachable.
func send(c *gin.Context) {
	data := c.PostForm("data")
	if len(data) > maxData {
		c.JSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf("data is %d bytes; at most %d", len(data), maxData)})
		return
	}
	opts := []ginsse.SendOption{ginsse.Channel(c.DefaultPostForm("channel", "sse"))}
	if id := c.PostForm("id"); id != "" {
		opts = append(opts, ginsse.ID(id))
	}
	if retry := c.PostForm("retry"); retry != "" {
		ms, err := strconv.ParseUint(retry, 10, 31)
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf("retry %q is not a number of milliseconds", retry)})
			return
		}
		opts = append(opts, ginsse.Retry(time.Duration(ms)*time.Millisecond))
	}
	if err := ginsse.Send(c, c.PostForm("event"), data, opts...); err != nil {
		c.JSON(errorStatus(err), gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"status": "published"})
}

// errorStatus is the answer to a ginsse error: 400 for input it refused,
// 503 when Redis is unreachable or the Sender closed, else 500.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, ginsse.ErrInvalidChannel), errors.Is(err, ginsse.ErrInvalidEvent), errors.Is(err, ginsse.ErrInvalidSelector):
		return http.StatusBadRequest
	case errors.Is(err, ginsse.ErrUnavailable), errors.Is(err, ginsse.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

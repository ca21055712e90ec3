package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
)

// revocations remembers, in the Redis every replica shares, which users
// lost access — to every channel, or to one — so that the guard refuses
// them with 403 when their browser comes back after a Disconnect. A real
// application keeps this in its session or permission store.
type revocations struct {
	rdb redis.UniversalClient
	log *slog.Logger
}

// revocationTTL is how long a revocation lasts unless /grant lifts it.
const revocationTTL = 24 * time.Hour

// key is where the revocation of user on channel ("" for all) is kept.
// The hash tag keeps a user's keys in one cluster slot, so the guard
// checks them in one command.
func revocationKey(user, channel string) string {
	if channel == "" {
		channel = "*"
	}
	return "{ginsse-demo:revoked:" + user + "}:" + channel
}

func (rv *revocations) revoke(ctx context.Context, user, channel string) error {
	return rv.rdb.Set(ctx, revocationKey(user, channel), 1, revocationTTL).Err()
}

func (rv *revocations) grant(ctx context.Context, user, channel string) error {
	return rv.rdb.Del(ctx, revocationKey(user, channel)).Err()
}

// refused reports whether user lost access to any of chans.
func (rv *revocations) refused(ctx context.Context, user string, chans []string) (bool, error) {
	keys := []string{revocationKey(user, "")}
	for _, ch := range chans {
		keys = append(keys, revocationKey(user, ch))
	}
	n, err := rv.rdb.Exists(ctx, keys...).Result()
	return n > 0, err
}

// guard refuses, with 403, a stream whose user lost access to one of its
// channels. When Redis cannot say, it lets the stream in: a browser's
// EventSource gives up for good on anything but 200, and the stream
// itself waits for Redis anyway.
func (rv *revocations) guard(c *gin.Context) {
	id, _ := ginsse.IdentityOf(c)
	chans, err := ginsse.Channels(c)
	if id.User == "" || err != nil {
		c.Next()
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	refused, err := rv.refused(ctx, id.User, chans)
	switch {
	case err != nil:
		rv.log.Warn("revocation check failed; stream let in", "user", id.User, "err", err)
	case refused:
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "access revoked for user " + id.User})
		return
	}
	c.Next()
}

// storeTimeout bounds a request's calls to Redis for revocations.
const storeTimeout = 2 * time.Second

// revokeForm is what POST /revoke and POST /grant take.
type revokeForm struct {
	user, channel string
	final         bool // reconnect=false
}

func parseRevokeForm(c *gin.Context) (revokeForm, string) {
	f := revokeForm{user: c.PostForm("user"), channel: c.PostForm("channel")}
	if !userName.MatchString(f.user) {
		return f, "user is required: " + userRule
	}
	switch c.PostForm("reconnect") {
	case "", "true":
	case "false":
		f.final = true
	default:
		return f, "reconnect must be true or false"
	}
	if f.channel != "" {
		// Checked before anything is stored.
		if err := ginsse.ValidateChannel(f.channel); err != nil {
			return f, err.Error()
		}
	}
	return f, ""
}

// revokeHandler takes access away from a user — on one channel, or on
// all — and ends their open streams on every replica: 202 once the
// Disconnect is published, 400 for invalid input, 503 when Redis is
// unreachable. By default the browser comes back and meets the guard's
// 403; reconnect=false tells the page to stop at once.
func revokeHandler(sender *ginsse.Sender, rv *revocations) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, msg := parseRevokeForm(c)
		if msg != "" {
			c.JSON(http.StatusBadRequest, gin.H{"error": msg})
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
		defer cancel()
		sel := ginsse.User(f.user)
		if f.channel != "" {
			sel = sel.InChannel(f.channel)
		}
		// Stored first, so that the browser the Disconnect sends back
		// already meets the 403.
		if err := rv.revoke(ctx, f.user, f.channel); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "store the revocation: " + err.Error()})
			return
		}
		var opts []ginsse.DisconnectOption
		if f.final {
			opts = append(opts, ginsse.NoReconnect())
		}
		if err := sender.Disconnect(ctx, sel, opts...); err != nil {
			c.JSON(errorStatus(err), gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"status": "revoked", "user": f.user, "channel": f.channel})
	}
}

// grantHandler lifts a revocation made by /revoke (the same user and
// channel): 200, 400 for invalid input, 503 when Redis is unreachable.
func grantHandler(rv *revocations) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, msg := parseRevokeForm(c)
		if msg != "" {
			c.JSON(http.StatusBadRequest, gin.H{"error": msg})
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
		defer cancel()
		if err := rv.grant(ctx, f.user, f.channel); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "granted", "user": f.user, "channel": f.channel})
	}
}

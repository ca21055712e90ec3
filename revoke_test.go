package ginsse_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
)

// identityFromQuery is a guard that takes the stream's identity from the
// query: user, and tag.
func identityFromQuery(c *gin.Context) {
	id := ginsse.Identity{User: c.Query("user")}
	if tag := c.Query("tag"); tag != "" {
		id.Tags = []string{tag}
	}
	ginsse.SetIdentity(c, id)
}

var quickRetry = ginsse.Options{RetryMin: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond}

func withOpts(o ginsse.Options, f func(*ginsse.Options)) ginsse.Options {
	f(&o)
	return o
}

// A Disconnect sent through one replica ends the streams it picks on
// every replica, each with a retry hint, and no other stream.
func TestDisconnectEndsMatchingStreamsOnEveryReplica(t *testing.T) {
	for _, history := range []int{0, 1000} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			disconnectOnEveryReplica(t, miniredis.RunT(t).Addr(), history)
		})
	}
}

func disconnectOnEveryReplica(t *testing.T, addr string, history int) {
	opts := withOpts(quickRetry, func(o *ginsse.Options) { o.History = history; o.Addr = addr })
	a := newTestServer(t, opts, identityFromQuery)
	b := newTestServer(t, opts, identityFromQuery)
	a42x := openStream(t, a.URL+"/stream?user=42&channel=x")
	a42y := openStream(t, a.URL+"/stream?user=42&channel=y")
	a7x := openStream(t, a.URL+"/stream?user=7&channel=x")
	b42 := openStream(t, b.URL+"/stream?user=42&channel=z")
	b7 := openStream(t, b.URL+"/stream?user=7&channel=z")

	start := time.Now()
	require.NoError(t, b.Sender.Disconnect(context.Background(), ginsse.User("42")))
	for _, c := range []*sseClient{a42x, a42y, b42} {
		require.True(t, c.ended(5*time.Second), "user 42's streams end on both replicas")
		assert.EqualValues(t, 50, c.retry.Load(), "with a retry hint")
	}
	t.Logf("3 streams on 2 replicas ended %v after Disconnect", time.Since(start))
	assert.False(t, a7x.ended(200*time.Millisecond), "user 7 stays")
	assert.False(t, b7.ended(0), "user 7 stays")
	assert.EqualValues(t, 2, a.Sender.Stats().Revoked)
	assert.EqualValues(t, 1, b.Sender.Stats().Revoked)

	// A channel's streams, wherever they are.
	require.NoError(t, a.Sender.Disconnect(context.Background(), ginsse.InChannel("z")))
	require.True(t, b7.ended(5*time.Second))
	assert.False(t, a7x.ended(200*time.Millisecond), "channel x stays")
	a.publish(t, "", "still here", ginsse.Channel("x"))
	assert.Equal(t, "still here", a7x.next(t).Data)
	require.Eventually(t, func() bool { return a.Sender.Stats().Streams == 1 && b.Sender.Stats().Streams == 0 },
		5*time.Second, time.Millisecond, "ended streams release what they held")
}

// Tags and a user on one channel pick exactly their streams.
func TestDisconnectSelectors(t *testing.T) {
	ts := newTestServer(t, quickRetry, identityFromQuery)
	ann := openStream(t, ts.URL+"/stream?user=ann&tag=s1&channel=room-1&channel=room-2")
	annOther := openStream(t, ts.URL+"/stream?user=ann&tag=s2&channel=room-2")
	bob := openStream(t, ts.URL+"/stream?user=bob&tag=s1&channel=room-2")
	ctx := context.Background()

	require.NoError(t, ts.Sender.Disconnect(ctx, ginsse.User("ann").InChannel("room-1")))
	require.True(t, ann.ended(5*time.Second), "ann on room-1")
	assert.False(t, annOther.ended(200*time.Millisecond), "ann's stream without room-1 stays")

	require.NoError(t, ts.Sender.Disconnect(ctx, ginsse.Tag("s1")))
	require.True(t, bob.ended(5*time.Second), "tag s1")
	assert.False(t, annOther.ended(200*time.Millisecond), "tag s2 stays")

	require.NoError(t, ts.Sender.Disconnect(ctx, ginsse.User("nobody")))
	assert.False(t, annOther.ended(200*time.Millisecond))
	assert.EqualValues(t, 2, ts.Sender.Stats().Revoked)
}

// With NoReconnect the page is told to stop: a ginsse-disconnect event,
// which sseclient obeys instead of reconnecting.
func TestDisconnectNoReconnectTellsTheClientToStop(t *testing.T) {
	ts := newTestServer(t, withOpts(quickRetry, func(o *ginsse.Options) { o.History = 100 }), identityFromQuery)
	raw := openStream(t, ts.URL+"/stream?user=42")
	var opens int
	c, err := sseclient.New(ts.URL+"/stream?user=42", sseclient.Options{
		OnState: func(sc sseclient.StateChange) {
			if sc.State == sseclient.Open {
				opens++
			}
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var types []string
	go func() {
		for e, err := range c.Events(ctx) {
			if err != nil {
				done <- err
				return
			}
			types = append(types, e.Type)
		}
		done <- nil
	}()
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, ts.Sender.Disconnect(ctx, ginsse.User("42"), ginsse.NoReconnect()))

	e := raw.next(t)
	assert.Equal(t, "ginsse-disconnect", e.Type)
	assert.JSONEq(t, `{"reason":"revoked"}`, e.Data)
	require.True(t, raw.ended(5*time.Second))
	assert.EqualValues(t, 50, raw.retry.Load(), "a page that ignores the event meets the guard after the hint")

	err = <-done
	require.ErrorIs(t, err, sseclient.ErrDisconnected)
	assert.Equal(t, []string{"ginsse-disconnect"}, types)
	assert.Equal(t, 1, opens, "sseclient did not reconnect")
}

// A stream ended by a Disconnect resumes through the guard by its
// Last-Event-ID and misses nothing.
func TestDisconnectedStreamResumesWithNothingLost(t *testing.T) {
	ts := newTestServer(t, withOpts(quickRetry, func(o *ginsse.Options) { o.History = 1000 }), identityFromQuery)
	c, err := sseclient.New(ts.URL+"/stream?user=42", sseclient.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan string, 100)
	go func() {
		for e, err := range c.Events(ctx) {
			if err != nil {
				return
			}
			got <- e.Data
		}
	}()
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 1 }, 5*time.Second, time.Millisecond)
	const total = 40
	for i := range total {
		ts.publish(t, "", strconv.Itoa(i))
		if i%10 == 5 {
			require.NoError(t, ts.Sender.Disconnect(ctx, ginsse.User("42")))
		}
	}
	for i := range total {
		select {
		case d := <-got:
			require.Equal(t, strconv.Itoa(i), d, "every event once, in order, across disconnects")
		case <-ctx.Done():
			t.Fatalf("event %d never came", i)
		}
	}
	assert.GreaterOrEqual(t, ts.Sender.Stats().Revoked, int64(1))
}

// A Sender whose subscription is down when a Disconnect is sent applies
// it once the subscription is back, and only once: a stream opened after
// that is not ended by it.
func TestDisconnectDuringSubscriptionOutageIsAppliedOnceBack(t *testing.T) {
	for _, history := range []int{0, 100} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			disconnectDuringOutage(t, miniredis.RunT(t).Addr(), history)
		})
	}
}

// disconnectDuringOutage cuts replica A off the Redis at addr, sends a
// Disconnect through replica B, and lets A back.
func disconnectDuringOutage(t *testing.T, addr string, history int) {
	opts := withOpts(quickRetry, func(o *ginsse.Options) { o.History = history; o.Timeout = 300 * time.Millisecond; o.Addr = addr })
	b := newTestServer(t, opts, identityFromQuery)
	proxy := newProxy(t, addr)
	a := newTestServer(t, withOpts(opts, func(o *ginsse.Options) { o.Addr = proxy.Addr() }), identityFromQuery)
	c := openStream(t, a.URL+"/stream?user=42")

	proxy.cut()
	require.NoError(t, b.Sender.Disconnect(context.Background(), ginsse.User("42")))
	assert.False(t, c.ended(300*time.Millisecond), "the command has not reached A")
	proxy.heal()
	require.True(t, c.ended(10*time.Second), "A applies it once its subscription is back")
	assert.EqualValues(t, 1, a.Sender.Stats().Revoked)

	again := openStream(t, a.URL+"/stream?user=42")
	proxy.cut() // and back: the command is read again, and passed over
	proxy.heal()
	require.Eventually(t, func() bool {
		_ = b.Sender.Publish(context.Background(), "", "back")
		select {
		case e := <-again.events:
			return e.Data == "back"
		case <-time.After(20 * time.Millisecond):
			return false
		}
	}, 10*time.Second, time.Millisecond, "A's subscription is back")
	assert.False(t, again.ended(300*time.Millisecond), "a command applies once")
	assert.EqualValues(t, 1, a.Sender.Stats().Revoked)
}

// No client can subscribe to the control channel, and no Send can
// publish to it: its name is one no channel may have.
func TestControlChannelIsUnreachableFromClientsAndSend(t *testing.T) {
	ts := newTestServer(t, quickRetry, identityFromQuery)
	victim := openStream(t, ts.URL+"/stream?user=42")
	for _, name := range []string{"ginsse/control", "ginsse%2Fcontrol", "ginsse*", "*"} {
		_, status := dialStream(t, ts.URL+"/stream?channel="+name, nil)
		assert.Equal(t, http.StatusBadRequest, status, "channel %q", name)
	}
	err := ts.Sender.Publish(context.Background(), "", `{"user":"42","id":"9999999999999-0"}`, ginsse.Channel("ginsse/control"))
	require.ErrorIs(t, err, ginsse.ErrInvalidChannel)
	ts.publish(t, "", `{"user":"42","id":"9999999999999-0"}`)
	assert.Equal(t, `{"user":"42","id":"9999999999999-0"}`, victim.next(t).Data, "an event, not a command")
	assert.False(t, victim.ended(200*time.Millisecond))
	assert.Zero(t, ts.Sender.Stats().Revoked)
}

func TestDisconnectRefusesSelectorsThatPickNothing(t *testing.T) {
	ts := newTestServer(t, quickRetry)
	for _, sel := range []ginsse.Selector{
		{},
		{User: "a", Tag: "b"},
		{User: strings.Repeat("u", 257)},
		ginsse.InChannel("bad channel"),
		ginsse.User("42").InChannel("*"),
	} {
		err := ts.Sender.Disconnect(context.Background(), sel)
		assert.ErrorIs(t, err, ginsse.ErrInvalidSelector, "%+v", sel)
	}
	require.NoError(t, ts.Sender.Close())
	assert.ErrorIs(t, ts.Sender.Disconnect(context.Background(), ginsse.User("42")), ginsse.ErrClosed)
}

// Refresh extends a stream before it expires, without a reconnect; once
// it fails the stream ends at the ExpiresAt it had.
func TestRefreshExtendsAStreamUntilItFails(t *testing.T) {
	var calls int
	refreshed := make(chan struct{}, 10)
	opts := withOpts(quickRetry, func(o *ginsse.Options) {
		o.Timeout = 100 * time.Millisecond
		o.Refresh = func(ctx context.Context, id ginsse.Identity) (time.Time, error) {
			defer func() { refreshed <- struct{}{} }()
			calls++
			if id.User != "42" || calls > 2 {
				return time.Time{}, errors.New("session gone")
			}
			return id.ExpiresAt.Add(200 * time.Millisecond), nil
		}
	})
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(200 * time.Millisecond)})
	}
	ts := newTestServer(t, opts, guard)
	start := time.Now()
	c := openStream(t, ts.URL+"/stream")
	require.True(t, c.ended(5*time.Second))
	lived := time.Since(start)
	assert.GreaterOrEqual(t, lived, 600*time.Millisecond, "200 ms, extended twice by 200 ms")
	assert.Len(t, refreshed, 3)
	st := ts.Sender.Stats()
	assert.EqualValues(t, 2, st.Refreshes)
	assert.EqualValues(t, 1, st.Expired)
	assert.EqualValues(t, 50, c.retry.Load())
}

// A Refresh that does not answer in time ends the stream at its ExpiresAt,
// and is cancelled.
func TestRefreshWithoutAnAnswerEndsTheStreamAtExpiry(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	opts := withOpts(quickRetry, func(o *ginsse.Options) {
		o.Timeout = 100 * time.Millisecond
		o.Refresh = func(ctx context.Context, id ginsse.Identity) (time.Time, error) {
			<-ctx.Done()
			cancelled <- struct{}{}
			return time.Time{}, ctx.Err()
		}
	})
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(300 * time.Millisecond)})
	}
	ts := newTestServer(t, opts, guard)
	c := openStream(t, ts.URL+"/stream")
	require.True(t, c.ended(5*time.Second))
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("Refresh was not cancelled")
	}
	assert.EqualValues(t, 1, ts.Sender.Stats().Expired)
	assert.Zero(t, ts.Sender.Stats().Refreshes)
}

// A Refresh whose answers extend the stream by a little is asked at most
// once per Timeout, not again as soon as it answered.
func TestRefreshIsAskedAtMostOncePerTimeout(t *testing.T) {
	var calls atomic.Int64
	opts := withOpts(quickRetry, func(o *ginsse.Options) {
		o.Timeout = 100 * time.Millisecond
		o.Refresh = func(ctx context.Context, id ginsse.Identity) (time.Time, error) {
			calls.Add(1)
			return time.Now().Add(110 * time.Millisecond), nil // asks again 10 ms on
		}
	})
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(200 * time.Millisecond)})
	}
	ts := newTestServer(t, opts, guard)
	start := time.Now()
	c := openStream(t, ts.URL+"/stream")
	assert.False(t, c.ended(600*time.Millisecond), "each answer extends the stream")
	elapsed := time.Since(start)
	c.close()
	assert.Positive(t, calls.Load())
	assert.LessOrEqual(t, calls.Load(), int64(elapsed/(100*time.Millisecond))+1, "in %v", elapsed)
}

// A Refresh that ignores its cancelled context does not keep an ended
// stream holding its subscription: the stream lets go after Timeout.
func TestRefreshIgnoringItsContextDoesNotHoldTheStream(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	opts := withOpts(quickRetry, func(o *ginsse.Options) {
		o.Timeout = 100 * time.Millisecond
		o.Refresh = func(ctx context.Context, id ginsse.Identity) (time.Time, error) {
			<-release
			return time.Time{}, errors.New("late")
		}
	})
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(300 * time.Millisecond)})
	}
	ts := newTestServer(t, opts, guard)
	c := openStream(t, ts.URL+"/stream")
	require.True(t, c.ended(5*time.Second))
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 0 },
		5*time.Second, 10*time.Millisecond, "the ended stream still holds its place")
}

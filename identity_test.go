package ginsse_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
)

// A stream rotated at MaxStreamAge, or whose identity expires, comes back
// with its Last-Event-ID, as a browser does, and misses nothing.
func TestMaxStreamAgeRotatesAndLosesNothing(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 1000, MaxStreamAge: 300 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	followAcrossEnds(t, ts)
	assert.GreaterOrEqual(t, ts.Sender.Stats().Rotated, int64(2), "1.2 s of streaming at a 225–300 ms age")
}

func TestExpiryLosesNothing(t *testing.T) {
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(250 * time.Millisecond)})
	}
	ts := newTestServer(t, ginsse.Options{History: 1000, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, guard)
	followAcrossEnds(t, ts)
	assert.GreaterOrEqual(t, ts.Sender.Stats().Expired, int64(2), "1.2 s of streaming with 250 ms identities")
}

// followAcrossEnds follows the default channel with sseclient while 60
// events are sent over 1.2 s, and requires each of them once, in order.
func followAcrossEnds(t *testing.T, ts *testServer) {
	c, err := sseclient.New(ts.URL+"/stream", sseclient.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan sseclient.Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range c.Events(ctx) {
			if err != nil {
				return
			}
			got <- e
		}
	}()
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 1 }, 5*time.Second, time.Millisecond)
	const total = 60
	for i := range total {
		ts.publish(t, "", strconv.Itoa(i))
		time.Sleep(20 * time.Millisecond)
	}
	for i := range total {
		select {
		case e := <-got:
			require.Equal(t, strconv.Itoa(i), e.Data, "every event once, in order, across ends (%+v)", e)
		case <-ctx.Done():
			t.Fatalf("event %d never came", i)
		}
	}
	cancel()
	<-done
}

// logBuffer collects a Sender's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A stream whose identity expires ends with a retry hint, having answered
// 200: its browser comes back through the guard.
func TestExpiredIdentityEndsTheStreamWithARetryHint(t *testing.T) {
	var logs logBuffer
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", Tags: []string{"session-7"}, ExpiresAt: time.Now().Add(200 * time.Millisecond)})
	}
	ts := newTestServer(t, ginsse.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		RetryMin: 100 * time.Millisecond, RetryMax: 100 * time.Millisecond}, guard)
	start := time.Now()
	c := openStream(t, ts.URL+"/stream")
	require.True(t, c.ended(5*time.Second), "the stream ends when its identity expires")
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "not before")
	assert.EqualValues(t, 100, c.retry.Load(), "with a retry hint")
	assert.EqualValues(t, 1, ts.Sender.Stats().Expired)
	assert.Zero(t, ts.Sender.Stats().Rotated)
	line := logs.String()
	for _, want := range []string{"reason=expired", "user=42", "session-7"} {
		assert.True(t, strings.Contains(line, want), "the log says %q: %s", want, line)
	}
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 0 }, 5*time.Second, time.Millisecond,
		"the stream released what it held")
}

// Streams without a deadline live on; a stream that leaves first takes
// its deadline with it.
func TestStreamsWithoutDeadlineLiveOn(t *testing.T) {
	guard := func(c *gin.Context) {
		if c.Query("ttl") != "" {
			d, _ := time.ParseDuration(c.Query("ttl"))
			ginsse.SetIdentity(c, ginsse.Identity{User: "u", ExpiresAt: time.Now().Add(d)})
		}
	}
	ts := newTestServer(t, ginsse.Options{}, guard)
	forever := openStream(t, ts.URL+"/stream")
	gone := openStream(t, ts.URL+"/stream?ttl=1h")
	gone.close()
	short := openStream(t, ts.URL+"/stream?ttl=100ms")
	require.True(t, short.ended(5*time.Second))
	assert.False(t, forever.ended(300*time.Millisecond), "no identity, no end")
	assert.EqualValues(t, 1, ts.Sender.Stats().Expired)
}

func TestMaxStreamAgeMustNotBeNegative(t *testing.T) {
	_, err := ginsse.New(ginsse.Options{MaxStreamAge: -time.Second})
	require.ErrorIs(t, err, ginsse.ErrInvalidOptions)
	assert.Contains(t, err.Error(), "MaxStreamAge")
}

// A stream the server ends before it settled — here an identity that
// expired before it opened — still leaves its client an id to resume
// from, so what was published meanwhile is not lost.
func TestStreamEndedBeforeItSettledLeavesItsClientAnID(t *testing.T) {
	guard := func(c *gin.Context) {
		if c.Query("expired") != "" {
			ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(-time.Second)})
		}
	}
	mr := miniredis.RunT(t)
	far := newSlowProxy(t, mr.Addr(), 30*time.Millisecond) // the window's first read is still out when the stream starts
	ts := newTestServer(t, ginsse.Options{Addr: far.Addr(), History: 100, RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond}, guard)
	for i := range 5 {
		ch := "fresh" + strconv.Itoa(i) // a channel new to the Sender: its window is not live yet
		c := openStream(t, ts.URL+"/stream?expired=1&channel="+ch)
		require.True(t, c.ended(5*time.Second))
		id := c.lastEventID()
		require.NotEmpty(t, id, "the stream ended without giving its client an id")
		ts.publish(t, "", "while away", ginsse.Channel(ch))
		r := resumeStream(t, ts.URL+"/stream?channel="+ch, id)
		assert.Equal(t, "while away", r.next(t).Data)
		r.close()
	}
}

// The same for a stream that opened while Redis was down: it waits for
// Redis, up to Options.Timeout, to give its client an id before it ends.
func TestStreamEndedDuringAnOutageWaitsForItsID(t *testing.T) {
	guard := func(c *gin.Context) {
		ginsse.SetIdentity(c, ginsse.Identity{User: "42", ExpiresAt: time.Now().Add(-time.Second)})
	}
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	ts := newTestServer(t, ginsse.Options{Addr: addr, History: 100, Timeout: 3 * time.Second,
		RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond}, guard)
	mr.Close()
	c := openStream(t, ts.URL+"/stream?channel=outage") // answers 200 after Timeout, without Redis
	back := miniredis.NewMiniRedis()
	require.NoError(t, back.StartAddr(addr))
	t.Cleanup(back.Close)
	require.True(t, c.ended(10*time.Second))
	assert.NotEmpty(t, c.lastEventID(), "the stream ended without giving its client an id")
	assert.EqualValues(t, 1, ts.Sender.Stats().OutageOpens)
}

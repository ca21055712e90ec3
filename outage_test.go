package ginsse_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A browser's EventSource gives up for good on any answer but 200, so a
// stream opened while Redis is down answers 200 and waits; once Redis is
// back it gets what is published, with history on and off.
func TestStreamOpenedWhileRedisIsDownGetsEventsOnceBack(t *testing.T) {
	for _, history := range []int{0, 100} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			ts := newTestServer(t, ginsse.Options{History: history, Timeout: 300 * time.Millisecond})
			addr := ts.Redis.Addr()
			ts.Redis.Close()
			c := openStream(t, ts.URL+"/stream?channel=outage")
			assert.False(t, c.ended(100*time.Millisecond), "the stream stays open")
			assert.EqualValues(t, 1, ts.Sender.Stats().OutageOpens)

			mr := miniredis.NewMiniRedis()
			require.NoError(t, mr.StartAddr(addr))
			t.Cleanup(mr.Close)
			require.Eventually(t, func() bool { return mr.PubSubNumSub("outage")["outage"] == 1 }, 10*time.Second, 5*time.Millisecond)
			ts.publish(t, "", "after the outage", ginsse.Channel("outage"))
			assert.Equal(t, "after the outage", c.next(t).Data)
		})
	}
}

// With history on, a stream opened during the outage also gets the events
// another replica published after Redis came back but before this
// Sender's subscription did.
func TestStreamOpenedWhileRedisIsDownGetsWhatHistoryHolds(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100, Timeout: 300 * time.Millisecond})
	addr := ts.Redis.Addr()
	ts.Redis.Close()
	c := openStream(t, ts.URL+"/stream?channel=outage")

	mr := miniredis.NewMiniRedis()
	require.NoError(t, mr.StartAddr(addr))
	t.Cleanup(mr.Close)
	other, err := ginsse.New(ginsse.Options{Addr: addr, History: 100})
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	require.NoError(t, other.Publish(context.Background(), "", "published elsewhere", ginsse.Channel("outage")))
	assert.Equal(t, "published elsewhere", c.next(t).Data)
	ts.publish(t, "", "live", ginsse.Channel("outage"))
	assert.Equal(t, "live", c.next(t).Data)
}

// A stream cut while Redis is down reconnects, with its Last-Event-ID, to
// a 200, and misses nothing once Redis is back.
func TestReconnectDuringOutageIsNot503(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100, Timeout: 300 * time.Millisecond})
	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "before")
	require.Equal(t, "before", c.next(t).Data)
	id := c.lastEventID()
	c.close()
	addr := ts.Redis.Addr()
	ts.Redis.Close()
	r := resumeStream(t, ts.URL+"/stream", id) // requires 200
	mr := miniredis.NewMiniRedis()
	require.NoError(t, mr.StartAddr(addr))
	t.Cleanup(mr.Close)
	require.Eventually(t, func() bool { return mr.PubSubNumSub("sse")["sse"] == 1 }, 10*time.Second, 5*time.Millisecond)
	ts.publish(t, "", "after")
	e := r.next(t)
	// miniredis lost the history with its restart, so the resume names a
	// gap before the live event.
	if e.Type == "ginsse-gap" {
		e = r.next(t)
	}
	assert.Equal(t, "after", e.Data)
}

// At Close each stream gets a retry hint, spread over RetryMin..RetryMax,
// so a replica's browsers do not all come back in the same instant.
func TestCloseSpreadsRetryHints(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	var cs []*sseClient
	for range 100 {
		cs = append(cs, openStream(t, ts.URL+"/stream"))
	}
	require.NoError(t, ts.Sender.Close())
	var hints []int64
	for _, c := range cs {
		require.True(t, c.ended(5*time.Second))
		hints = append(hints, c.retry.Load())
	}
	lo, hi := slices.Min(hints), slices.Max(hints)
	assert.GreaterOrEqual(t, lo, int64(1000))
	assert.LessOrEqual(t, hi, int64(5000))
	assert.GreaterOrEqual(t, hi-lo, int64(1000), "hints spread over at least a second: %d..%d ms", lo, hi)
}

// Past MaxStreams a stream gets 200, a retry hint and an end, which a
// browser survives, instead of an error, which it does not.
func TestMaxStreamsShedsWithRetryHint(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{MaxStreams: 2, RetryMin: 2 * time.Second, RetryMax: 3 * time.Second})
	a := openStream(t, ts.URL+"/stream")
	openStream(t, ts.URL+"/stream")
	shed, status := dialStream(t, ts.URL+"/stream", nil)
	require.Equal(t, http.StatusOK, status)
	assert.True(t, shed.ended(5*time.Second), "a shed stream ends at once")
	assert.GreaterOrEqual(t, shed.retry.Load(), int64(2000))
	assert.LessOrEqual(t, shed.retry.Load(), int64(3000))
	assert.EqualValues(t, 1, ts.Sender.Stats().Shed)
	assert.Equal(t, 2, ts.Sender.Stats().Streams)

	a.close()
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 1 }, 5*time.Second, time.Millisecond)
	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "room again")
	assert.Equal(t, "room again", c.next(t).Data)
}

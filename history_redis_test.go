package ginsse_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Redis without persistence forgets every history when it restarts: a
// client that resumes afterwards is told of the gap and gets what was
// published since the restart.
func TestRealRedisHistoryRestartBetweenDisconnectAndReconnect(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr(), History: 100})
	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "before")
	last := c.next(t)
	c.close()

	r.restart()
	require.Eventually(t, func() bool {
		return ts.Sender.Publish(context.Background(), "", "after") == nil
	}, 10*time.Second, 20*time.Millisecond)

	rs := resumeStream(t, ts.URL+"/stream", last.LastEventID)
	gap := rs.next(t)
	assert.Equal(t, "ginsse-gap", gap.Type)
	assert.Equal(t, "after", rs.next(t).Data)
}

// When the subscription connection drops while Redis stays up, events
// published meanwhile are in the history, and open streams replay them:
// every event arrives once, in order, without the client reconnecting.
func TestRealRedisHistorySubscriptionLossIsLossless(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr(), History: 10000})
	c := openStream(t, ts.URL+"/stream")
	admin := r.client()
	ctx := context.Background()

	const total = 2000
	done := make(chan error, 1)
	go func() {
		for i := range total {
			if i%400 == 200 {
				// Drop the Sender's subscription connection mid-flow.
				if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
					done <- err
					return
				}
			}
			if err := ts.Sender.Publish(ctx, "", strconv.Itoa(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range total {
		require.Equal(t, strconv.Itoa(i), c.next(t).Data, "event %d", i)
	}
	require.NoError(t, <-done)
	assert.GreaterOrEqual(t, ts.Sender.Stats().Reconnects, int64(1))
}

// Fault timing on a real Redis: while redis-server is down, a new stream
// and a resuming one both answer 200 (a 503 would end a browser tab's
// updates for good). Once it is back, both get what is published: with
// history, even what was published before this Sender's subscription came
// back; without, what is published after it.
func TestRealRedisStreamsOpenedDuringOutage(t *testing.T) {
	for _, history := range []int{0, 100} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			r := startRedis(t)
			ts := newTestServer(t, ginsse.Options{Addr: r.Addr(), History: history, Timeout: 500 * time.Millisecond})
			c := openStream(t, ts.URL+"/stream")
			ts.publish(t, "", "before")
			require.Equal(t, "before", c.next(t).Data)
			id := c.lastEventID()
			c.close()

			r.kill()
			fresh := openStream(t, ts.URL+"/stream?channel=outage")
			resumed := resumeStream(t, ts.URL+"/stream", id)
			assert.EqualValues(t, 2, ts.Sender.Stats().OutageOpens)
			assert.False(t, fresh.ended(200*time.Millisecond), "streams opened during the outage stay open")

			r.start()
			if history == 0 {
				admin := r.client()
				require.Eventually(t, func() bool {
					n := admin.PubSubNumSub(context.Background(), "sse", "outage").Val()
					return n["sse"] == 1 && n["outage"] == 1
				}, 10*time.Second, 20*time.Millisecond)
			}
			require.Eventually(t, func() bool {
				return ts.Sender.Publish(context.Background(), "", "back") == nil
			}, 10*time.Second, 20*time.Millisecond)
			require.Eventually(t, func() bool {
				return ts.Sender.Publish(context.Background(), "", "to the newcomer", ginsse.Channel("outage")) == nil
			}, 10*time.Second, 20*time.Millisecond)
			e := resumed.next(t)
			if history > 0 {
				require.Equal(t, "ginsse-gap", e.Type, "the restarted Redis kept no history, and the resume says so")
				e = resumed.next(t)
			}
			assert.Equal(t, "back", e.Data)
			assert.Equal(t, "to the newcomer", fresh.next(t).Data)
		})
	}
}

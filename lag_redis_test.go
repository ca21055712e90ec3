package ginsse_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
)

// Live events count in the delivery lag, with History from their
// position, without it from the StampTime in the message; replayed
// events do not.
func TestDeliveryLag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    ginsse.Options
		counted bool
	}{
		{"history", ginsse.Options{History: 100}, true},
		{"stamped", ginsse.Options{StampTime: true}, true},
		{"neither", ginsse.Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.opts)
			c := openStream(t, ts.URL+"/stream")
			for i := range 20 {
				ts.publish(t, "", strconv.Itoa(i))
			}
			for range 20 {
				c.next(t)
			}
			st := ts.Sender.Stats()
			if !tc.counted {
				assert.Zero(t, st.DeliveryLag.Count)
				return
			}
			assert.EqualValues(t, 20, st.DeliveryLag.Count)
			assert.LessOrEqual(t, st.LagP99, time.Second, "loopback and one clock")
			assert.Positive(t, st.LagP50)
			if tc.opts.History > 0 {
				r := resumeStream(t, ts.URL+"/stream", "0") // the whole history again
				for range 20 {
					r.next(t)
				}
				assert.EqualValues(t, 20, ts.Sender.Stats().DeliveryLag.Count, "a replay is no delivery lag")
			}
		})
	}
}

// StampTime adds "t" to the message; without it the message is what
// Flask-SSE publishes.
func TestStampTimeOnlyWhenAsked(t *testing.T) {
	for _, stamp := range []bool{false, true} {
		ts := newTestServer(t, ginsse.Options{StampTime: stamp})
		rdb := redis.NewClient(&redis.Options{Addr: ts.Redis.Addr()})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sub := rdb.Subscribe(ctx, "sse")
		_, err := sub.Receive(ctx)
		require.NoError(t, err)
		require.NoError(t, ts.Sender.Publish(ctx, "", "x"))
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &m))
		_, has := m["t"]
		assert.Equal(t, stamp, has, "%s", msg.Payload)
		sub.Close()
		rdb.Close()
		cancel()
	}
}

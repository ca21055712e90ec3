package ginsse_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRealRedisTwoSendersDeliverToEachOther(t *testing.T) {
	r := startRedis(t)
	a := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	b := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	ca := openStream(t, a.URL+"/stream?channel=shared")
	cb := openStream(t, b.URL+"/stream?channel=shared")
	a.publish(t, "", "from a", ginsse.Channel("shared"))
	b.publish(t, "", "from b", ginsse.Channel("shared"))
	for _, c := range []*sseClient{ca, cb} {
		assert.Equal(t, "from a", c.next(t).Data)
		assert.Equal(t, "from b", c.next(t).Data)
		select {
		case e := <-c.events:
			t.Fatalf("event delivered twice: %+v", e)
		default:
		}
	}
}

func TestRealRedisNumSubFollowsStreams(t *testing.T) {
	r := startRedis(t)
	admin := r.client()
	ctx := context.Background()
	a := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	b := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	var cs []*sseClient
	for range 20 {
		cs = append(cs, openStream(t, a.URL+"/stream?channel=n"))
	}
	numsub := func() int64 { return admin.PubSubNumSub(ctx, "n").Val()["n"] }
	assert.Equal(t, int64(1), numsub(), "one subscription for all of a Sender's streams")
	other := openStream(t, b.URL+"/stream?channel=n")
	assert.Equal(t, int64(2), numsub())
	other.close()
	for _, c := range cs {
		c.close()
	}
	require.Eventually(t, func() bool { return numsub() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// redisConnections counts the clients connected to r, less the caller's.
func redisConnections(t testing.TB, admin *redis.Client) int {
	t.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	require.NoError(t, err)
	return strings.Count(strings.TrimSpace(list), "\n") // one line per client; admin's own is not counted
}

func TestRealRedis500StreamsUseAHandfulOfConnections(t *testing.T) {
	for _, history := range []int{0, 1000} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) { streamsOnFewConnections(t, history) })
	}
}

// streamsOnFewConnections opens 500 streams on 5 channels, publishes, and
// counts the connections the Sender holds, as Redis lists them.
func streamsOnFewConnections(t *testing.T, history int) {
	r := startRedis(t)
	admin := r.client()
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr(), History: history})
	var cs []*sseClient
	var mu sync.Mutex
	for batch := range 10 {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				c := openStream(t, ts.URL+"/stream?channel=ch"+strconv.Itoa((batch*50+i)%5))
				mu.Lock()
				cs = append(cs, c)
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	require.Equal(t, 500, ts.Sender.Stats().Streams)
	for i := range 5 {
		ts.publish(t, "", "to "+strconv.Itoa(i), ginsse.Channel("ch"+strconv.Itoa(i)))
	}
	for _, c := range cs {
		assert.True(t, strings.HasPrefix(c.next(t).Data, "to "))
	}
	n := redisConnections(t, admin)
	assert.LessOrEqual(t, n, 4, "connections held by the Sender with 500 streams open")
	t.Logf("500 streams, history %d: %d Redis connections", history, n)
	for _, c := range cs {
		c.close()
	}
	require.Eventually(t, func() bool {
		return len(streamChannels(admin.PubSubChannels(context.Background(), "*").Val())) == 0
	}, 10*time.Second, 10*time.Millisecond)
}

func TestRealRedisKilledAndRestartedMidStream(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	var cs []*sseClient
	for i := range 9 {
		cs = append(cs, openStream(t, ts.URL+"/stream?channel=k"+strconv.Itoa(i%3)))
	}
	r.kill()
	start := time.Now()
	err := ts.Sender.Publish(context.Background(), "", "lost", ginsse.Channel("k0"))
	assert.ErrorIs(t, err, ginsse.ErrUnavailable)
	assert.Less(t, time.Since(start), 3*time.Second, "Send fails fast while Redis is down")
	for _, c := range cs {
		assert.False(t, c.ended(50*time.Millisecond), "streams stay open while Redis is down")
	}
	r.start()
	admin := r.client()
	require.Eventually(t, func() bool {
		n := admin.PubSubNumSub(context.Background(), "k0", "k1", "k2").Val()
		return n["k0"] == 1 && n["k1"] == 1 && n["k2"] == 1
	}, 10*time.Second, 20*time.Millisecond, "every channel is subscribed again")
	assert.GreaterOrEqual(t, ts.Sender.Stats().Reconnects, int64(1))
	for i := range 3 {
		ts.publish(t, "", "back "+strconv.Itoa(i), ginsse.Channel("k"+strconv.Itoa(i)))
	}
	for i, c := range cs {
		assert.Equal(t, "back "+strconv.Itoa(i%3), c.next(t).Data, "the same open stream gets live events again")
	}
}

func TestRealRedisFlaskSSEPayloads(t *testing.T) {
	r := startRedis(t)
	admin := r.client()
	ctx := context.Background()
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	c := openStream(t, ts.URL+"/stream")

	// What Python's flask_sse.sse.publish puts on Redis (json.dumps).
	for _, tc := range []struct {
		raw  string
		want sseEvent
	}{
		{`{"data": {"message": "Hello!"}, "type": "greeting", "id": 5, "retry": 3000}`, sseEvent{"greeting", `{"message": "Hello!"}`, "5", 3000}},
		{`{"data": "plain text"}`, sseEvent{"message", "plain text", "5", 3000}},
		{`{"unknown": true, "id": "x1", "data": "reordered", "type": "t"}`, sseEvent{"t", "reordered", "x1", 3000}},
		{`hola`, sseEvent{"message", "hola", "x1", 3000}},
	} {
		require.NoError(t, admin.Publish(ctx, "sse", tc.raw).Err())
		assert.Equal(t, tc.want, c.next(t), tc.raw)
	}

	// What ginsse publishes, as a Flask-SSE stream reads it.
	sub := admin.Subscribe(ctx, "sse")
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	ts.publish(t, "greeting", "hi", ginsse.ID("7"), ginsse.Retry(time.Second))
	require.NoError(t, ts.Sender.Publish(ctx, "", map[string]int{"n": 1}))
	for _, want := range []string{`{"data":"hi","type":"greeting","id":"7","retry":1000}`, `{"data":{"n":1}}`} {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		assert.JSONEq(t, want, msg.Payload)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(msg.Payload), &m))
		assert.Contains(t, m, "data")
	}
}

func TestRealRedisCLIPublishReachesStream(t *testing.T) {
	r := startRedis(t)
	cli := needBinary(t, "redis-cli")
	ts := newTestServer(t, ginsse.Options{Addr: r.Addr()})
	c := openStream(t, ts.URL+"/stream")
	out, err := exec.Command(cli, "-p", r.port, "PUBLISH", "sse", "hola").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "hola", c.next(t).Data)
	out, err = exec.Command(cli, "-p", r.port, "PUBLISH", "sse", `{"data": "hello from the shell", "type": "greeting"}`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, sseEvent{Type: "greeting", Data: "hello from the shell", Retry: -1}, c.next(t))
}

package ginsse_test

import (
	"context"
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

// Channels that arrive together share their round trips against a real
// Redis: 1,000 channels new to the Sender cost a handful of SUBSCRIBE
// commands and pipelines, not 1,000 of each, and every stream then gets
// what its channel held before and what is sent after.
func TestChannelsArrivingTogetherShareRoundTrips(t *testing.T) {
	r := startRedis(t)
	const n = 1000
	var hooked hookCounts
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	client.AddHook(&hooked)
	t.Cleanup(func() { client.Close() })
	s, err := ginsse.New(ginsse.Options{Client: client, History: 100})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	names := make([]string, n)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
		require.NoError(t, s.Publish(ctx, "before", "b"+strconv.Itoa(i), ginsse.Channel(names[i])))
	}
	admin := r.client()
	require.NoError(t, admin.ConfigResetStat(ctx).Err())
	hooked.reset()

	streams := ginsse.OpenTogether(s, names)
	for i, st := range streams {
		require.True(t, st.Confirmed(10*time.Second), "channel %d not confirmed", i)
	}
	for i := range names {
		require.NoError(t, s.Publish(ctx, "after", "a"+strconv.Itoa(i), ginsse.Channel(names[i])))
	}
	for i, st := range streams {
		got, ok := st.Data(10*time.Second, 2)
		assert.True(t, ok, "stream %d got %q", i, got)
		assert.Equal(t, []string{"b" + strconv.Itoa(i), "a" + strconv.Itoa(i)}, got, "stream %d", i)
	}

	subs, reads := commandCalls(t, admin, "subscribe"), commandCalls(t, admin, "xrevrange")+commandCalls(t, admin, "xrange")
	t.Logf("%d channels: %d SUBSCRIBE, %d history reads in %d pipelines, %d single reads", n, subs, reads, hooked.pipelines(), hooked.singleReads())
	// The first round, the rest in rounds of maxRound, and perhaps the
	// control channel's.
	assert.LessOrEqual(t, subs, int64(2+(n+ginsse.MaxRound-1)/ginsse.MaxRound), "SUBSCRIBE commands")
	assert.GreaterOrEqual(t, reads, int64(2*n), "a newest-entries read and a gap read per channel")
	assert.Zero(t, hooked.singleReads(), "every history read went out in a pipeline")
	assert.Less(t, hooked.pipelines(), n/4, "pipelines")
}

// commandCalls is how many times Redis ran cmd since its stats were reset.
func commandCalls(t *testing.T, c *redis.Client, cmd string) int64 {
	t.Helper()
	stats, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	_, rest, ok := strings.Cut(stats, "cmdstat_"+cmd+":calls=")
	if !ok {
		return 0
	}
	v, _, _ := strings.Cut(rest, ",")
	calls, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err)
	return calls
}

// hookCounts counts a client's pipelines and the history reads it sent
// one at a time.
type hookCounts struct {
	mu           sync.Mutex
	pipes, reads int
}

func (h *hookCounts) reset() {
	h.mu.Lock()
	h.pipes, h.reads = 0, 0
	h.mu.Unlock()
}

func (h *hookCounts) pipelines() int   { h.mu.Lock(); defer h.mu.Unlock(); return h.pipes }
func (h *hookCounts) singleReads() int { h.mu.Lock(); defer h.mu.Unlock(); return h.reads }

func (h *hookCounts) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *hookCounts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "xrange" || name == "xrevrange" {
			h.mu.Lock()
			h.reads++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *hookCounts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if name := c.Name(); name == "xrange" || name == "xrevrange" {
				h.mu.Lock()
				h.pipes++
				h.mu.Unlock()
				break
			}
		}
		return next(ctx, cmds)
	}
}

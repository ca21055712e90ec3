package ginsse_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
)

func TestRealRedisDisconnectOnEveryReplica(t *testing.T) {
	for _, history := range []int{0, 1000} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			disconnectOnEveryReplica(t, startRedis(t).Addr(), history)
		})
	}
}

func TestRealRedisDisconnectDuringSubscriptionOutage(t *testing.T) {
	for _, history := range []int{0, 1000} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			disconnectDuringOutage(t, startRedis(t).Addr(), history)
		})
	}
}

// On a cluster, with sharded pub/sub, a Disconnect through one replica
// ends the streams on the other; after the master that holds the control
// channel fails over to its replica, commands reach them again.
func TestRealClusterDisconnectOnEveryReplicaAndAfterFailover(t *testing.T) {
	cl := startCluster(t, 1)
	opts := func() ginsse.Options {
		return withOpts(quickRetry, func(o *ginsse.Options) {
			o.Client, o.Sharded, o.History, o.Timeout = cl.client(t), true, 100, time.Second
		})
	}
	a := newTestServer(t, opts(), identityFromQuery)
	b := newTestServer(t, opts(), identityFromQuery)
	first := openStream(t, a.URL+"/stream?user=42&channel=alpha")
	other := openStream(t, a.URL+"/stream?user=7&channel=alpha")
	require.NoError(t, b.Sender.Disconnect(context.Background(), ginsse.User("42")))
	require.True(t, first.ended(5*time.Second))
	assert.False(t, other.ended(200*time.Millisecond))

	probe := cl.client(t)
	node, err := probe.MasterForKey(context.Background(), "{ginsse/control}:history")
	require.NoError(t, err)
	master := node.Options().Addr
	replicated(t, master)
	cl.kill(master)
	second := openStream(t, a.URL+"/stream?user=42&channel=beta")
	start := time.Now()
	require.Eventually(t, func() bool {
		return b.Sender.Disconnect(context.Background(), ginsse.User("42")) == nil
	}, 30*time.Second, 200*time.Millisecond, "Disconnect works again once the replica took over")
	require.True(t, second.ended(10*time.Second), "the command reached replica A through the promoted master")
	t.Logf("a stream ended %v after the first Disconnect sent once the control channel's master died", time.Since(start))
	assert.False(t, other.ended(0))
}

// Without history, on a cluster with sharded pub/sub too.
func TestRealClusterDisconnectWithoutHistory(t *testing.T) {
	cl := startCluster(t, 0)
	opts := func() ginsse.Options {
		return withOpts(quickRetry, func(o *ginsse.Options) { o.Client, o.Sharded = cl.client(t), true })
	}
	a := newTestServer(t, opts(), identityFromQuery)
	b := newTestServer(t, opts(), identityFromQuery)
	var gone []*sseClient
	for _, ch := range []string{"alpha", "beta", "gamma"} { // on different shards
		gone = append(gone, openStream(t, a.URL+"/stream?user=42&channel="+ch))
	}
	stays := openStream(t, a.URL+"/stream?user=7&channel=alpha")
	require.NoError(t, b.Sender.Disconnect(context.Background(), ginsse.User("42")))
	for _, c := range gone {
		require.True(t, c.ended(5*time.Second))
	}
	assert.False(t, stays.ended(200*time.Millisecond))
	assert.EqualValues(t, 3, a.Sender.Stats().Revoked)
}

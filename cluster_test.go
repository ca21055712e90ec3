package ginsse_test

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startCluster starts a Redis Cluster of three masters on loopback ports
// and returns their addresses; the processes end with the test.
func startCluster(t testing.TB) []string {
	t.Helper()
	server := needBinary(t, "redis-server")
	cli := needBinary(t, "redis-cli")
	var addrs []string
	for range 3 {
		port := strconv.Itoa(freePort(t))
		dir := t.TempDir()
		cmd := exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--dir", dir, "--save", "", "--appendonly", "no",
			"--cluster-node-timeout", "2000")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + port
		waitPing(t, addr)
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		require.Eventually(t, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		}, 20*time.Second, 50*time.Millisecond, "cluster on %s not ready", addr)
		c.Close()
	}
	return addrs
}

func TestRealClusterShardedDeliveryAndResume(t *testing.T) {
	addrs := startCluster(t)
	newClient := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { c.Close() })
		return c
	}
	opts := func() ginsse.Options {
		return ginsse.Options{Client: newClient(), Sharded: true, History: 100}
	}
	a := newTestServer(t, opts())
	b := newTestServer(t, opts())

	// Channels that land on different shards.
	channels := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
	probe := newClient()
	shards := map[string]bool{}
	for _, ch := range channels {
		node, err := probe.MasterForKey(context.Background(), ch)
		require.NoError(t, err)
		shards[node.Options().Addr] = true
	}
	require.Len(t, shards, 3, "test channels should cover every shard")

	url := b.URL + "/stream?channel=" + strings.Join(channels, "&channel=")
	c := openStream(t, url)
	for i, ch := range channels {
		a.publish(t, "", ch+strconv.Itoa(i), ginsse.Channel(ch))
	}
	got := map[string]bool{}
	var last sseEvent
	for range channels {
		last = c.next(t)
		got[last.Data] = true
	}
	for i, ch := range channels {
		assert.True(t, got[ch+strconv.Itoa(i)], "missing event of %s", ch)
	}
	// A second stream adds no subscription: one connection per shard.
	openStream(t, url)
	assert.Equal(t, 2, b.Sender.Stats().Streams)

	// Cut the stream, publish on every shard, resume with the last id.
	c.close()
	for _, ch := range channels {
		a.publish(t, "", "again-"+ch, ginsse.Channel(ch))
	}
	r := resumeStream(t, url, last.LastEventID)
	got = map[string]bool{}
	for range channels {
		got[r.next(t).Data] = true
	}
	for _, ch := range channels {
		assert.True(t, got["again-"+ch], "missing resumed event of %s", ch)
	}
	for _, ch := range channels {
		node, err := probe.MasterForKey(context.Background(), ch)
		require.NoError(t, err)
		n, err := node.PubSubShardNumSub(context.Background(), ch).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n[ch], "one subscriber (Sender b) on %s", ch)
	}
	for _, addr := range addrs {
		assert.Equal(t, 1, shardSubscribers(t, addr), "sharded subscription connections on %s", addr)
	}
}

// shardSubscribers counts the connections to addr that hold sharded
// subscriptions.
func shardSubscribers(t testing.TB, addr string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	list, err := c.ClientList(context.Background()).Result()
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "ssub="); ok && v != "0" {
				n++
			}
		}
	}
	return n
}

// moveSlot migrates the slot of key, with its keys, to the master at
// dst, the way redis-cli --cluster reshard does.
func moveSlot(t testing.TB, addrs []string, key, dst string) {
	t.Helper()
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	s, err := cc.ClusterKeySlot(ctx, key).Result()
	require.NoError(t, err)
	slot := int(s)
	srcNode, err := cc.MasterForKey(ctx, key)
	require.NoError(t, err)
	src := redis.NewClient(&redis.Options{Addr: srcNode.Options().Addr})
	defer src.Close()
	dstc := redis.NewClient(&redis.Options{Addr: dst})
	defer dstc.Close()
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	require.NoError(t, err)
	dstID, err := dstc.Do(ctx, "CLUSTER", "MYID").Text()
	require.NoError(t, err)
	require.NoError(t, dstc.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	require.NoError(t, src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	keys, err := src.ClusterGetKeysInSlot(ctx, slot, 1000).Result()
	require.NoError(t, err)
	host, port, _ := strings.Cut(dst, ":")
	for _, k := range keys {
		require.NoError(t, src.Migrate(ctx, host, port, k, 0, 5*time.Second).Err())
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		require.NoError(t, c.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
		c.Close()
	}
}

func TestRealClusterShardedFollowsSlotMove(t *testing.T) {
	addrs := startCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	ts := newTestServer(t, ginsse.Options{Client: client, Sharded: true, History: 100})
	c := openStream(t, ts.URL+"/stream?channel=alpha")
	ts.publish(t, "", "before", ginsse.Channel("alpha"))
	require.Equal(t, "before", c.next(t).Data)

	node, err := client.MasterForKey(context.Background(), "alpha")
	require.NoError(t, err)
	from := node.Options().Addr
	to := addrs[0]
	if to == from {
		to = addrs[1]
	}
	moveSlot(t, addrs, "alpha", to)
	require.Eventually(t, func() bool { return shardSubscribers(t, to) == 1 }, 10*time.Second, 20*time.Millisecond,
		"the Sender subscribes alpha on its new shard")
	ts.publish(t, "", "after", ginsse.Channel("alpha"))
	assert.Equal(t, "after", c.next(t).Data)
}

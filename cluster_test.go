package ginsse_test

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
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

// cluster is a Redis Cluster of three masters, each with replicas
// replicas, on loopback ports; its processes end with the test.
type cluster struct {
	addrs []string             // every node
	procs map[string]*exec.Cmd // by address
}

// startCluster starts a cluster and waits until it serves every slot.
func startCluster(t testing.TB, replicas int) *cluster {
	t.Helper()
	server := needBinary(t, "redis-server")
	cli := needBinary(t, "redis-cli")
	cl := &cluster{procs: map[string]*exec.Cmd{}}
	for range 3 * (1 + replicas) {
		port := strconv.Itoa(freeClusterPort(t))
		dir := t.TempDir()
		cmd := exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--dir", dir, "--save", "", "--appendonly", "no",
			"--cluster-node-timeout", "2000")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + port
		waitPing(t, addr)
		cl.addrs = append(cl.addrs, addr)
		cl.procs[addr] = cmd
	}
	args := append([]string{"--cluster", "create"}, cl.addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, addr := range cl.addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		require.Eventually(t, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			// A replica can take over only once it has synced.
			repl, err := c.Info(context.Background(), "replication").Result()
			return err == nil && (strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up"))
		}, 30*time.Second, 50*time.Millisecond, "cluster on %s not ready", addr)
		c.Close()
	}
	return cl
}

// freeClusterPort returns a free port for a cluster node whose bus port,
// 10,000 above it, is free too. Both lie below the ephemeral range (32768
// and up on Linux), where no outgoing connection can take them: a port
// from that range may have its bus port taken, or past 65535, and then
// redis-server does not start.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(2768)
		if portFree(p) && portFree(p+10000) {
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node between 20000 and 32767")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// kill ends one node at once, as a crash does.
func (cl *cluster) kill(addr string) {
	if cmd := cl.procs[addr]; cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		delete(cl.procs, addr)
	}
}

// replicated waits until every replica of the master at addr has what the
// master wrote: replication is asynchronous, and a crash before it loses
// the last writes.
func replicated(t testing.TB, addr string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	require.Eventually(t, func() bool {
		info, err := rdb.Info(context.Background(), "replication").Result()
		if err != nil {
			return false
		}
		var master string
		var replicas []string
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				master = v
			}
			if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
				_, off, _ := strings.Cut(line, "offset=")
				off, _, _ = strings.Cut(off, ",")
				replicas = append(replicas, off)
			}
		}
		if master == "" || len(replicas) == 0 {
			return false
		}
		for _, off := range replicas {
			if off != master {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the replicas of %s did not catch up", addr)
}

func (cl *cluster) client(t testing.TB) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.addrs})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRealClusterShardedDeliveryAndResume(t *testing.T) {
	cl := startCluster(t, 0)
	addrs := cl.addrs
	newClient := func() *redis.ClusterClient { return cl.client(t) }
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
	// Each Sender also holds the control channel on its shard: Sender a,
	// with no stream, holds that one connection only.
	ctl, err := probe.MasterForKey(context.Background(), "ginsse/control")
	require.NoError(t, err)
	for _, addr := range addrs {
		want := 1
		if addr == ctl.Options().Addr {
			want = 2
		}
		assert.Equal(t, want, shardSubscribers(t, addr), "sharded subscription connections on %s", addr)
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
	cl := startCluster(t, 0)
	addrs := cl.addrs
	client := cl.client(t)
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

// When the master of a channel's shard dies, its replica takes over; the
// Sender subscribes there, and the open stream gets what was published,
// from the history where the subscription missed it.
func TestRealClusterShardedFollowsFailover(t *testing.T) {
	cl := startCluster(t, 1)
	client := cl.client(t)
	ts := newTestServer(t, ginsse.Options{Client: client, Sharded: true, History: 100, Timeout: time.Second})
	c := openStream(t, ts.URL+"/stream?channel=alpha")
	ts.publish(t, "", "before", ginsse.Channel("alpha"))
	require.Equal(t, "before", c.next(t).Data)

	node, err := client.MasterForKey(context.Background(), "alpha")
	require.NoError(t, err)
	replicated(t, node.Options().Addr)
	replica := replicaOf(t, node.Options().Addr)
	cl.kill(node.Options().Addr)
	promoted, subscribed := failoverTimes(t, replica)
	t.Logf("the subscription was on the promoted replica %v after it reported itself master", subscribed.Sub(promoted))
	assert.Less(t, subscribed.Sub(promoted), time.Second, "the subscription follows the election at once, not after a background reload of the cluster table")
	require.Eventually(t, func() bool {
		return ts.Sender.Publish(context.Background(), "", "after", ginsse.Channel("alpha")) == nil
	}, 30*time.Second, 200*time.Millisecond, "publishing works again once the replica took over")
	// The stream may end while its shard is down; like a browser, the
	// client then reconnects with its Last-Event-ID.
	url := ts.URL + "/stream?channel=alpha"
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case e, ok := <-c.events:
			if !ok {
				id := c.lastEventID()
				var status int
				for c, status = dialStream(t, url, http.Header{"Last-Event-ID": {id}}); status != http.StatusOK; c, status = dialStream(t, url, http.Header{"Last-Event-ID": {id}}) {
					time.Sleep(200 * time.Millisecond) // a browser's reconnection delay
				}
				continue
			}
			require.NotEqual(t, "ginsse-gap", e.Type, "the replica kept the history")
			if e.Data == "after" {
				return
			}
		case <-time.After(time.Until(deadline)):
		}
	}
	t.Fatal("the event published after the failover never arrived")
}

// replicaOf is the address of the master's replica.
func replicaOf(t testing.TB, master string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: master})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(line, "slave0:") {
			var ip, port string
			for _, kv := range strings.Split(strings.TrimPrefix(line, "slave0:"), ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "ip":
					ip = v
				case "port":
					port = v
				}
			}
			return ip + ":" + port
		}
	}
	t.Fatalf("master %s has no replica: %s", master, info)
	return ""
}

// failoverTimes watches the replica after its master died: when it
// reported itself master, and when a sharded subscription was first on
// it.
func failoverTimes(t testing.TB, replica string) (promoted, subscribed time.Time) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: replica})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && subscribed.IsZero() {
		if promoted.IsZero() {
			if info, err := c.Info(context.Background(), "replication").Result(); err == nil && strings.Contains(info, "role:master") {
				promoted = time.Now()
			}
		}
		if !promoted.IsZero() && shardSubscribers(t, replica) > 0 {
			subscribed = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.False(t, subscribed.IsZero(), "no subscription on the promoted replica")
	return promoted, subscribed
}

func TestRealClusterDeadShardDelaysOnlyItsOwnPublishes(t *testing.T) {
	cl := startCluster(t, 0)
	client := cl.client(t)
	ts := newTestServer(t, ginsse.Options{Client: client, Sharded: true, History: 100, Timeout: 3 * time.Second})
	ctx := context.Background()
	// Two channels on two masters.
	owner := func(ch string) string {
		node, err := client.MasterForKey(ctx, "{"+ch+"}:history")
		require.NoError(t, err)
		return node.Options().Addr
	}
	dead, live := "alpha", ""
	for i := range 100 {
		if ch := "ch" + strconv.Itoa(i); owner(ch) != owner(dead) {
			live = ch
			break
		}
	}
	require.NotEmpty(t, live)
	ts.publish(t, "", "warm", ginsse.Channel(dead))
	ts.publish(t, "", "warm", ginsse.Channel(live))
	cl.kill(owner(dead))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 { // publishes to the dead shard keep its lane busy
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = ts.Sender.Publish(ctx, "", "lost", ginsse.Channel(dead))
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(100 * time.Millisecond)
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		require.NoError(t, ts.Sender.Publish(ctx, "", "fine", ginsse.Channel(live)))
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest of 20 publishes to a healthy shard while another is dead: %v", slowest)
	assert.Less(t, slowest, time.Second, "a dead shard holds up only its own channels")
}

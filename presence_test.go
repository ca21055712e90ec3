package ginsse_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
)

var presenceOpts = ginsse.Options{Presence: true, PresenceTTL: 3 * time.Second}

// presenceIs waits until the presence of channel, as s sees it, is want.
func presenceIs(t *testing.T, s *ginsse.Sender, channel string, want ginsse.Presence) {
	t.Helper()
	var got ginsse.Presence
	require.Eventually(t, func() bool {
		var err error
		got, err = s.Presence(context.Background(), channel)
		return err == nil && assert.ObjectsAreEqual(want, got)
	}, 10*time.Second, 20*time.Millisecond, "presence of %s: want %+v", channel, want)
}

func TestPresenceAcrossReplicas(t *testing.T) {
	t.Parallel()
	presenceAcrossReplicas(t, miniredis.RunT(t).Addr())
}

func presenceAcrossReplicas(t *testing.T, addr string) {
	opts := withOpts(presenceOpts, func(o *ginsse.Options) { o.Addr = addr })
	a := newTestServer(t, opts, identityFromQuery)
	b := newTestServer(t, opts, identityFromQuery)
	openStream(t, a.URL+"/stream?user=ann&channel=room")
	openStream(t, a.URL+"/stream?channel=room") // anonymous
	bob := openStream(t, b.URL+"/stream?user=bob&channel=room")
	openStream(t, b.URL+"/stream?user=ann&channel=room&channel=hall") // ann again, on the other replica

	room := ginsse.Presence{Channel: "room", Users: []string{"ann", "bob"}, Streams: 4}
	presenceIs(t, a.Sender, "room", room)
	presenceIs(t, b.Sender, "room", room)
	presenceIs(t, a.Sender, "hall", ginsse.Presence{Channel: "hall", Users: []string{"ann"}, Streams: 1})
	streams, users, err := b.Sender.PresenceStats(context.Background(), "room")
	require.NoError(t, err)
	assert.Equal(t, [2]int{4, 2}, [2]int{streams, users})
	assert.EqualValues(t, 1, a.Sender.Stats().PresenceEntries, "ann on room; the anonymous stream is no entry")
	assert.EqualValues(t, 3, b.Sender.Stats().PresenceEntries, "bob and ann on room, ann on hall")

	bob.close()
	presenceIs(t, a.Sender, "room", ginsse.Presence{Channel: "room", Users: []string{"ann"}, Streams: 3})
	presenceIs(t, a.Sender, "nobody-here", ginsse.Presence{Channel: "nobody-here", Users: []string{}})

	require.NoError(t, b.Sender.Close()) // a Sender that closes takes its rosters with it at once
	presenceIs(t, a.Sender, "room", ginsse.Presence{Channel: "room", Users: []string{"ann"}, Streams: 2})
	presenceIs(t, a.Sender, "hall", ginsse.Presence{Channel: "hall", Users: []string{}})
}

// A Sender cut off from Redis stops giving signs of life; its streams
// leave presence within the TTL, and come back with it.
func TestPresenceDropsASilentReplicaWithinTheTTL(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	proxy := newProxy(t, mr.Addr())
	a := newTestServer(t, withOpts(presenceOpts, func(o *ginsse.Options) { o.Addr = mr.Addr() }), identityFromQuery)
	b := newTestServer(t, withOpts(presenceOpts, func(o *ginsse.Options) { o.Addr = proxy.Addr() }), identityFromQuery)
	openStream(t, a.URL+"/stream?user=ann&channel=room")
	openStream(t, b.URL+"/stream?user=bob&channel=room")
	both := ginsse.Presence{Channel: "room", Users: []string{"ann", "bob"}, Streams: 2}
	presenceIs(t, a.Sender, "room", both)

	proxy.cut()
	cut := time.Now()
	presenceIs(t, a.Sender, "room", ginsse.Presence{Channel: "room", Users: []string{"ann"}, Streams: 1})
	gone := time.Since(cut)
	t.Logf("a silent replica left presence %v after it was cut off (TTL 3s, a sign of life every 1s)", gone)
	assert.LessOrEqual(t, gone, 3*time.Second+2*time.Second, "within the TTL, give or take a sign of life")

	proxy.heal()
	presenceIs(t, a.Sender, "room", both)
}

// After Redis lost everything, each Sender writes its rosters again.
func TestPresenceSurvivesARedisThatForgot(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, presenceOpts, identityFromQuery)
	openStream(t, ts.URL+"/stream?user=ann&channel=room")
	want := ginsse.Presence{Channel: "room", Users: []string{"ann"}, Streams: 1}
	presenceIs(t, ts.Sender, "room", want)
	ts.Redis.FlushAll()
	presenceIs(t, ts.Sender, "room", want)
}

func TestPresenceRefusesInvalidChannelsAndOptions(t *testing.T) {
	ts := newTestServer(t, presenceOpts)
	_, err := ts.Sender.Presence(context.Background(), "bad channel")
	require.ErrorIs(t, err, ginsse.ErrInvalidChannel)
	_, _, err = ts.Sender.PresenceStats(context.Background(), "ginsse/control")
	require.ErrorIs(t, err, ginsse.ErrInvalidChannel)
	for _, ttl := range []time.Duration{-time.Second, time.Second} {
		_, err = ginsse.New(ginsse.Options{PresenceTTL: ttl})
		require.ErrorIs(t, err, ginsse.ErrInvalidOptions)
		assert.Contains(t, err.Error(), "PresenceTTL")
	}
}

// On a cluster too, with sharded pub/sub: the presence keys share one
// slot, the channels' events go to their own.
func TestRealClusterPresenceAndJoinLeave(t *testing.T) {
	cl := startCluster(t, 0)
	opts := func() ginsse.Options {
		return withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.Client, o.Sharded, o.History = cl.client(t), true, 100 })
	}
	a := newTestServer(t, opts(), identityFromQuery)
	bOpts := opts()
	b := newTestServer(t, bOpts, identityFromQuery)
	watch := openStream(t, a.URL+"/stream?channel=alpha")
	openStream(t, a.URL+"/stream?user=ann&channel=alpha&channel=beta")
	bob := openStream(t, b.URL+"/stream?user=bob&channel=alpha")
	presenceIs(t, b.Sender, "alpha", ginsse.Presence{Channel: "alpha", Users: []string{"ann", "bob"}, Streams: 3})
	presenceIs(t, a.Sender, "beta", ginsse.Presence{Channel: "beta", Users: []string{"ann"}, Streams: 1})
	assert.ElementsMatch(t, []string{`ginsse-join {"user":"ann"}`, `ginsse-join {"user":"bob"}`}, presenceEvents(watch, 2, 5*time.Second))
	bob.close()
	assert.Equal(t, []string{`ginsse-leave {"user":"bob"}`}, presenceEvents(watch, 1, 5*time.Second))

	// Replica B loses Redis for good, as a crashed one does: its streams
	// leave presence within the TTL, and their users leave after it.
	openStream(t, b.URL+"/stream?user=cid&channel=alpha")
	presenceIs(t, a.Sender, "alpha", ginsse.Presence{Channel: "alpha", Users: []string{"ann", "cid"}, Streams: 3})
	require.Equal(t, []string{`ginsse-join {"user":"cid"}`}, presenceEvents(watch, 1, 5*time.Second))
	require.NoError(t, bOpts.Client.Close())
	presenceIs(t, a.Sender, "alpha", ginsse.Presence{Channel: "alpha", Users: []string{"ann"}, Streams: 2})
	assert.Equal(t, []string{`ginsse-leave {"user":"cid"}`}, presenceEvents(watch, 1, 10*time.Second))
}

// Replicas with different PresenceTTLs, as in a rolling deploy that
// changes it, count each other by the TTL each gave: the short-TTL replica
// does not drop the long-TTL one, which signs of life less often.
func TestPresenceAcrossReplicasWithDifferentTTLs(t *testing.T) {
	t.Parallel()
	addr := miniredis.RunT(t).Addr()
	short := newTestServer(t, withOpts(presenceOpts, func(o *ginsse.Options) { o.Addr = addr }), identityFromQuery)
	long := newTestServer(t, withOpts(presenceOpts, func(o *ginsse.Options) {
		o.Addr, o.PresenceTTL = addr, 30*time.Second // a sign of life every 10 s
	}), identityFromQuery)
	openStream(t, long.URL+"/stream?user=bob&channel=room")
	bob := ginsse.Presence{Channel: "room", Users: []string{"bob"}, Streams: 1}
	presenceIs(t, short.Sender, "room", bob)
	// Past the short TTL, with the short replica writing every second
	// meanwhile (its own stream keeps it busy), bob is still there.
	openStream(t, short.URL+"/stream?channel=hall")
	time.Sleep(4 * time.Second) // real time: the TTLs are what is tested
	got, err := short.Sender.Presence(context.Background(), "room")
	require.NoError(t, err)
	assert.Equal(t, bob, got)
}

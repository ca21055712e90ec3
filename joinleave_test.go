package ginsse_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
)

var joinLeaveOpts = ginsse.Options{Presence: true, JoinLeave: true, PresenceTTL: 3 * time.Second,
	PresenceGrace: time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}

// presenceEvents reads the join and leave events c gets, until it has n
// of them or d passed.
func presenceEvents(c *sseClient, n int, d time.Duration) []string {
	var got []string
	timeout := time.After(d)
	for len(got) < n {
		select {
		case e, ok := <-c.events:
			if !ok {
				return got
			}
			if e.Type == "ginsse-join" || e.Type == "ginsse-leave" {
				got = append(got, e.Type+" "+e.Data)
			}
		case <-timeout:
			return got
		}
	}
	return got
}

// quiet is presenceEvents for a time in which none may come: longer than
// the grace and a write.
func quiet(c *sseClient) []string { return presenceEvents(c, 1, 2500*time.Millisecond) }

// followWithSSEClient follows u with an sseclient Client, which
// reconnects as a browser does, until the returned stop is called.
func followWithSSEClient(t *testing.T, u string) (stop func()) {
	c, err := sseclient.New(u, sseclient.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range c.Events(ctx) {
			if err != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// A user joins once and leaves once, through two tabs on two replicas
// and a reconnect within the grace.
func TestJoinLeaveOncePerUser(t *testing.T) {
	t.Parallel()
	for _, history := range []int{0, 100} {
		t.Run("history="+strconv.Itoa(history), func(t *testing.T) {
			t.Parallel()
			opts := withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.History, o.Addr = history, miniredis.RunT(t).Addr() })
			a := newTestServer(t, opts, identityFromQuery)
			b := newTestServer(t, opts, identityFromQuery)
			watch := openStream(t, a.URL+"/stream?channel=room") // anonymous: no event of its own

			tab1 := openStream(t, a.URL+"/stream?user=ann&channel=room")
			assert.Equal(t, []string{`ginsse-join {"user":"ann"}`}, presenceEvents(watch, 1, 5*time.Second))
			tab2 := openStream(t, b.URL+"/stream?user=ann&channel=room")
			tab1.close()
			tab2.close()
			time.Sleep(300 * time.Millisecond) // a reconnect, well within the grace
			back := openStream(t, b.URL+"/stream?user=ann&channel=room")
			assert.Empty(t, quiet(watch), "two tabs, two replicas and a reconnect: nothing")

			back.close()
			assert.Equal(t, []string{`ginsse-leave {"user":"ann"}`}, presenceEvents(watch, 1, 5*time.Second))
			assert.Empty(t, quiet(watch), "once")
		})
	}
}

// With history, the events are history events: a stream that resumes
// gets those it missed.
func TestJoinLeaveEventsAreReplayedOnResume(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.History = 100 }), identityFromQuery)
	watch := openStream(t, ts.URL+"/stream?channel=room")
	bob := openStream(t, ts.URL+"/stream?user=bob&channel=room")
	require.Equal(t, []string{`ginsse-join {"user":"bob"}`}, presenceEvents(watch, 1, 5*time.Second))
	id := watch.lastEventID()
	require.NotEmpty(t, id)
	watch.close()
	bob.close()
	openStream(t, ts.URL+"/stream?user=cid&channel=room")
	require.Eventually(t, func() bool {
		p, err := ts.Sender.Presence(t.Context(), "room")
		return err == nil && assert.ObjectsAreEqual([]string{"cid"}, p.Users)
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { // bob's leave is announced after the grace
		users, _ := ts.Redis.HKeys("{ginsse/presence}:u:room")
		return assert.ObjectsAreEqual([]string{"cid"}, users)
	}, 10*time.Second, 20*time.Millisecond)

	r := resumeStream(t, ts.URL+"/stream?channel=room", id)
	assert.ElementsMatch(t, []string{`ginsse-join {"user":"cid"}`, `ginsse-leave {"user":"bob"}`}, presenceEvents(r, 2, 5*time.Second))
}

// A user whose stream rotates within the grace neither leaves nor joins.
func TestJoinLeaveQuietThroughRotation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.History = 100 }), identityFromQuery)
	watch := openStream(t, ts.URL+"/stream?channel=room")
	rotating := newTestServer(t, withOpts(joinLeaveOpts, func(o *ginsse.Options) {
		o.History, o.Addr, o.MaxStreamAge = 100, ts.Redis.Addr(), 400*time.Millisecond
	}), identityFromQuery)
	follower := followWithSSEClient(t, rotating.URL+"/stream?user=ann&channel=room")
	assert.Equal(t, []string{`ginsse-join {"user":"ann"}`}, presenceEvents(watch, 1, 5*time.Second))
	assert.Empty(t, quiet(watch), "rotations every 300-400 ms, back within the grace")
	assert.GreaterOrEqual(t, rotating.Sender.Stats().Rotated, int64(4))
	follower()
}

// A replica cut off from Redis leaves its users present for the TTL;
// then they leave, once, after the grace, announced by the replica that
// is left.
func TestJoinLeaveAfterAReplicaDies(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	proxy := newProxy(t, mr.Addr())
	a := newTestServer(t, withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.Addr = mr.Addr() }), identityFromQuery)
	b := newTestServer(t, withOpts(joinLeaveOpts, func(o *ginsse.Options) { o.Addr = proxy.Addr() }), identityFromQuery)
	watch := openStream(t, a.URL+"/stream?channel=room")
	openStream(t, b.URL+"/stream?user=bob&channel=room")
	require.Equal(t, []string{`ginsse-join {"user":"bob"}`}, presenceEvents(watch, 1, 5*time.Second))
	proxy.cut()
	cut := time.Now()
	assert.Equal(t, []string{`ginsse-leave {"user":"bob"}`}, presenceEvents(watch, 1, 15*time.Second))
	t.Logf("bob left %v after his replica was cut off (TTL 3s, grace 1s)", time.Since(cut).Round(time.Millisecond))
}

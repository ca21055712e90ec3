package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The npm eventsource client reconnects by itself after the server
// restarts, honouring its retry hint, and gets the events sent while it
// was away, exactly once, as Chromium does.
func TestNodeEventSourceReconnectsAfterRestart(t *testing.T) {
	node := needNode(t)
	redisURL := "redis://" + startRedisServer(t).addr + "/0"
	ex := startExample(t, "-redis", redisURL, "-history", "1000")
	replica := startExample(t, "-redis", redisURL, "-history", "1000")
	f := followWithNode(t, node, ex.url()+"stream")
	f.waitUntil(t, "open", func() bool { return f.opens() == 1 })
	ex.send(t, url.Values{"data": {"before restart"}})
	f.waitFor(t, "before restart")

	ex.stop()
	f.waitUntil(t, "reconnecting", func() bool { return slices.Contains(f.history(), "reconnecting") })
	for i := range 3 {
		replica.send(t, url.Values{"data": {"while away " + strconv.Itoa(i)}})
	}
	ex.start(t)
	f.waitFor(t, "while away 2")
	ex.send(t, url.Values{"data": {"after"}})
	f.waitFor(t, "after")
	assert.Equal(t, []string{"before restart", "while away 0", "while away 1", "while away 2", "after"}, f.events())
	assert.NotContains(t, f.history(), "closed", "it never gave up: %v", f.history())
	assert.Equal(t, 2, f.opens(), "it reconnected by itself: %v", f.history())
	t.Logf("states %v", f.history())
	assert.Equal(t, 3.0, ex.metric(t, "ginsse_replayed_events_total"), "the missed events came from the history")
}

// A guard's refusal is final for the npm client too; the token lets it in.
func TestNodeEventSourceRefusedByGuard(t *testing.T) {
	node := needNode(t)
	ex := startExample(t)
	f := followWithNode(t, node, ex.url()+"stream?channel=firehose")
	f.waitUntil(t, "a state", func() bool { return len(f.history()) > 0 })
	assert.Equal(t, "closed", f.history()[0], "a 403 closes the EventSource for good")
	assert.True(t, strings.Contains(f.why(), "403"), "why: %q", f.why())
	t.Logf("refused: %q", f.why())

	ok := followWithNode(t, node, ex.url()+"stream?channel=firehose&token=letmein")
	ok.waitUntil(t, "open", func() bool { return ok.opens() == 1 })
}

// An npm client that connects while Redis is down gets a 200 after the
// Sender's Timeout, stays open, and gets what is sent once Redis is back.
func TestNodeEventSourceOpenedDuringOutage(t *testing.T) {
	node := needNode(t)
	rs := startRedisServer(t)
	ex := startExample(t, "-redis", "redis://"+rs.addr+"/0", "-history", "1000")
	rs.kill()
	f := followWithNode(t, node, ex.url()+"stream?channel=outage")
	f.waitUntil(t, "open", func() bool { return f.opens() == 1 })
	assert.Equal(t, 1.0, ex.metric(t, "ginsse_outage_opens_total"), "it opened before Redis confirmed it")

	rs.start(t)
	ex.sendOnceUp(t, url.Values{"channel": {"outage"}, "data": {"after the outage"}})
	f.waitFor(t, "after the outage")
	assert.Equal(t, []string{"after the outage"}, f.events())
	assert.Equal(t, []string{"open"}, f.history(), "no error, no reconnect")
}

// A user revoked through another replica loses the npm client's stream:
// the client comes back, meets the guard's 403 and gives up. Revoked
// without reconnect, it gets the ginsse-disconnect event and closes.
func TestNodeEventSourceRevoked(t *testing.T) {
	node := needNode(t)
	redisURL := "redis://" + startRedisServer(t).addr + "/0"
	a := startExample(t, "-redis", redisURL)
	b := startExample(t, "-redis", redisURL)
	f := followWithNode(t, node, a.url()+"stream?user=ada")
	f.waitUntil(t, "open", func() bool { return f.opens() == 1 })
	b.postForm(t, "/revoke", url.Values{"user": {"ada"}}, http.StatusAccepted)
	f.waitUntil(t, "closed", func() bool { return slices.Contains(f.history(), "closed") })
	assert.Equal(t, []string{"open", "reconnecting", "closed"}, f.history())
	assert.True(t, strings.Contains(f.lastWhy(), "403"), "why: %q", f.lastWhy())

	g := followWithNode(t, node, a.url()+"stream?user=bob")
	g.waitUntil(t, "open", func() bool { return g.opens() == 1 })
	b.postForm(t, "/revoke", url.Values{"user": {"bob"}, "reconnect": {"false"}}, http.StatusAccepted)
	g.waitUntil(t, "closed", func() bool { return slices.Contains(g.history(), "closed") })
	assert.Equal(t, []string{"open", "closed"}, g.history(), "no reconnect")
	assert.Equal(t, "ginsse-disconnect", g.lastWhy())
}

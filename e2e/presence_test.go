package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type presenceAnswer struct {
	Channel string   `json:"channel"`
	Users   []string `json:"users"`
	Streams int      `json:"streams"`
}

// presence reads GET /presence?channel=sse of the example.
func (ex *example) presence(t *testing.T) presenceAnswer {
	t.Helper()
	resp, err := http.Get("http://" + ex.addr + "/presence?channel=sse")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p presenceAnswer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	return p
}

// Streams on two replicas are in the presence either replica answers;
// once one replica is SIGKILLed, its streams leave within the TTL.
func TestPresenceDropsAKilledReplica(t *testing.T) {
	redisURL := "redis://" + startRedisServer(t).addr + "/0"
	a := startExample(t, "-redis", redisURL, "-presence-ttl", "3s")
	b := startExample(t, "-redis", redisURL, "-presence-ttl", "3s")
	follow(t, a.url()+"stream?user=ann")
	follow(t, b.url()+"stream?user=bob")
	both := presenceAnswer{Channel: "sse", Users: []string{"ann", "bob"}, Streams: 2}
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(both, b.presence(t)) }, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(both, a.presence(t)) }, 10*time.Second, 50*time.Millisecond)

	require.NoError(t, b.cmd.Process.Kill())
	_ = b.cmd.Wait()
	b.cmd = nil
	killed := time.Now()
	annOnly := presenceAnswer{Channel: "sse", Users: []string{"ann"}, Streams: 1}
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(annOnly, a.presence(t)) }, 10*time.Second, 50*time.Millisecond)
	t.Logf("the killed replica's streams left presence %v after SIGKILL (TTL 3s)", time.Since(killed).Round(time.Millisecond))
	assert.Less(t, time.Since(killed), 5*time.Second, "within the TTL and a sign of life")
}

// follow holds a stream open with an HTTP client until the test ends.
func follow(t *testing.T, u string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	t.Cleanup(func() { cancel(); resp.Body.Close() })
}

// The page shows who is on its channel, and follows a second page that
// joins and leaves; with -join-leave it also shows the events.
func TestBrowserShowsPresence(t *testing.T) {
	ctx := browser(t)
	ex := startExample(t, "-join-leave", "-presence-grace", "1s")
	navigate(t, ctx, ex.url())
	eval[bool](t, ctx, `document.getElementById('user').value = 'ann'; connect(); true`)
	users := `[...document.querySelectorAll('#presence .chip')].map(c => c.textContent).join(',')`
	waitJS(t, ctx, users+` === 'ann'`)

	second, cancel := chromedp.NewContext(ctx) // another tab
	navigate(t, second, ex.url())
	eval[bool](t, second, `document.getElementById('user').value = 'bob'; connect(); true`)
	waitJS(t, ctx, users+` === 'ann,bob'`)
	waitJS(t, second, users+` === 'ann,bob'`)
	cancel() // the tab closes
	waitJS(t, ctx, users+` === 'ann'`)
	types := `[...document.querySelectorAll('#events li .type')].map(e => e.firstChild.textContent + ' ' + e.parentNode.querySelector('pre').textContent).reverse()`
	waitJS(t, ctx, types+`.includes('ginsse-leave {"user":"bob"}')`)
	got := eval[[]string](t, ctx, types)
	assert.Equal(t, []string{`ginsse-join {"user":"ann"}`, `ginsse-join {"user":"bob"}`, `ginsse-leave {"user":"bob"}`}, got)
}

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A page that creates its EventSource while Redis is down gets a 200 after
// the Sender's Timeout, so the browser keeps the stream instead of giving
// up on it, and shows what is sent once Redis is back, without a reload.
func TestBrowserStreamOpenedDuringOutage(t *testing.T) {
	for _, history := range []string{"1000", "0"} {
		t.Run("history="+history, func(t *testing.T) {
			ctx := browser(t)
			rs := startRedisServer(t)
			ex := startExample(t, "-redis", "redis://"+rs.addr+"/0", "-history", history)
			navigate(t, ctx, ex.url())
			eval[bool](t, ctx, `disconnect(); true`) // the test's stream is the page's only one

			rs.kill()
			w := watch(t, ctx, `window.es = new EventSource('/stream?channel=outage')`)
			waitJS(t, ctx, `es.readyState === EventSource.OPEN`)
			assert.Equal(t, 1.0, ex.metric(t, "ginsse_outage_opens_total"), "the stream opened before Redis confirmed it")

			rs.start(t)
			back := time.Now()
			if history == "0" {
				// Without history, what is published before the Sender
				// subscribes again reaches no one.
				waitMetric(t, ex, "ginsse_redis_reconnects_total", 1)
			}
			ex.sendOnceUp(t, url.Values{"channel": {"outage"}, "data": {"after the outage"}})
			w.waitFor(`got.includes('after the outage')`)
			shownAfter := time.Since(back)
			r := w.read()
			assert.Equal(t, []string{"after the outage"}, r.Got, "%s", r)
			assert.False(t, r.closed(), "the EventSource was never closed: %s", r)
			t.Logf("shown %v after Redis was back; %s", shownAfter.Round(time.Millisecond), r)
		})
	}
}

// A tab whose stream is open when Redis goes away keeps it through the
// outage and shows what is sent once Redis is back, exactly once; so does
// an sseclient Client beside it.
func TestBrowserStreamSurvivesOutage(t *testing.T) {
	for _, history := range []string{"1000", "0"} {
		t.Run("history="+history, func(t *testing.T) {
			ctx := browser(t)
			rs := startRedisServer(t)
			ex := startExample(t, "-redis", "redis://"+rs.addr+"/0", "-history", history)
			navigate(t, ctx, ex.url())
			waitJS(t, ctx, `document.getElementById('state').textContent === 'open'`)
			w := watch(t, ctx, `source`) // the demo page's own EventSource
			g := followWithGo(t, ex.url()+"stream")
			waitMetric(t, ex, "ginsse_open_streams", 2)
			ex.send(t, url.Values{"data": {"before"}})
			w.waitFor(`got.includes('before')`)
			g.waitFor(t, "before")

			rs.kill()
			require.Eventually(t, func() bool {
				return ex.post(url.Values{"channel": {"probe"}, "data": {"probe"}}) == http.StatusServiceUnavailable
			}, 10*time.Second, 50*time.Millisecond, "sends fail while Redis is down")
			// The outage outlasts the Sender's Timeout and the longest wait
			// between its attempts to subscribe again; the page's poll
			// records any change of readyState meanwhile.
			time.Sleep(3 * time.Second)
			r := w.read()
			assert.False(t, r.changedSince(1), "the EventSource stays open while Redis is down: %s", r)

			rs.start(t)
			back := time.Now()
			if history == "0" {
				waitMetric(t, ex, "ginsse_redis_reconnects_total", 1)
			}
			ex.sendOnceUp(t, url.Values{"data": {"after"}})
			w.waitFor(`got.includes('after')`)
			shownAfter := time.Since(back)
			g.waitFor(t, "after")
			r = w.read()
			assert.Equal(t, []string{"before", "after"}, r.Got, "%s", r)
			assert.Equal(t, []string{"before", "after"}, g.events(), "the Go client got what the browser did")
			assert.Equal(t, 1, g.opens(), "the Go client's stream stayed open: %v", g.history())
			assert.Equal(t, []string{"before", "after"}, eval[[]string](t, ctx, shown), "the page shows each event once")
			assert.False(t, r.closed(), "the EventSource was never closed: %s", r)
			// The subscription itself came back, not only the history reads.
			waitMetric(t, ex, "ginsse_redis_reconnects_total", 1)
			t.Logf("shown %v after Redis was back; %s", shownAfter.Round(time.Millisecond), r)
		})
	}
}

// watcher reads what watch records in the page.
type watcher struct {
	t   *testing.T
	ctx context.Context
}

// watch records, in the page, each readyState of the EventSource that expr
// evaluates to — at its open and error events and whenever a poll every
// 50 ms sees it change — and the data of its message events. A failing
// test prints the record.
func watch(t *testing.T, ctx context.Context, expr string) *watcher {
	t.Helper()
	eval[bool](t, ctx, `((es) => {
		const t0 = performance.now();
		window.states = []; window.got = [];
		const note = (why) => {
			const last = states[states.length - 1];
			if (why === 'poll' && last && last.state === es.readyState) return;
			states.push({ state: es.readyState, why, ms: Math.round(performance.now() - t0) });
		};
		note('watch');
		es.addEventListener('open', () => note('open'));
		es.addEventListener('error', () => note('error'));
		es.addEventListener('message', (e) => got.push(e.data));
		setInterval(() => note('poll'), 50);
		return true;
	})(`+expr+`)`)
	w := &watcher{t: t, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			r, err := chromedp.Run(ctx, chromedp.Evaluate[record](`({ states, got })`))
			if err != nil {
				t.Logf("reading the record: %v", err)
				return
			}
			t.Logf("the page recorded %s", r)
		}
	})
	return w
}

// record is what watch recorded.
type record struct {
	States []struct {
		State int    `json:"state"` // 0 connecting, 1 open, 2 closed
		Why   string `json:"why"`
		MS    int    `json:"ms"` // since watch
	} `json:"states"`
	Got []string `json:"got"`
}

func (w *watcher) read() record {
	w.t.Helper()
	return eval[record](w.t, w.ctx, `({ states, got })`)
}

// waitFor waits until the page's expression is true.
func (w *watcher) waitFor(expr string) {
	w.t.Helper()
	waitJS(w.t, w.ctx, expr)
}

// closed reports whether the EventSource was ever CLOSED.
func (r record) closed() bool {
	for _, s := range r.States {
		if s.State == 2 {
			return true
		}
	}
	return false
}

// changedSince reports whether a readyState other than state was recorded
// after the first entry, which watch made.
func (r record) changedSince(state int) bool {
	for _, s := range r.States[1:] {
		if s.State != state {
			return true
		}
	}
	return false
}

func (r record) String() string {
	var b strings.Builder
	b.WriteString("readyStates [")
	for i, s := range r.States {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s @%dms", s.State, s.Why, s.MS)
	}
	fmt.Fprintf(&b, "], events %q", r.Got)
	return b.String()
}

// post sends the form to POST /send and returns the status, 0 when the
// request failed.
func (ex *example) post(form url.Values) int {
	resp, err := http.PostForm("http://"+ex.addr+"/send", form)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sendOnceUp sends the form as soon as the example can publish again
// after Redis came back.
func (ex *example) sendOnceUp(t *testing.T, form url.Values) {
	t.Helper()
	require.Eventually(t, func() bool { return ex.post(form) == http.StatusAccepted },
		20*time.Second, 50*time.Millisecond, "POST /send never answered 202")
}

// waitMetric waits until the example's metric reaches at least min.
func waitMetric(t *testing.T, ex *example, name string, min float64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ex.metric(t, name) < min; time.Sleep(50 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "%s did not reach %v", name, min)
	}
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive the demo page in headless Chromium. Without a
// chromium binary they skip, unless GINSSE_REQUIRE_BROWSER is set (CI sets
// it), in which case they fail.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		missing(t, "chromium not found: install it (apt-get install chromium) to run the browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// missing skips a test whose client is not installed, or fails it when
// GINSSE_REQUIRE_BROWSER is set, as CI does.
func missing(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("GINSSE_REQUIRE_BROWSER") != "" {
		t.Fatal(msg + " (GINSSE_REQUIRE_BROWSER is set)")
	}
	t.Skip(msg)
}

// waitJS waits until the page's expression is true.
func waitJS(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second)))
	require.NoError(t, err, "waiting for %s", expr)
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Navigate(url))
	require.NoError(t, err)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	require.NoError(t, err, "evaluating %s", expr)
	return v
}

// shown is the page's list of event data, oldest first.
const shown = `[...document.querySelectorAll('#events li pre')].map(p => p.textContent).reverse()`

func TestBrowserShowsEvents(t *testing.T) {
	ctx := browser(t)
	ex := startExample(t)
	navigate(t, ctx, ex.url())
	waitJS(t, ctx, `document.getElementById('state').textContent === 'open'`)
	// A listener for a named type, as an application adds one.
	eval[bool](t, ctx, `window.got = []; source.addEventListener('greeting', e => got.push(e.data)); true`)

	ex.send(t, url.Values{"data": {"plain hello"}})
	waitJS(t, ctx, shown+`.includes('plain hello')`)

	ex.send(t, url.Values{"event": {"greeting"}, "data": {"line 1\nline 2\n\nline 4"}})
	waitJS(t, ctx, `got.length === 1`)
	got := eval[[]string](t, ctx, `got`)
	assert.Equal(t, []string{"line 1\nline 2\n\nline 4"}, got, "a multi-line payload arrives intact")
}

func TestBrowserGuardedChannel(t *testing.T) {
	ctx := browser(t)
	ex := startExample(t)
	navigate(t, ctx, ex.url())
	open := `new Promise(done => { const es = new EventSource('/stream?channel=firehose');
		es.onopen = () => { es.close(); done('open'); };
		es.onerror = () => { if (es.readyState === EventSource.CLOSED) done('refused'); }; })`
	eval[bool](t, ctx, `document.cookie = 'token=; path=/'; true`)
	assert.Equal(t, "refused", eval[string](t, ctx, open, awaitPromise), "no token: the browser is refused")
	eval[bool](t, ctx, `document.cookie = 'token=letmein; path=/'; true`)
	assert.Equal(t, "open", eval[string](t, ctx, open, awaitPromise), "the token cookie lets it in")
}

// A browser reconnects by itself after the server restarts, and with
// history on shows the events sent while it was away, exactly once. A
// second replica on the same Redis takes those sends, so they are sure to
// happen while the browser has no stream. An sseclient Client beside it
// must do the same.
func TestBrowserReconnectsAfterRestart(t *testing.T) {
	ctx := browser(t)
	redisURL := "redis://" + startRedisServer(t).addr + "/0"
	ex := startExample(t, "-redis", redisURL, "-history", "1000")
	replica := startExample(t, "-redis", redisURL, "-history", "1000")
	navigate(t, ctx, ex.url())
	waitJS(t, ctx, `document.getElementById('state').textContent === 'open'`)
	g := followWithGo(t, ex.url()+"stream")
	waitMetric(t, ex, "ginsse_open_streams", 2)
	ex.send(t, url.Values{"data": {"before restart"}})
	waitJS(t, ctx, shown+`.includes('before restart')`)
	g.waitFor(t, "before restart")

	ex.stop()
	waitJS(t, ctx, `document.getElementById('state').textContent === 'reconnecting'`)
	for i := range 3 {
		replica.send(t, url.Values{"data": {"while away " + strconv.Itoa(i)}})
	}
	ex.start(t)
	waitJS(t, ctx, shown+`.includes('while away 2')`)
	g.waitFor(t, "while away 2")
	ex.send(t, url.Values{"data": {"after"}})
	waitJS(t, ctx, shown+`.includes('after')`)
	g.waitFor(t, "after")
	list := eval[[]string](t, ctx, shown)
	want := []string{"before restart", "while away 0", "while away 1", "while away 2", "after"}
	assert.Equal(t, want, list)
	assert.Equal(t, want, g.events(), "the Go client got what the browser showed")
	assert.Equal(t, 2, g.opens(), "the Go client reconnected once, by itself: %v", g.history())
	assert.Equal(t, 6.0, ex.metric(t, "ginsse_replayed_events_total"), "the missed events came from the history, to both")
	marked := eval[[]string](t, ctx, `[...document.querySelectorAll('#events li.replayed pre')].map(p => p.textContent).reverse()`)
	// The page marks what arrives in the first moments after a reconnect,
	// which may include a live event sent right after.
	assert.Subset(t, marked, []string{"while away 0", "while away 1", "while away 2"}, "the page marks replayed events")
	assert.NotContains(t, marked, "before restart")
}

// The page's Disconnect and Connect make a new EventSource, which sends no
// Last-Event-ID of its own: the page passes the last id it saw, so the
// events sent meanwhile still arrive.
func TestBrowserConnectAgainResumes(t *testing.T) {
	ctx := browser(t)
	ex := startExample(t)
	navigate(t, ctx, ex.url())
	waitJS(t, ctx, `document.getElementById('state').textContent === 'open'`)
	ex.send(t, url.Values{"data": {"first"}})
	waitJS(t, ctx, shown+`.includes('first')`)

	eval[bool](t, ctx, `document.getElementById('disconnect').click(); true`)
	waitJS(t, ctx, `document.getElementById('state').textContent === 'closed'`)
	ex.send(t, url.Values{"data": {"missed 0"}})
	ex.send(t, url.Values{"data": {"missed 1"}})
	eval[bool](t, ctx, `document.getElementById('connect').click(); true`)
	waitJS(t, ctx, shown+`.includes('missed 1')`)
	ex.send(t, url.Values{"data": {"live"}})
	waitJS(t, ctx, shown+`.includes('live')`)
	assert.Equal(t, []string{"first", "missed 0", "missed 1", "live"}, eval[[]string](t, ctx, shown))
}

// example is the demo server running as its own process.
type example struct {
	bin, addr string
	args      []string
	cmd       *exec.Cmd
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// startExample builds the demo once and starts it on a free port with
// args; it stops with the test.
func startExample(t *testing.T, args ...string) *example {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ginsse-e2e")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "example")
		out, err := exec.Command("go", "build", "-o", built, "../_example").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	ex := &example{bin: built, addr: freeAddr(t), args: args}
	ex.start(t)
	t.Cleanup(ex.stop)
	return ex
}

func (ex *example) url() string { return "http://" + ex.addr + "/" }

func (ex *example) start(t *testing.T) {
	t.Helper()
	ex.cmd = exec.Command(ex.bin, append([]string{"-addr", ex.addr}, ex.args...)...)
	require.NoError(t, ex.cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + ex.addr + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "the example did not start")
}

// stop ends the example as SIGTERM does, gracefully.
func (ex *example) stop() {
	if ex.cmd != nil {
		_ = ex.cmd.Process.Signal(syscall.SIGTERM)
		_ = ex.cmd.Wait()
		ex.cmd = nil
	}
}

func (ex *example) send(t *testing.T, form url.Values) {
	t.Helper()
	resp, err := http.PostForm("http://"+ex.addr+"/send", form)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
}

// postForm sends a form to path and requires the status.
func (ex *example) postForm(t *testing.T, path string, form url.Values, want int) {
	t.Helper()
	resp, err := http.PostForm("http://"+ex.addr+path, form)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, want, resp.StatusCode, "POST %s %v", path, form)
}

// metric reads one unlabelled figure from the example's GET /metrics.
func (ex *example) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ex.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("no metric %s in /metrics", name)
	return 0
}

func awaitPromise(p *runtime.EvaluateParams) {
	yes := true
	p.AwaitPromise = &yes
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// redisServer is a redis-server the test started on a loopback port,
// without persistence.
type redisServer struct {
	addr, port, dir string
	cmd             *exec.Cmd
}

// startRedisServer runs a redis-server for the test on a free port; it
// ends with the test.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("GINSSE_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server not found (GINSSE_REQUIRE_REDIS is set)")
		}
		t.Skip("redis-server not found: install it (apt-get install redis-server) to run this test")
	}
	rs := &redisServer{addr: freeAddr(t), dir: t.TempDir()}
	_, rs.port, _ = net.SplitHostPort(rs.addr)
	rs.start(t)
	t.Cleanup(rs.kill)
	return rs
}

// start runs the server on its port, empty, as after a crash without
// persistence.
func (rs *redisServer) start(t *testing.T) {
	t.Helper()
	rs.cmd = exec.Command("redis-server", "--port", rs.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rs.dir)
	require.NoError(t, rs.cmd.Start())
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", rs.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// kill ends the server at once, as a crash does.
func (rs *redisServer) kill() {
	if rs.cmd != nil {
		_ = rs.cmd.Process.Kill()
		_ = rs.cmd.Wait()
		rs.cmd = nil
	}
}

// A page whose access is revoked through another replica loses its
// stream; its EventSource comes back, meets the guard's 403 and gives up.
// Granted again, "Revoke me" with "do not reconnect" makes the page close
// its EventSource on the ginsse-disconnect event.
func TestBrowserRevokedPageIsRefused(t *testing.T) {
	ctx := browser(t)
	redisURL := "redis://" + startRedisServer(t).addr + "/0"
	a := startExample(t, "-redis", redisURL)
	b := startExample(t, "-redis", redisURL)
	navigate(t, ctx, a.url())
	eval[bool](t, ctx, `document.getElementById('user').value = 'ada'; connect(); true`)
	waitJS(t, ctx, `document.getElementById('state').textContent === 'open' && document.getElementById('whoami').textContent === 'ada'`)

	b.postForm(t, "/revoke", url.Values{"user": {"ada"}}, http.StatusAccepted)
	waitJS(t, ctx, `document.getElementById('state').textContent === 'closed'`)
	assert.Contains(t, eval[string](t, ctx, `document.getElementById('substatus').textContent`), "refused")
	assert.Equal(t, 403, eval[int](t, ctx, `fetch('/stream').then(r => r.status)`, awaitPromise), "the guard refuses the user")
	assert.Equal(t, 1.0, a.metric(t, "ginsse_revoked_streams_total"))

	eval[bool](t, ctx, `document.getElementById('grant').click(); true`)
	waitJS(t, ctx, `document.getElementById('state').textContent === 'open'`)
	eval[bool](t, ctx, `document.getElementById('final').checked = true; document.getElementById('revoke').click(); true`)
	waitJS(t, ctx, `document.getElementById('state').textContent === 'closed' && source === null`)
	assert.Contains(t, eval[string](t, ctx, `document.getElementById('substatus').textContent`), "access revoked")
	assert.Equal(t, 2.0, a.metric(t, "ginsse_revoked_streams_total"))
}

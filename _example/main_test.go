package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newDemo(t *testing.T, history int) (*httptest.Server, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	sender, err := ginsse.New(ginsse.Options{Addr: mr.Addr(), History: history, Presence: true})
	require.NoError(t, err)
	srv := httptest.NewServer(newRouter(sender, demoRevocations(t, mr), "letmein", 0))
	t.Cleanup(func() {
		sender.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, mr
}

func demoRevocations(t *testing.T, mr *miniredis.Miniredis) *revocations {
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return &revocations{rdb: rdb, log: slog.New(slog.DiscardHandler)}
}

func post(t *testing.T, srv *httptest.Server, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(srv.URL+"/send", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// firstEvent reads the stream at u with sseclient, as a browser would:
// once the Client is open, which ginsse answers after Redis confirmed the
// subscription, it calls whenOpen, and it returns the first event.
func firstEvent(t *testing.T, u string, opts sseclient.Options, whenOpen func()) sseclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	opened := false
	opts.OnState = func(s sseclient.StateChange) {
		if s.State == sseclient.Open && !opened {
			opened = true
			whenOpen()
		}
	}
	c, err := sseclient.New(u, opts)
	require.NoError(t, err)
	for ev, err := range c.Events(ctx) {
		require.NoError(t, err)
		return ev
	}
	panic("unreachable: Events yields an event or an error")
}

// connect runs a Client of the stream at u until it opens, and returns
// nil, or the error it stopped with: a *sseclient.ResponseError for an
// answer a browser gives up on.
func connect(t *testing.T, u string, header http.Header) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	opened := false
	c, err := sseclient.New(u, sseclient.Options{Header: header, OnState: func(s sseclient.StateChange) {
		if s.State == sseclient.Open {
			opened = true
			cancel()
		}
	}})
	require.NoError(t, err)
	for _, err := range c.Events(ctx) {
		if opened {
			return nil
		}
		return err
	}
	panic("unreachable: Events yields an event or an error")
}

// status is the status of the answer a Client stopped at; 200 if it
// opened.
func status(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return http.StatusOK
	}
	var re *sseclient.ResponseError
	require.ErrorAs(t, err, &re)
	return re.StatusCode
}

func TestPageSubscribesWithEventSource(t *testing.T) {
	srv, _ := newDemo(t, 0)
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	assert.Contains(t, string(body), "new EventSource(")
}

func TestSendReachesStream(t *testing.T) {
	for _, history := range []int{0, 1000} {
		srv, _ := newDemo(t, history)
		ev := firstEvent(t, srv.URL+"/stream?channel=news", sseclient.Options{}, func() {
			status, body := post(t, srv, url.Values{"channel": {"news"}, "event": {"greet"}, "data": {"hello\nworld"}, "retry": {"2500"}})
			require.Equal(t, http.StatusAccepted, status, body)
		})
		assert.Equal(t, "greet", ev.Type)
		assert.Equal(t, "hello\nworld", ev.Data)
		assert.Equal(t, 2500*time.Millisecond, ev.Retry)
		assert.Equal(t, history > 0, ev.ID != "", "with history on, the event carries its position")
	}
}

func TestSendRefusesInvalidInput(t *testing.T) {
	srv, _ := newDemo(t, 1000)
	for _, form := range []url.Values{
		{"channel": {"a b"}},
		{"channel": {"news*"}},
		{"event": {"bad\ntype"}},
		{"retry": {"-5"}},
		{"retry": {"soon"}},
		{"id": {"7"}}, // ids are history positions while history is on
		{"data": {strings.Repeat("x", maxData+1)}},
	} {
		status, body := post(t, srv, form)
		assert.Equal(t, http.StatusBadRequest, status, "form %v", form)
		assert.Contains(t, body, `"error"`)
	}
	srv0, _ := newDemo(t, 0)
	status, _ := post(t, srv0, url.Values{"id": {"7"}, "data": {"x"}})
	assert.Equal(t, http.StatusAccepted, status, "ids are the caller's own with history off")
	status, _ = post(t, srv0, url.Values{"id": {"a\nb"}})
	assert.Equal(t, http.StatusBadRequest, status)
}

func TestSendWithoutRedisAnswers503(t *testing.T) {
	srv, mr := newDemo(t, 0)
	mr.Close()
	status, body := post(t, srv, url.Values{"data": {"x"}})
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body, "redis unavailable")
}

// The stream route answers 200 while Redis is down, since a browser gives
// up for good on a 503; the stream waits for Redis.
func TestStreamWithoutRedisAnswers200(t *testing.T) {
	for _, history := range []int{0, 1000} {
		srv, mr := newDemo(t, history)
		mr.Close()
		assert.NoError(t, connect(t, srv.URL+"/stream?channel=outage", nil), "a 200 event stream")
	}
}

func TestFirehoseNeedsTheToken(t *testing.T) {
	srv, _ := newDemo(t, 0)
	for _, u := range []string{"/stream?channel=firehose", "/stream?channel=sse&channel=firehose", "/stream?channel=firehose&token=nope"} {
		assert.Equal(t, http.StatusForbidden, status(t, connect(t, srv.URL+u, nil)), u)
	}
	assert.Equal(t, http.StatusOK, status(t, connect(t, srv.URL+"/stream?channel=firehose&token=letmein", nil)))
	assert.Equal(t, http.StatusOK, status(t, connect(t, srv.URL+"/stream?channel=firehose", http.Header{"Cookie": {"token=letmein"}})))
	assert.Equal(t, http.StatusBadRequest, status(t, connect(t, srv.URL+"/stream?channel=no*pe", nil)))
}

func TestStreamUserMustBeAName(t *testing.T) {
	srv, _ := newDemo(t, 0)
	for _, u := range []string{"/stream?user=a+b", "/stream?user=" + strings.Repeat("x", 65), "/stream?user=%C3%A9"} {
		assert.Equal(t, http.StatusBadRequest, status(t, connect(t, srv.URL+u, nil)), u)
	}
	assert.Equal(t, http.StatusBadRequest, status(t, connect(t, srv.URL+"/stream", http.Header{"Cookie": {"user=a*b"}})))
	for _, u := range []string{"/stream", "/stream?user=ada", "/stream?user=a.b_c-9", "/stream?user=" + strings.Repeat("x", 64)} {
		assert.Equal(t, http.StatusOK, status(t, connect(t, srv.URL+u, nil)), u)
	}
	assert.Equal(t, http.StatusOK, status(t, connect(t, srv.URL+"/stream?user=a+b", http.Header{"Cookie": {"user=ada"}})), "the cookie comes first")
}

func TestStreamTTLEndsStreamsWithARetryHint(t *testing.T) {
	mr := miniredis.RunT(t)
	sender, err := ginsse.New(ginsse.Options{Addr: mr.Addr(), RetryMin: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewServer(newRouter(sender, demoRevocations(t, mr), "letmein", 200*time.Millisecond))
	t.Cleanup(func() { sender.Close(); srv.CloseClientConnections(); srv.Close() })
	resp, err := http.Get(srv.URL + "/stream?user=ada")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body) // the stream ends by itself
	require.NoError(t, err)
	assert.Contains(t, string(body), "retry: 50\n")
	assert.EqualValues(t, 1, sender.Stats().Expired)
}

func TestReconnectReplaysWhatWasMissed(t *testing.T) {
	srv, _ := newDemo(t, 1000)
	send := func(data string) func() {
		return func() {
			status, _ := post(t, srv, url.Values{"data": {data}})
			require.Equal(t, http.StatusAccepted, status)
		}
	}
	before := firstEvent(t, srv.URL+"/stream", sseclient.Options{}, send("before"))
	require.Equal(t, "before", before.Data)
	send("while away")()
	// A new Client starting from the old one's last event ID, as a
	// reloaded page's would not but a reconnecting EventSource does.
	ev := firstEvent(t, srv.URL+"/stream", sseclient.Options{LastEventID: before.ID}, func() {})
	assert.Equal(t, "while away", ev.Data)
}

func TestFlags(t *testing.T) {
	t.Setenv("ADDR", "127.0.0.1:9999")
	t.Setenv("ADMIN_TOKEN", "fromenv")
	t.Setenv("HISTORY", "5")
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, config{addr: "127.0.0.1:9999", heartbeat: 15 * time.Second, adminToken: "fromenv", history: 5, presenceTTL: 30 * time.Second, grace: 5 * time.Second}, cfg)

	cfg, err = parseFlags([]string{"-addr", ":1", "-redis", "redis://x:1/0", "-heartbeat", "-1s", "-admin-token", "t", "-history", "0", "-max-streams", "9000",
		"-max-stream-age", "10m", "-stream-ttl", "1h", "-presence-ttl", "10s", "-presence-grace", "2s", "-join-leave"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, config{addr: ":1", redisURL: "redis://x:1/0", heartbeat: -time.Second, adminToken: "t", maxStreams: 9000,
		maxStreamAge: 10 * time.Minute, streamTTL: time.Hour, presenceTTL: 10 * time.Second, grace: 2 * time.Second, joinLeave: true}, cfg)

	_, err = parseFlags([]string{"-redis", "redis://x", "-redis-cluster", "a:1"}, io.Discard)
	assert.Error(t, err)
}

func TestMetrics(t *testing.T) {
	srv, _ := newDemo(t, 0)
	var body []byte
	firstEvent(t, srv.URL+"/stream", sseclient.Options{}, func() {
		status, _ := post(t, srv, url.Values{"data": {"x"}})
		require.Equal(t, http.StatusAccepted, status)
		m, err := http.Get(srv.URL + "/metrics") // while the stream is open
		require.NoError(t, err)
		defer m.Body.Close()
		body, _ = io.ReadAll(m.Body)
	})
	assert.Contains(t, string(body), "ginsse_open_streams 1")
	assert.Contains(t, string(body), "ginsse_events_published_total 1")
}

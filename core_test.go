package ginsse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get answers a plain GET, returning the status and the decoded JSON error.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct{ Error string }
	if resp.StatusCode != http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body), "a JSON error body")
	}
	return resp.StatusCode, body.Error
}

func TestDefaultChannelAndIsolation(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	def := openStream(t, ts.URL+"/stream")
	news := openStream(t, ts.URL+"/stream?channel=news")
	ts.publish(t, "", "to news", ginsse.Channel("news"))
	ts.publish(t, "", "to sse")
	assert.Equal(t, "to news", news.next(t).Data)
	assert.Equal(t, "to sse", def.next(t).Data, "the default channel is sse and gets nothing of news")
}

func TestChannelParamAndDefaultChannelOptions(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{ChannelParam: "topic", DefaultChannel: "main"})
	c := openStream(t, ts.URL+"/stream?topic=x")
	d := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "x", ginsse.Channel("x"))
	ts.publish(t, "", "main")
	assert.Equal(t, "x", c.next(t).Data)
	assert.Equal(t, "main", d.next(t).Data)
}

func TestInvalidChannelsAnswer400BeforeSubscribing(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	for _, q := range []string{"*", "a*b", "a%20b", "%40x", "", strings.Repeat("a", 201), "news%3F", "a%0Ab", "h%C3%A9"} {
		status, msg := get(t, ts.URL+"/stream?channel="+q)
		assert.Equal(t, http.StatusBadRequest, status, "channel %q", q)
		assert.Contains(t, msg, "channel", "channel %q", q)
	}
	var q []string
	for i := range 17 {
		q = append(q, "channel=c"+strconv.Itoa(i))
	}
	status, msg := get(t, ts.URL+"/stream?"+strings.Join(q, "&"))
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, msg, "more than 16")
	assert.Empty(t, streamChannels(ts.Redis.PubSubChannels("")), "nothing was subscribed")
	assert.Zero(t, ts.Sender.Stats().Streams)
	openStream(t, ts.URL+"/stream?"+strings.Join(q[:16], "&"))
	// Duplicates collapse before the cap counts them.
	openStream(t, ts.URL+"/stream?"+strings.Join(append(q[:16:16], q[:16]...), "&"))
}

func TestMultiChannelStreamAndDuplicates(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	c := openStream(t, ts.URL+"/stream?channel=a&channel=b&channel=a")
	ts.publish(t, "", "1", ginsse.Channel("a"))
	ts.publish(t, "", "2", ginsse.Channel("b"))
	assert.Equal(t, "1", c.next(t).Data)
	assert.Equal(t, "2", c.next(t).Data)
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, ts.Redis.PubSubNumSub("a", "b"))
}

func TestPrefixNamespacesRedisChannels(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{Prefix: "app1:"})
	c := openStream(t, ts.URL+"/stream?channel=news")
	assert.Equal(t, []string{"app1:news"}, streamChannels(ts.Redis.PubSubChannels("")))
	ts.publish(t, "", "hi", ginsse.Channel("news"))
	assert.Equal(t, "hi", c.next(t).Data)
	ts.Redis.Publish("news", "unprefixed")
	ts.Redis.Publish("app1:news", "prefixed")
	assert.Equal(t, "prefixed", c.next(t).Data)
}

func TestGuardSeesExactlyTheChannels(t *testing.T) {
	var seen [][]string
	var mu sync.Mutex
	guard := func(c *gin.Context) {
		chans, err := ginsse.Channels(c)
		if err != nil {
			c.Next()
			return
		}
		mu.Lock()
		seen = append(seen, chans)
		mu.Unlock()
		if slices.Contains(chans, "secret") {
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "no"})
			return
		}
		c.Next()
	}
	ts := newTestServer(t, ginsse.Options{}, guard)
	for _, tc := range []struct {
		query  string
		status int
		chans  []string
	}{
		{"", http.StatusOK, []string{"sse"}},
		{"?channel=b&channel=a&channel=b", http.StatusOK, []string{"a", "b"}},
		{"?channel=secret", http.StatusForbidden, []string{"secret"}},
		{"?channel=ok&channel=secret", http.StatusForbidden, []string{"ok", "secret"}},
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		c, status := dialStream(t, ts.URL+"/stream"+tc.query, nil)
		assert.Equal(t, tc.status, status, tc.query)
		if c != nil {
			c.close()
		}
		mu.Lock()
		assert.Equal(t, [][]string{tc.chans}, seen, tc.query)
		mu.Unlock()
	}
	status, _ := get(t, ts.URL+"/stream?channel=a*")
	assert.Equal(t, http.StatusBadRequest, status, "an invalid request still gets its 400 behind the guard")

	r := gin.New()
	r.GET("/other", func(c *gin.Context) {
		_, err := ginsse.Channels(c)
		assert.ErrorIs(t, err, ginsse.ErrNotStream)
		c.Status(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/other")
	require.NoError(t, err)
	resp.Body.Close()
}

func TestSendWithoutMiddleware(t *testing.T) {
	r := gin.New()
	r.GET("/", func(c *gin.Context) {
		_, ok := ginsse.FromContext(c)
		assert.False(t, ok)
		assert.ErrorIs(t, ginsse.Send(c, "", "x"), ginsse.ErrNoSender)
		c.Status(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
}

func TestInvalidOptionsNameTheField(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for field, opts := range map[string]ginsse.Options{
		"Client":         {Client: client, Addr: "localhost:6379"},
		"URL":            {URL: "http://nope"},
		"Addr":           {Addr: "nohostport"},
		"DB":             {DB: -1},
		"Prefix":         {Prefix: "a b"},
		"DefaultChannel": {DefaultChannel: "a*"},
		"MaxChannels":    {MaxChannels: -1},
		"QueueSize":      {QueueSize: -1},
		"Timeout":        {Timeout: -1},
		"History":        {History: -1},
		"HistoryAge":     {HistoryAge: time.Second},
		"MaxStreams":     {MaxStreams: -1},
		"RetryMin":       {RetryMin: -time.Second},
		"RetryMax":       {RetryMin: 3 * time.Second, RetryMax: 2 * time.Second},
		"ReplayWindow":   {History: 10, ReplayWindow: 11},
	} {
		_, err := ginsse.New(opts)
		require.ErrorIs(t, err, ginsse.ErrInvalidOptions, field)
		assert.Contains(t, err.Error(), "Options."+field)
		assert.PanicsWithError(t, err.Error(), func() { ginsse.Register(gin.New().Group("/s"), opts) })
	}
	s, err := ginsse.New(ginsse.Options{})
	require.NoError(t, err, "the zero Options work")
	require.NoError(t, s.Close())
}

func TestOptionsFromEnv(t *testing.T) {
	t.Setenv("SSE_REDIS_URL", "")
	t.Setenv("SSE_REDIS_HOST", "")
	t.Setenv("SSE_REDIS_PORT", "")
	t.Setenv("SSE_REDIS_DB", "")
	o, err := ginsse.OptionsFromEnv()
	require.NoError(t, err)
	assert.Equal(t, ginsse.Options{Addr: "localhost:6379"}, o)

	t.Setenv("SSE_REDIS_HOST", "redis.internal")
	t.Setenv("SSE_REDIS_PORT", "6380")
	t.Setenv("SSE_REDIS_DB", "3")
	o, err = ginsse.OptionsFromEnv()
	require.NoError(t, err)
	assert.Equal(t, ginsse.Options{Addr: "redis.internal:6380", DB: 3}, o)

	t.Setenv("SSE_REDIS_URL", "redis://h:1/2")
	o, err = ginsse.OptionsFromEnv()
	require.NoError(t, err)
	assert.Equal(t, ginsse.Options{URL: "redis://h:1/2"}, o)

	t.Setenv("SSE_REDIS_URL", "")
	t.Setenv("SSE_REDIS_PORT", "http")
	_, err = ginsse.OptionsFromEnv()
	assert.ErrorContains(t, err, "SSE_REDIS_PORT")
	t.Setenv("SSE_REDIS_PORT", "6379")
	t.Setenv("SSE_REDIS_DB", "-1")
	_, err = ginsse.OptionsFromEnv()
	assert.ErrorContains(t, err, "SSE_REDIS_DB")
}

func TestGivenClientIsNotClosed(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	s, err := ginsse.New(ginsse.Options{Client: client})
	require.NoError(t, err)
	require.NoError(t, s.Publish(context.Background(), "", "x"))
	require.NoError(t, s.Close())
	assert.NoError(t, client.Ping(context.Background()).Err())
}

func TestStreamHeadersAndImmediateFlush(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	resp, err := http.Get(ts.URL + "/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
	buf := make([]byte, 6)
	_, err = io.ReadFull(resp.Body, buf) // nothing was published: only the hello can arrive
	require.NoError(t, err)
	assert.Equal(t, ": ok\n\n", string(buf))
}

func TestHeartbeat(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{Heartbeat: 20 * time.Millisecond})
	c := openStream(t, ts.URL+"/stream")
	for range 3 {
		select {
		case cm := <-c.comments:
			if cm == " ok" {
				continue
			}
			assert.Equal(t, " heartbeat", cm)
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
		}
	}

	off := newTestServer(t, ginsse.Options{Heartbeat: -1})
	d := openStream(t, off.URL+"/stream")
	time.Sleep(100 * time.Millisecond) // a heartbeat, if any, would come in this window
	off.publish(t, "", "x")
	assert.Equal(t, "x", d.next(t).Data)
	for len(d.comments) > 0 {
		assert.Equal(t, " ok", <-d.comments, "no heartbeat when turned off")
	}
}

func TestNamedEventRetryAndFanOut(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	var clients []*sseClient
	for range 50 {
		clients = append(clients, openStream(t, ts.URL+"/stream"))
	}
	ts.publish(t, "greeting", "hi", ginsse.ID("9"), ginsse.Retry(2500*time.Millisecond))
	for _, c := range clients {
		assert.Equal(t, sseEvent{Type: "greeting", Data: "hi", LastEventID: "9", Retry: 2500}, c.next(t))
	}
}

func TestServerWriteTimeoutDoesNotCutStreams(t *testing.T) {
	mr := miniredis.RunT(t)
	r := gin.New()
	s := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr(), Heartbeat: 100 * time.Millisecond})
	srv := httptest.NewUnstartedServer(r)
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(func() { s.Close(); srv.CloseClientConnections(); srv.Close() })
	c := openStream(t, srv.URL+"/stream")
	beats := 0
	for beats < 4 { // 400ms, twice the server's WriteTimeout
		select {
		case cm := <-c.comments:
			if cm == " heartbeat" {
				beats++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream went quiet")
		}
	}
	require.NoError(t, s.Publish(context.Background(), "", "still here"))
	assert.Equal(t, "still here", c.next(t).Data)
}

func TestSlowClientIsClosedWithoutHoldingOthers(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{QueueSize: 64, WriteTimeout: 500 * time.Millisecond})
	conn, _, _ := rawStream(t, ts.URL+"/stream", ": ok")
	defer conn.Close()
	reader := openStream(t, ts.URL+"/stream")
	big := strings.Repeat("x", 64<<10)
	start := time.Now()
	for i := range 200 {
		ts.publish(t, "", strconv.Itoa(i)+big)
	}
	assert.Less(t, time.Since(start), 10*time.Second, "publishing never waits for a stream")
	for i := range 200 {
		e := reader.next(t)
		require.True(t, e.Data == strconv.Itoa(i)+big, "event %d in order", i)
	}
	require.Eventually(t, func() bool { return ts.Sender.Stats().SlowCloses == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 1 }, 10*time.Second, 5*time.Millisecond)
}

func TestDisconnectReleasesEverything(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	transport := &http.Transport{}
	client := &http.Client{Transport: transport}
	open := func() {
		// Warm up the server's own goroutines before counting.
		c := openStreamWith(t, client, ts.URL+"/stream?channel=warm")
		c.close()
	}
	open()
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 0 }, 5*time.Second, time.Millisecond)
	transport.CloseIdleConnections()
	base := runtime.NumGoroutine()
	for round := range 10 {
		var cs []*sseClient
		for i := range 20 {
			cs = append(cs, openStreamWith(t, client, fmt.Sprintf("%s/stream?channel=c%d&channel=d%d", ts.URL, i%3, round%2)))
		}
		for _, c := range cs {
			c.close()
		}
	}
	require.Eventually(t, func() bool {
		st := ts.Sender.Stats()
		return st.Streams == 0 && st.Channels == 0
	}, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return len(streamChannels(ts.Redis.PubSubChannels(""))) == 0 },
		5*time.Second, time.Millisecond, "only the control channel stays subscribed")
	transport.CloseIdleConnections()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d, before: %d", runtime.NumGoroutine(), base)
}

func TestRedisDownAndBack(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	c := openStream(t, ts.URL+"/stream")
	addr := ts.Redis.Addr()
	ts.Redis.Close()

	start := time.Now()
	err := ts.Sender.Publish(context.Background(), "", "lost")
	assert.ErrorIs(t, err, ginsse.ErrUnavailable)
	assert.Less(t, time.Since(start), 3*time.Second)
	resp, err := http.Post(ts.URL+"/send?data=x", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	fresh := openStream(t, ts.URL+"/stream?channel=brandnew") // 200: a browser would give up on a 503
	assert.False(t, c.ended(100*time.Millisecond), "open streams stay open")
	assert.EqualValues(t, 1, ts.Sender.Stats().OutageOpens)

	mr := miniredis.NewMiniRedis()
	require.NoError(t, mr.StartAddr(addr))
	t.Cleanup(mr.Close)
	require.Eventually(t, func() bool { return mr.PubSubNumSub("sse")["sse"] == 1 }, 10*time.Second, 10*time.Millisecond,
		"the subscription comes back by itself")
	// Counted once the loop reading the subscription gets its first
	// message again; a SUBSCRIBE retried for a newcomer may have made the
	// connection before that.
	require.Eventually(t, func() bool { return ts.Sender.Stats().Reconnects >= 1 }, 10*time.Second, 10*time.Millisecond)
	// go-redis refuses to dial for up to a second once enough dials
	// failed during the outage, until its probe reaches Redis again.
	require.Eventually(t, func() bool {
		return ts.Sender.Publish(context.Background(), "", "probe", ginsse.Channel("nobody")) == nil
	}, 10*time.Second, 10*time.Millisecond, "publishing works again")
	require.NoError(t, ts.Sender.Publish(context.Background(), "", "back"))
	assert.Equal(t, "back", c.next(t).Data)

	require.Eventually(t, func() bool { return mr.PubSubNumSub("brandnew")["brandnew"] == 1 }, 10*time.Second, 10*time.Millisecond,
		"the stream opened during the outage is subscribed once Redis is back")
	require.NoError(t, ts.Sender.Publish(context.Background(), "", "for the newcomer", ginsse.Channel("brandnew")))
	assert.Equal(t, "for the newcomer", fresh.next(t).Data)

	mr.Publish("sse", "hola")
	assert.Equal(t, "hola", c.next(t).Data, "a foreign payload arrives as plain data")
	require.NoError(t, ts.Sender.Publish(context.Background(), "", "still streaming"))
	assert.Equal(t, "still streaming", c.next(t).Data)
}

func TestCloseEndsStreams(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	var cs []*sseClient
	for range 5 {
		cs = append(cs, openStream(t, ts.URL+"/stream"))
	}
	require.NoError(t, ts.Sender.Close())
	for _, c := range cs {
		assert.True(t, c.ended(5*time.Second), "stream ends when the Sender closes")
	}
	late := openStream(t, ts.URL+"/stream") // 200, so the browser retries elsewhere
	assert.True(t, late.ended(5*time.Second), "a stream after Close ends at once")
	assert.GreaterOrEqual(t, late.retry.Load(), int64(1000), "with a retry hint")
	assert.ErrorIs(t, ts.Sender.Publish(context.Background(), "", "x"), ginsse.ErrClosed)
	assert.NoError(t, ts.Sender.Close(), "closing twice is fine")
}

func TestShutdownReturnsPromptlyWithStreamsOpen(t *testing.T) {
	mr := miniredis.RunT(t)
	r := gin.New()
	s := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: r}
	srv.RegisterOnShutdown(func() { s.Close() })
	go srv.Serve(l)
	for range 20 {
		openStream(t, "http://"+l.Addr().String()+"/stream")
	}
	require.Equal(t, 20, s.Stats().Streams)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, srv.Shutdown(ctx))
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestOneSubscriptionPerChannel(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	var byChannel [3][]*sseClient
	for i := range 99 {
		ch := i % 3
		byChannel[ch] = append(byChannel[ch], openStream(t, ts.URL+"/stream?channel=c"+strconv.Itoa(ch)))
	}
	assert.Equal(t, map[string]int{"c0": 1, "c1": 1, "c2": 1}, ts.Redis.PubSubNumSub("c0", "c1", "c2"))
	for _, c := range byChannel[0] {
		c.close()
	}
	require.Eventually(t, func() bool { return ts.Redis.PubSubNumSub("c0")["c0"] == 0 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, map[string]int{"c1": 1, "c2": 1}, ts.Redis.PubSubNumSub("c1", "c2"))
}

package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newDemo(t *testing.T, history int) (*httptest.Server, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	sender, err := ginsse.New(ginsse.Options{Addr: mr.Addr(), History: history})
	require.NoError(t, err)
	srv := httptest.NewServer(newRouter(sender, "letmein"))
	t.Cleanup(func() {
		sender.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, mr
}

func post(t *testing.T, srv *httptest.Server, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(srv.URL+"/send", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readUntil reads the stream until a line with prefix and returns it.
func readUntil(t *testing.T, br *bufio.Reader, prefix string) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSuffix(line, "\n")
		}
	}
}

func stream(t *testing.T, u string, header http.Header) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
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
		resp, br := stream(t, srv.URL+"/stream?channel=news", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		readUntil(t, br, ": ok")
		status, body := post(t, srv, url.Values{"channel": {"news"}, "event": {"greet"}, "data": {"hello\nworld"}, "retry": {"2500"}})
		require.Equal(t, http.StatusAccepted, status, body)
		assert.Equal(t, "event: greet", readUntil(t, br, "event:"))
		assert.Equal(t, "retry: 2500", readUntil(t, br, "retry:"))
		assert.Equal(t, "data: hello", readUntil(t, br, "data:"))
		assert.Equal(t, "data: world", readUntil(t, br, "data:"))
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
		resp, br := stream(t, srv.URL+"/stream?channel=outage", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, ": ok", readUntil(t, br, ":"))
	}
}

func TestFirehoseNeedsTheToken(t *testing.T) {
	srv, _ := newDemo(t, 0)
	for _, u := range []string{"/stream?channel=firehose", "/stream?channel=sse&channel=firehose", "/stream?channel=firehose&token=nope"} {
		resp, _ := stream(t, srv.URL+u, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, u)
	}
	resp, _ := stream(t, srv.URL+"/stream?channel=firehose&token=letmein", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = stream(t, srv.URL+"/stream?channel=firehose", http.Header{"Cookie": {"token=letmein"}})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = stream(t, srv.URL+"/stream?channel=no*pe", nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestReconnectReplaysWhatWasMissed(t *testing.T) {
	srv, _ := newDemo(t, 1000)
	resp, br := stream(t, srv.URL+"/stream", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	id := strings.TrimPrefix(readUntil(t, br, "id: "), "id: ")
	resp.Body.Close()
	status, _ := post(t, srv, url.Values{"data": {"while away"}})
	require.Equal(t, http.StatusAccepted, status)
	_, br = stream(t, srv.URL+"/stream", http.Header{"Last-Event-ID": {id}})
	assert.Equal(t, "data: while away", readUntil(t, br, "data:"))
}

func TestFlags(t *testing.T) {
	t.Setenv("ADDR", "127.0.0.1:9999")
	t.Setenv("ADMIN_TOKEN", "fromenv")
	t.Setenv("HISTORY", "5")
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, config{addr: "127.0.0.1:9999", heartbeat: 15 * time.Second, adminToken: "fromenv", history: 5}, cfg)

	cfg, err = parseFlags([]string{"-addr", ":1", "-redis", "redis://x:1/0", "-heartbeat", "-1s", "-admin-token", "t", "-history", "0", "-max-streams", "9000"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, config{addr: ":1", redisURL: "redis://x:1/0", heartbeat: -time.Second, adminToken: "t", maxStreams: 9000}, cfg)

	_, err = parseFlags([]string{"-redis", "redis://x", "-redis-cluster", "a:1"}, io.Discard)
	assert.Error(t, err)
}

func TestMetrics(t *testing.T) {
	srv, _ := newDemo(t, 0)
	resp, br := stream(t, srv.URL+"/stream", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	readUntil(t, br, ": ok")
	status, _ := post(t, srv, url.Values{"data": {"x"}})
	require.Equal(t, http.StatusAccepted, status)
	m, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer m.Body.Close()
	body, _ := io.ReadAll(m.Body)
	assert.Contains(t, string(body), "ginsse_open_streams 1")
	assert.Contains(t, string(body), "ginsse_events_published_total 1")
}

package ginsse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/require"
)

// sseEvent is one event as a browser's EventSource dispatches it.
type sseEvent struct {
	Type        string // "message" when the frame named none
	Data        string
	LastEventID string
	Retry       int // the stream's reconnection time in ms; -1 before any retry field
}

// sseClient reads one open stream in a goroutine that ends when the
// stream does; close ends it and waits.
type sseClient struct {
	resp     *http.Response
	events   chan sseEvent
	comments chan string
	done     chan struct{}
	cancel   context.CancelFunc
	lastID   atomic.Pointer[string] // the EventSource's last event ID
	retry    atomic.Int64           // the reconnection time in ms, as of the last event or the end; -1 before any
}

// openStream connects to path on srv and requires a 200 stream.
func openStream(t testing.TB, url string) *sseClient {
	t.Helper()
	c, status := dialStream(t, url, nil)
	require.Equal(t, http.StatusOK, status, "stream %s", url)
	return c
}

// openStreamWith is openStream through client.
func openStreamWith(t testing.TB, client *http.Client, url string) *sseClient {
	t.Helper()
	c, status := dialStreamWith(t, client, url, nil)
	require.Equal(t, http.StatusOK, status, "stream %s", url)
	return c
}

// dialStream connects to url with optional headers. On a non-200 answer it
// returns a nil client and the status.
func dialStream(t testing.TB, url string, header http.Header) (*sseClient, int) {
	t.Helper()
	return dialStreamWith(t, http.DefaultClient, url, header)
}

func dialStreamWith(t testing.TB, client *http.Client, url string, header http.Header) (*sseClient, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	c := &sseClient{
		resp:     resp,
		events:   make(chan sseEvent, 1024),
		comments: make(chan string, 1024),
		done:     make(chan struct{}),
		cancel:   cancel,
	}
	c.retry.Store(-1)
	go c.read()
	t.Cleanup(c.close)
	return c, resp.StatusCode
}

// read parses the stream with sseclient's Reader, which interprets it as
// a browser does.
func (c *sseClient) read() {
	defer close(c.done)
	defer close(c.events)
	r := sseclient.NewReader(c.resp.Body)
	r.OnLastEventID = func(id string) { c.lastID.Store(&id) }
	r.OnComment = func(text string) {
		select {
		case c.comments <- text:
		default: // nobody listens for comments
		}
	}
	retry := func() int {
		d, ok := r.Retry()
		if !ok {
			return -1
		}
		ms := int(d.Milliseconds())
		c.retry.Store(int64(ms))
		return ms
	}
	defer retry() // a hint in the stream's last frame
	for {
		e, err := r.Next()
		if err != nil {
			return
		}
		c.events <- sseEvent{Type: e.Type, Data: e.Data, LastEventID: e.ID, Retry: retry()}
	}
}

// lastEventID is what a browser would send as Last-Event-ID now.
func (c *sseClient) lastEventID() string {
	if id := c.lastID.Load(); id != nil {
		return *id
	}
	return ""
}

// close drops the connection and waits for the reader to end.
func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

// next returns the next event, failing the test after timeout.
func (c *sseClient) next(t testing.TB) sseEvent {
	t.Helper()
	select {
	case e, ok := <-c.events:
		require.True(t, ok, "stream ended while waiting for an event")
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return sseEvent{}
	}
}

// ended reports whether the server closed the stream within d.
func (c *sseClient) ended(d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// testServer is a gin app with a Sender on miniredis (unless the options
// name a Redis), served by httptest.
type testServer struct {
	*httptest.Server
	Sender *ginsse.Sender
	Redis  *miniredis.Miniredis // nil when the options named a Redis
}

// newTestServer serves the stream at /stream, behind guards, and
// POST /send?channel=&event=&data=&id= publishing through ginsse.Send.
func newTestServer(t testing.TB, opts ginsse.Options, guards ...gin.HandlerFunc) *testServer {
	t.Helper()
	gin.SetMode(gin.TestMode)
	ts := &testServer{}
	if opts.Client == nil && opts.Addr == "" && opts.URL == "" {
		ts.Redis = miniredis.RunT(t)
		opts.Addr = ts.Redis.Addr()
	}
	r := gin.New()
	ts.Sender = ginsse.Register(r.Group("/stream", guards...), opts)
	r.Use(ts.Sender.Middleware())
	r.POST("/send", func(c *gin.Context) {
		var o []ginsse.SendOption
		if ch := c.Query("channel"); ch != "" {
			o = append(o, ginsse.Channel(ch))
		}
		if id := c.Query("id"); id != "" {
			o = append(o, ginsse.ID(id))
		}
		err := ginsse.Send(c, c.Query("event"), c.Query("data"), o...)
		switch {
		case err == nil:
			c.Status(http.StatusNoContent)
		case errors.Is(err, ginsse.ErrInvalidChannel), errors.Is(err, ginsse.ErrInvalidEvent):
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		default:
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
		}
	})
	ts.Server = httptest.NewServer(r)
	t.Cleanup(func() {
		ts.Server.CloseClientConnections()
		ts.Server.Close()
		_ = ts.Sender.Close()
	})
	return ts
}

// publish sends one event through the Sender, failing the test on error.
func (ts *testServer) publish(t testing.TB, typ, data string, opts ...ginsse.SendOption) {
	t.Helper()
	require.NoError(t, ts.Sender.Publish(context.Background(), typ, data, opts...))
}

// stalledStream opens a stream over a raw connection, reads up to the
// id-only frame that sets the client's Last-Event-ID, and then stops
// reading, as a frozen client does. It returns the connection, a reader
// positioned after that frame, and the id.
func stalledStream(t testing.TB, url string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	conn, br, line := rawStream(t, url, "id: ")
	return conn, br, strings.TrimSpace(strings.TrimPrefix(line, "id: "))
}

// rawStream opens a stream over a raw connection and reads until a line
// starting with prefix, which it returns with the connection and a reader
// positioned after it.
func rawStream(t testing.TB, url, prefix string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	u, err := neturl.Parse(url)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	// HTTP/1.0: the body comes unchunked, so it can be read as it is.
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, prefix) {
			return conn, br, line
		}
	}
}

// streamChannels drops from a list of subscribed Redis channels the
// control channel every Sender holds, leaving those of streams.
func streamChannels(names []string) []string {
	out := []string{}
	for _, n := range names {
		if !strings.HasSuffix(n, "ginsse/control") {
			out = append(out, n)
		}
	}
	return out
}

package ginsse_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resumeStream reconnects as a browser does, with Last-Event-ID.
func resumeStream(t testing.TB, url, lastID string) *sseClient {
	t.Helper()
	c, status := dialStream(t, url, http.Header{"Last-Event-ID": {lastID}})
	require.Equal(t, http.StatusOK, status)
	return c
}

func TestHistoryResumeAfterDisconnect(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100})
	c := openStream(t, ts.URL+"/stream?channel=news")
	for i := range 5 {
		ts.publish(t, "n", strconv.Itoa(i), ginsse.Channel("news"))
	}
	var last sseEvent
	for range 5 {
		last = c.next(t)
	}
	require.Equal(t, "4", last.Data)
	c.close()
	// The first stream may count as replayed the events that reached the
	// window before it found its start: only the resume's count is checked.
	before := ts.Sender.Stats().Replayed
	for i := 5; i < 10; i++ {
		ts.publish(t, "n", strconv.Itoa(i), ginsse.Channel("news"))
	}
	r := resumeStream(t, ts.URL+"/stream?channel=news", last.LastEventID)
	ts.publish(t, "n", "10", ginsse.Channel("news"))
	for i := 5; i <= 10; i++ {
		e := r.next(t)
		assert.Equal(t, strconv.Itoa(i), e.Data)
		assert.Equal(t, "n", e.Type)
	}
	// 10 was sent after the stream opened; it counts as replayed too when
	// the window already held it by the time the stream found its start.
	assert.Contains(t, []int64{5, 6}, ts.Sender.Stats().Replayed-before)
}

func TestHistoryFreshStreamResumesWithoutAnyEvent(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100})
	ts.publish(t, "", "before")
	c := openStream(t, ts.URL+"/stream")
	require.Eventually(t, func() bool { return c.lastEventID() != "" }, 5*time.Second, time.Millisecond)
	id := c.lastEventID()
	c.close()
	ts.publish(t, "", "while away")
	r := resumeStream(t, ts.URL+"/stream", id)
	assert.Equal(t, "while away", r.next(t).Data)
}

func TestHistoryGap(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 3})
	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "0")
	first := c.next(t)
	c.close()
	for i := 1; i < 10; i++ {
		ts.publish(t, "", strconv.Itoa(i))
	}
	r := resumeStream(t, ts.URL+"/stream", first.LastEventID)
	gap := r.next(t)
	assert.Equal(t, "ginsse-gap", gap.Type)
	assert.JSONEq(t, `{"channels":["sse"]}`, gap.Data)
	for i := 7; i < 10; i++ {
		assert.Equal(t, strconv.Itoa(i), r.next(t).Data)
	}
}

// An id the stream cannot read as its own positions — not a position,
// another publisher's, one for another list of channels — opens the
// stream with a gap and the whole history, then live events: a browser
// would give up for good on a 400. Only an id longer than any ginsse
// writes is refused.
func TestHistoryUnreadableLastEventID(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 3})
	ts.publish(t, "", "kept")
	for _, id := range []string{"abc", "1-2-3", "12", "1-0,2-0", "order-42", "1-0,2-0,3-0"} {
		for _, via := range []string{"header", "query"} {
			var c *sseClient
			if via == "header" {
				c = resumeStream(t, ts.URL+"/stream", id)
			} else {
				c = openStream(t, ts.URL+"/stream?lastEventId="+url.QueryEscape(id))
			}
			gap := c.next(t)
			assert.Equal(t, "ginsse-gap", gap.Type, "id %q by %s", id, via)
			assert.JSONEq(t, `{"channels":["sse"]}`, gap.Data)
			assert.Equal(t, "kept", c.next(t).Data, "then the whole history")
			c.close()
		}
	}
	_, status := dialStream(t, ts.URL+"/stream", http.Header{"Last-Event-ID": {strings.Repeat("1-0,", 2000)}})
	assert.Equal(t, http.StatusBadRequest, status, "an id longer than any ginsse writes")
}

func TestHistoryMultiChannelResume(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100})
	url := ts.URL + "/stream?channel=b&channel=a"
	c := openStream(t, url)
	ts.publish(t, "", "a1", ginsse.Channel("a"))
	ts.publish(t, "", "b1", ginsse.Channel("b"))
	// Each channel keeps its own order; between channels none is
	// promised, so the stream resumes from whichever came second.
	first, last := c.next(t), c.next(t)
	assert.ElementsMatch(t, []string{"a1", "b1"}, []string{first.Data, last.Data})
	c.close()
	ts.publish(t, "", "a2", ginsse.Channel("a"))
	ts.publish(t, "", "b2", ginsse.Channel("b"))
	ts.publish(t, "", "c", ginsse.Channel("c"))
	r, status := dialStream(t, ts.URL+"/stream?channel=a&channel=b&lastEventId="+last.LastEventID, nil)
	require.Equal(t, http.StatusOK, status)
	got := []string{r.next(t).Data, r.next(t).Data}
	assert.ElementsMatch(t, []string{"a2", "b2"}, got)
}

func TestHistoryPublishesRacingReplay(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 5000})
	c := openStream(t, ts.URL+"/stream")
	ts.publish(t, "", "0")
	first := c.next(t)
	c.close()
	for i := 1; i < 1000; i++ {
		ts.publish(t, "", strconv.Itoa(i))
	}
	done := make(chan error, 1)
	go func() {
		for i := 1000; i < 1500; i++ {
			if err := ts.Sender.Publish(context.Background(), "", strconv.Itoa(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	r := resumeStream(t, ts.URL+"/stream", first.LastEventID)
	for i := 1; i < 1500; i++ {
		require.Equal(t, strconv.Itoa(i), r.next(t).Data, "event %d", i)
	}
	require.NoError(t, <-done)
}

func TestHistoryRefusesCallerID(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 3})
	err := ts.Sender.Publish(context.Background(), "", "x", ginsse.ID("7"))
	require.ErrorIs(t, err, ginsse.ErrInvalidEvent)
}

func TestHistoryStreamCutMidFlowGetsEveryEventOnce(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 10000})
	const total = 3000
	c := openStream(t, ts.URL+"/stream")
	done := make(chan error, 1)
	go func() {
		for i := range total {
			if err := ts.Sender.Publish(context.Background(), "", strconv.Itoa(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	next := 0
	var last sseEvent
	for next < 500 {
		last = c.next(t)
		require.Equal(t, strconv.Itoa(next), last.Data)
		next++
	}
	c.close() // events keep coming while the client is away
	r := resumeStream(t, ts.URL+"/stream", last.LastEventID)
	for next < total {
		e := r.next(t)
		require.Equal(t, strconv.Itoa(next), e.Data, "every event once, in order")
		next++
	}
	require.NoError(t, <-done)
	select {
	case e := <-r.events:
		t.Fatalf("unexpected extra event %+v", e)
	default:
	}
}

func TestHistorySlowStreamCloseLosesNothing(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 1000, QueueSize: 2, WriteTimeout: 200 * time.Millisecond})
	conn, _, id := stalledStream(t, ts.URL+"/stream")
	defer conn.Close()
	big := strings.Repeat("x", 64<<10)
	for i := range 100 {
		ts.publish(t, "", strconv.Itoa(i)+big)
	}
	require.Eventually(t, func() bool { return ts.Sender.Stats().SlowCloses == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return ts.Sender.Stats().Streams == 0 }, 10*time.Second, 5*time.Millisecond)
	r := resumeStream(t, ts.URL+"/stream", id)
	for i := range 100 {
		require.Equal(t, strconv.Itoa(i)+big, r.next(t).Data)
	}
}

func TestHistoryLaggingStreamCatchesUpWithoutClosing(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 1000, ReplayWindow: 4, QueueSize: 2})
	// The client reads through a pipe with no buffer: a socket's buffers
	// (up to 32 MB on loopback) could take every event, and the stream
	// would never fall behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newPipeWriter(ctx)
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/stream", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.Config.Handler.ServeHTTP(w, req)
		w.end()
	}()
	defer func() { cancel(); w.pr.Close(); <-done }()
	br := bufio.NewReader(w.pr)
	for { // subscribed once the stream sends where it starts
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "id: ") {
			break
		}
	}
	// The client reads nothing while the events come, so the stream falls
	// further behind than the window holds.
	big := strings.Repeat("x", 64<<10)
	for i := range 100 {
		ts.publish(t, "", strconv.Itoa(i)+big)
	}
	r := sseclient.NewReader(br)
	for i := range 100 {
		e, err := r.Next()
		require.NoError(t, err, "after %d events; %+v", i, ts.Sender.Stats())
		require.True(t, e.Data == strconv.Itoa(i)+big, "event %d is %.8q, %d bytes", i, e.Data, len(e.Data))
	}
	st := ts.Sender.Stats()
	assert.Zero(t, st.SlowCloses)
	assert.Positive(t, st.Replayed, "the stream fell behind the window and caught up from Redis")
}

// Another publisher's id that only looks like a position (here one far in
// the future) neither makes the streams skip the events that follow nor,
// kept as the browser's Last-Event-ID, stalls the stream it resumes.
func TestHistoryForeignPositionLikeID(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{History: 100})
	c := openStream(t, ts.URL+"/stream")
	require.Eventually(t, func() bool { return c.lastEventID() != "" }, 5*time.Second, time.Millisecond)
	ts.Redis.Publish("sse", `{"data":"foreign","id":"99999999999999-0"}`)
	e := c.next(t)
	assert.Equal(t, "foreign", e.Data)
	assert.NotEqual(t, "99999999999999-0", c.lastEventID(), "the foreign id is not sent as a position")
	ts.publish(t, "", "real 1")
	assert.Equal(t, "real 1", c.next(t).Data)

	r, status := dialStream(t, ts.URL+"/stream", http.Header{"Last-Event-ID": {"99999999999999-0"}})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ginsse-gap", r.next(t).Type)
	assert.Equal(t, "real 1", r.next(t).Data, "everything retained is replayed")
	ts.publish(t, "", "real 2")
	assert.Equal(t, "real 2", r.next(t).Data)
}

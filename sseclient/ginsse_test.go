package sseclient_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ginsseServer is a gin app with a ginsse stream at /stream on miniredis.
type ginsseServer struct {
	*httptest.Server
	Sender *ginsse.Sender

	mu      sync.Mutex
	resumes []string // the Last-Event-ID of each stream request
}

func newGinsseServer(t testing.TB, opts ginsse.Options) *ginsseServer {
	t.Helper()
	gin.SetMode(gin.TestMode)
	gs := &ginsseServer{}
	opts.Addr = miniredis.RunT(t).Addr()
	r := gin.New()
	record := func(c *gin.Context) {
		gs.mu.Lock()
		gs.resumes = append(gs.resumes, c.GetHeader("Last-Event-ID"))
		gs.mu.Unlock()
	}
	gs.Sender = ginsse.Register(r.Group("/stream", record), opts)
	gs.Server = httptest.NewServer(r)
	t.Cleanup(func() {
		_ = gs.Sender.Close()
		gs.CloseClientConnections()
		gs.Close()
	})
	return gs
}

// publish sends events data from to to-1 on channel news.
func (gs *ginsseServer) publish(t testing.TB, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		require.NoError(t, gs.Sender.Publish(context.Background(), "n", strconv.Itoa(i), ginsse.Channel("news")))
	}
}

func (gs *ginsseServer) lastEventIDs() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]string(nil), gs.resumes...)
}

// TestResumeFromGinsseHistory cuts the connection mid-stream, publishes
// while the client is away, and checks the client gets every event once,
// in order, through ginsse's history.
func TestResumeFromGinsseHistory(t *testing.T) {
	gs := newGinsseServer(t, ginsse.Options{History: 100})
	opens, cuts := 0, 0
	c := newClient(t, gs.URL+"/stream?channel=news", sseclient.Options{Retry: 10 * time.Millisecond, OnState: func(ch sseclient.StateChange) {
		switch ch.State {
		case sseclient.Open: // subscribed: what is published now is live
			if opens++; opens == 1 {
				gs.publish(t, 0, 10)
			} else {
				gs.publish(t, 15, 20)
			}
		case sseclient.Reconnecting: // nobody listens: only the history has these
			cuts++
			gs.publish(t, 10, 15)
		}
	}})
	var got []string
	for e, err := range c.Events(testContext(t)) {
		require.NoError(t, err)
		got = append(got, e.Data)
		if e.Data == "4" {
			gs.CloseClientConnections() // events 5 to 9 are on their way
		}
		if e.Data == "19" {
			break
		}
	}
	want := make([]string, 20)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	assert.Equal(t, want, got, "nothing lost, nothing twice")
	assert.Equal(t, 1, cuts)
	ids := gs.lastEventIDs()
	require.Len(t, ids, 2)
	assert.Empty(t, ids[0])
	assert.NotEmpty(t, ids[1], "the reconnect sent Last-Event-ID")
}

// TestGinsseGap resumes, with a second loop over the same Client, from an
// id the history no longer holds: the first event is the gap, then what
// is retained.
func TestGinsseGap(t *testing.T) {
	gs := newGinsseServer(t, ginsse.Options{History: 3})
	first := true
	c := newClient(t, gs.URL+"/stream?channel=news", sseclient.Options{OnState: func(ch sseclient.StateChange) {
		if ch.State == sseclient.Open && first {
			first = false
			gs.publish(t, 0, 1)
		}
	}})
	got, err := collect(testContext(t), c, 1)
	require.NoError(t, err)
	require.Equal(t, "0", got[0].Data)
	id := c.LastEventID()
	require.NotEmpty(t, id)

	gs.publish(t, 1, 10) // the history keeps 7, 8 and 9
	got, err = collect(testContext(t), c, 4)
	require.NoError(t, err)
	require.True(t, got[0].IsGap())
	chans, ok := got[0].GapChannels()
	require.True(t, ok)
	assert.Equal(t, []string{"news"}, chans)
	assert.Equal(t, []string{"7", "8", "9"}, []string{got[1].Data, got[2].Data, got[3].Data})
	_, ok = got[1].GapChannels()
	assert.False(t, ok)
	assert.Equal(t, []string{"", id}, gs.lastEventIDs(), "the second loop resumed")
}

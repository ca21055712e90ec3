package ginsse_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHTTP2StreamOutlivesServerWriteTimeout is
// TestServerWriteTimeoutDoesNotCutStreams over HTTP/2 with TLS, where the
// server's WriteTimeout is a per-stream timer: events spaced well beyond
// it, with no heartbeat in between, still arrive on the same stream.
func TestHTTP2StreamOutlivesServerWriteTimeout(t *testing.T) {
	mr := miniredis.RunT(t)
	r := gin.New()
	s := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr(), Heartbeat: -1})
	srv := httptest.NewUnstartedServer(r)
	srv.EnableHTTP2 = true
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.StartTLS()
	t.Cleanup(func() { s.Close(); srv.CloseClientConnections(); srv.Close() })

	c := openStreamWith(t, srv.Client(), srv.URL+"/stream")
	require.Equal(t, 2, c.resp.ProtoMajor, "the stream is HTTP/2")
	for i := range 3 {
		if i > 0 {
			// Nothing is written meanwhile: the wait is what is tested.
			time.Sleep(2 * srv.Config.WriteTimeout)
		}
		require.NoError(t, s.Publish(context.Background(), "", strconv.Itoa(i)))
		assert.Equal(t, strconv.Itoa(i), c.next(t).Data, "event %d, %v after the stream opened", i, time.Duration(i)*2*srv.Config.WriteTimeout)
	}
	assert.Equal(t, 1, s.Stats().Streams, "still the one stream")
}

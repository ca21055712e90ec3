package sseclient_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadme is the README's "Testing your app" snippet, word for word
// (TestReadmeIsInSync checks it), so that it keeps compiling and passing.
func TestReadme(t *testing.T) {
	r := gin.New()
	events := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: miniredis.RunT(t).Addr()})
	srv := httptest.NewServer(r)
	t.Cleanup(func() { events.Close(); srv.Close() })

	c, err := sseclient.New(srv.URL+"/stream?channel=news", sseclient.Options{
		OnState: func(s sseclient.StateChange) {
			if s.State == sseclient.Open { // subscribed: publish now
				require.NoError(t, events.Publish(context.Background(), "update", "hello", ginsse.Channel("news")))
			}
		},
	})
	require.NoError(t, err)
	for ev, err := range c.Events(t.Context()) {
		require.NoError(t, err)
		assert.Equal(t, "hello", ev.Data)
		break
	}
}

// TestReadmeIsInSync checks that the README shows TestReadme's body.
func TestReadmeIsInSync(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## Testing your app")
	require.True(t, ok)
	_, snippet, ok := strings.Cut(section, "```go\nfunc TestUpdates(t *testing.T) {\n")
	require.True(t, ok)
	snippet, _, _ = strings.Cut(snippet, "\n}\n```")

	src, err := os.ReadFile("readme_test.go")
	require.NoError(t, err)
	_, body, ok := strings.Cut(string(src), "func TestReadme(t *testing.T) {\n")
	require.True(t, ok)
	body, _, _ = strings.Cut(body, "\n}\n")
	assert.Equal(t, body, snippet)
}

// TestReadmeHistoryFromTheStart is the README's other way: with History, a
// test publishes first and reads everything retained with Last-Event-ID 0.
func TestReadmeHistoryFromTheStart(t *testing.T) {
	r := gin.New()
	events := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: miniredis.RunT(t).Addr(), History: 10})
	srv := httptest.NewServer(r)
	t.Cleanup(func() { events.Close(); srv.Close() })
	require.NoError(t, events.Publish(context.Background(), "update", "hello", ginsse.Channel("news")))

	c, err := sseclient.New(srv.URL+"/stream?channel=news", sseclient.Options{LastEventID: "0"})
	require.NoError(t, err)
	got, err := collect(testContext(t), c, 1)
	require.NoError(t, err)
	assert.Equal(t, "hello", got[0].Data)
}

package ginsse_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	mr := miniredis.RunT(t)
	gin.SetMode(gin.TestMode)
	r := gin.New()
	s := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr()})
	defer s.Close()
	r.Use(s.Middleware())
	r.POST("/send", func(c *gin.Context) {
		if err := ginsse.Send(c, "greet", gin.H{"a": 1}, ginsse.ID("7")); err != nil {
			c.JSON(503, gin.H{"error": err.Error()})
			return
		}
		c.Status(204)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stream?channel=sse")
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	line, _ := br.ReadString('\n')
	require.Equal(t, ": ok\n", line)
	br.ReadString('\n')
	pr, err := http.Post(srv.URL+"/send", "text/plain", strings.NewReader(""))
	require.NoError(t, err)
	require.Equal(t, 204, pr.StatusCode)
	var got []string
	for i := 0; i < 4; i++ {
		l, _ := br.ReadString('\n')
		got = append(got, l)
	}
	require.Equal(t, []string{"event: greet\n", "id: 7\n", "data: {\"a\":1}\n", "\n"}, got)
	resp.Body.Close()
	require.Eventually(t, func() bool { return s.Stats().Streams == 0 }, 2e9, 1e7)
	bad, _ := http.Get(srv.URL + "/stream?channel=a*b")
	require.Equal(t, 400, bad.StatusCode)
}

package ginsse_test

import (
	"testing"

	"github.com/ginsse/ginsse"
	"github.com/stretchr/testify/assert"
)

func TestSendReachesStream(t *testing.T) {
	ts := newTestServer(t, ginsse.Options{})
	c := openStream(t, ts.URL+"/stream?channel=news")
	ts.publish(t, "greet", "hello\nworld", ginsse.Channel("news"), ginsse.ID("7"))
	e := c.next(t)
	assert.Equal(t, sseEvent{Type: "greet", Data: "hello\nworld", LastEventID: "7", Retry: -1}, e)
}

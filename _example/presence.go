package main

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
)

// presence answers GET /presence?channel=NAME, behind the stream's guards:
// 200 with {"channel", "users", "streams"} (users sorted; anonymous
// streams count in streams only), 400 for an invalid channel or more than
// one, 503 when Redis is unreachable.
func presence(sender *ginsse.Sender) gin.HandlerFunc {
	return func(c *gin.Context) {
		chans, err := ginsse.Channels(c)
		if err == nil && len(chans) != 1 {
			err = errors.New("name one channel")
		}
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		p, err := sender.Presence(c.Request.Context(), chans[0])
		if err != nil {
			c.JSON(errorStatus(err), gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"channel": p.Channel, "users": p.Users, "streams": p.Streams})
	}
}

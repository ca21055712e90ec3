package ginsse_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
)

func requireLogin(c *gin.Context) { c.Next() }

func ExampleRegister() {
	r := gin.Default()
	stream := r.Group("/stream", requireLogin) // group middleware guards the streams
	events := ginsse.Register(stream, ginsse.Options{Addr: "localhost:6379"})
	defer events.Close()
	r.Use(events.Middleware()) // makes ginsse.Send work in the routes below

	r.POST("/send", func(c *gin.Context) {
		if err := ginsse.Send(c, "greeting", gin.H{"message": "Hello!"}); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.Status(http.StatusAccepted)
	})
	_ = r.Run(":8080")
}

func ExampleSend() {
	handler := func(c *gin.Context) {
		err := ginsse.Send(c, "update", "line 1\nline 2",
			ginsse.Channel("orders"),
			ginsse.ID("42"),
			ginsse.Retry(5*time.Second))
		if err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.Status(http.StatusAccepted)
	}
	_ = handler
}

// A background worker publishes through the Sender itself, outside any
// request.
func ExampleSender_Publish() {
	events, err := ginsse.New(ginsse.Options{Addr: "localhost:6379"})
	if err != nil {
		log.Fatal(err)
	}
	defer events.Close()
	ctx := context.Background()
	for job := range make(chan string) {
		if err := events.Publish(ctx, "job-done", job, ginsse.Channel("jobs")); err != nil {
			log.Print(err)
		}
	}
}

// A guard that depends on the channel asks Channels which channels the
// request will subscribe to.
func ExampleChannels() {
	r := gin.New()
	stream := r.Group("/stream", func(c *gin.Context) {
		chans, err := ginsse.Channels(c)
		if err != nil {
			c.Next() // the stream handler answers 400
			return
		}
		if slices.Contains(chans, "admin") && c.Query("token") != "secret" {
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "admins only"})
			return
		}
		c.Next()
	})
	ginsse.Register(stream, ginsse.Options{})
}

// With History on, a client that reconnects with Last-Event-ID receives
// what it missed; browsers send it by themselves.
func ExampleOptions_history() {
	r := gin.New()
	events := ginsse.Register(r.Group("/stream"), ginsse.Options{
		History:    1000,      // events kept per channel
		HistoryAge: time.Hour, // and none older than this
	})
	defer events.Close()
}

// The bytes a browser receives for one event.
func Example_wireFormat() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	events := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr()})
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer events.Close()

	resp, err := http.Get(srv.URL + "/stream?channel=news")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	hello, _ := body.ReadString('\n')
	_, _ = body.ReadString('\n')
	fmt.Printf("%q\n", hello)

	_ = events.Publish(context.Background(), "update", "line 1\nline 2", ginsse.Channel("news"), ginsse.ID("42"))
	var frame strings.Builder
	for {
		line, _ := body.ReadString('\n')
		frame.WriteString(line)
		if line == "\n" {
			break
		}
	}
	fmt.Print(frame.String())
	// Output:
	// ": ok\n"
	// event: update
	// id: 42
	// data: line 1
	// data: line 2
}

func ExampleSetIdentity() {
	r := gin.Default()
	stream := r.Group("/stream", func(c *gin.Context) {
		user, err := c.Cookie("user") // your session lookup
		if err != nil {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "log in first"})
			return
		}
		// The stream ends, with a retry hint, when the session does; the
		// browser then comes back through this guard.
		ginsse.SetIdentity(c, ginsse.Identity{User: user, ExpiresAt: time.Now().Add(time.Hour)})
		c.Next()
	})
	events := ginsse.Register(stream, ginsse.Options{Addr: "localhost:6379", MaxStreamAge: 30 * time.Minute})
	defer events.Close()
	_ = r.Run(":8080")
}

// A logout ends the user's streams on every replica. The session goes
// first, so the browser that comes back after the retry hint meets the
// guard's 401.
func ExampleSender_Disconnect() {
	var sessions sync.Map // user -> struct{}: your session store
	r := gin.Default()
	stream := r.Group("/stream", func(c *gin.Context) {
		user, err := c.Cookie("user")
		if _, ok := sessions.Load(user); err != nil || !ok {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "log in first"})
			return
		}
		ginsse.SetIdentity(c, ginsse.Identity{User: user})
		c.Next()
	})
	events := ginsse.Register(stream, ginsse.Options{Addr: "localhost:6379"})
	defer events.Close()
	r.POST("/logout", func(c *gin.Context) {
		user, _ := c.Cookie("user")
		sessions.Delete(user)
		if err := events.Disconnect(c, ginsse.User(user)); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.Status(http.StatusNoContent)
	})
	_ = r.Run(":8080")
}

// Refresh keeps a stream open past its identity's expiry for as long as
// the session lives, without a reconnect.
func ExampleOptions_refresh() {
	sessionExpiry := func(ctx context.Context, user string) (time.Time, error) {
		return time.Now().Add(15 * time.Minute), nil // your session store
	}
	events, err := ginsse.New(ginsse.Options{
		Addr: "localhost:6379",
		Refresh: func(ctx context.Context, id ginsse.Identity) (time.Time, error) {
			return sessionExpiry(ctx, id.User)
		},
	})
	if err != nil {
		panic(err)
	}
	defer events.Close()
}

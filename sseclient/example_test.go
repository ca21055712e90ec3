package sseclient_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/sseclient"
)

// A server sends two events and ends the stream; the Client reconnects
// with Last-Event-ID, and the server resumes after it.
func ExampleClient_Events() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			fmt.Fprintf(w, "event: resumed\ndata: after %s\n\n", id)
			return
		}
		fmt.Fprint(w, "retry: 10\n\nid: 1\ndata: hello\n\nevent: update\ndata: line 1\ndata: line 2\n\n")
	}))
	defer srv.Close()

	c, err := sseclient.New(srv.URL, sseclient.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ev, err := range c.Events(ctx) {
		if err != nil {
			fmt.Println("stopped:", err)
			break
		}
		fmt.Printf("%s %q id=%s\n", ev.Type, ev.Data, ev.ID)
		if ev.Type == "resumed" {
			break
		}
	}
	// Output:
	// message "hello" id=1
	// update "line 1\nline 2" id=1
	// resumed "after 1" id=1
}

// A ginsse server with history sends a ginsse-gap event first when a
// client resumes from further back than it retains; the application then
// fetches the named channels' state afresh.
func ExampleEvent_IsGap() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	events := ginsse.Register(r.Group("/stream"), ginsse.Options{Addr: mr.Addr(), History: 2})
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer events.Close()
	for i := range 5 {
		_ = events.Publish(context.Background(), "", fmt.Sprint("event ", i), ginsse.Channel("news"))
	}

	// "1-0" is older than anything retained: events 0 to 2 are gone.
	c, _ := sseclient.New(srv.URL+"/stream?channel=news", sseclient.Options{LastEventID: "1-0"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ev, err := range c.Events(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		if ev.IsGap() {
			chans, _ := ev.GapChannels()
			fmt.Println("gap: refetch", chans)
			continue
		}
		fmt.Println(ev.Data)
		if ev.Data == "event 4" {
			break
		}
	}
	// Output:
	// gap: refetch [news]
	// event 3
	// event 4
}

// A Reader parses a stream on its own. NextRaw allocates nothing: its
// views are valid until the next call.
func ExampleReader() {
	stream := "\xEF\xBB\xBF: a comment\r\nid: 7\r\nevent: update\r\ndata: line 1\r\ndata: line 2\r\n\r\ndata: no id field\n\n"
	r := sseclient.NewReader(strings.NewReader(stream))
	for {
		ev, err := r.NextRaw()
		if err != nil {
			break // io.EOF at the end of the stream
		}
		fmt.Printf("%s %q id=%s\n", ev.Type, ev.Data, ev.ID)
	}
	// Output:
	// update "line 1\nline 2" id=7
	// message "no id field" id=7
}

// The hooks show what a browser keeps to itself: the heartbeats that say a
// quiet stream is alive, and the resume position, which an id-only frame
// moves without an event.
func ExampleReader_hooks() {
	stream := ": ok\n\nid: 41\n\n: heartbeat\n\nid: 42\ndata: hello\n\n"
	r := sseclient.NewReader(strings.NewReader(stream))
	r.OnComment = func(text string) { fmt.Printf("comment %q\n", text) }
	r.OnLastEventID = func(id string) { fmt.Println("save position", id) }
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		fmt.Println("event", ev.Data)
	}
	// Output:
	// comment " ok"
	// save position 41
	// comment " heartbeat"
	// save position 42
	// event hello
}

// A worker that must not give up retries even after answers a browser
// would stop on, and logs where it is.
func ExampleNew() {
	c, err := sseclient.New("https://example.com/stream?channel=jobs", sseclient.Options{
		Header:       http.Header{"Authorization": {"Bearer " + "token"}},
		KeepRetrying: true,
		MaxBackoff:   time.Minute,
		IdleTimeout:  45 * time.Second, // three of ginsse's default heartbeats
		OnState: func(ch sseclient.StateChange) {
			if ch.State == sseclient.Reconnecting {
				log.Printf("stream: %v; retrying in %v", ch.Err, ch.Delay)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range c.Events(context.Background()) {
		if err != nil {
			log.Fatal(err) // only an event over MaxEventSize ends this loop
		}
		log.Printf("job %s: %s", ev.ID, ev.Data)
	}
}

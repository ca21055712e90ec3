package sseclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/require"
)

// request is what a scripted server saw of one request.
type request struct {
	header http.Header
	proto  int
	at     time.Time
}

// script answers the n-th request (from 0) to a scripted server.
type script func(w http.ResponseWriter, r *http.Request, n int)

// scripted is an httptest server that answers each request with script
// and records them.
type scripted struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
	gone     chan int // receives n when request n's client went away
}

// serve starts a scripted server on loopback; tls serves HTTP/2 over TLS.
func serve(t testing.TB, tls bool, s script) *scripted {
	t.Helper()
	ss := &scripted{gone: make(chan int, 100)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss.mu.Lock()
		n := len(ss.requests)
		ss.requests = append(ss.requests, request{header: r.Header.Clone(), proto: r.ProtoMajor, at: time.Now()})
		ss.mu.Unlock()
		s(w, r, n)
		if r.Context().Err() != nil {
			ss.gone <- n
		}
	})
	ss.Server = httptest.NewUnstartedServer(h)
	if tls {
		ss.EnableHTTP2 = true
		ss.StartTLS()
	} else {
		ss.Start()
	}
	t.Cleanup(func() {
		ss.CloseClientConnections()
		ss.Close()
	})
	return ss
}

// seen returns the requests so far.
func (ss *scripted) seen() []request {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]request(nil), ss.requests...)
}

// stream answers with an event stream, writing and flushing each frame.
func stream(w http.ResponseWriter, frames ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for _, f := range frames {
		_, _ = io.WriteString(w, f)
		w.(http.Flusher).Flush()
	}
}

// hold keeps a stream open until its client goes away.
func hold(r *http.Request) { <-r.Context().Done() }

// newClient returns a Client of url, failing the test on error.
func newClient(t testing.TB, url string, opts sseclient.Options) *sseclient.Client {
	t.Helper()
	c, err := sseclient.New(url, opts)
	require.NoError(t, err)
	return c
}

// collect ranges over c's events until it has n of them or the loop ends,
// and returns the events and the error it ended with, if any.
func collect(ctx context.Context, c *sseclient.Client, n int) ([]sseclient.Event, error) {
	var got []sseclient.Event
	for e, err := range c.Events(ctx) {
		if err != nil {
			return got, err
		}
		if got = append(got, e); len(got) == n {
			break
		}
	}
	return got, nil
}

// testContext bounds a test's loop, so a bug fails it instead of hanging.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// states records the changes a Client reports through Options.OnState.
type states struct {
	mu      sync.Mutex
	changes []sseclient.StateChange
	opened  chan struct{} // receives on every change to Open
}

func newStates() *states { return &states{opened: make(chan struct{}, 100)} }

func (s *states) record(ch sseclient.StateChange) {
	s.mu.Lock()
	s.changes = append(s.changes, ch)
	s.mu.Unlock()
	if ch.State == sseclient.Open {
		s.opened <- struct{}{}
	}
}

func (s *states) list() []sseclient.StateChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sseclient.StateChange(nil), s.changes...)
}

// names returns the states in the order they came.
func (s *states) names() []string {
	var out []string
	for _, ch := range s.list() {
		out = append(out, ch.State.String())
	}
	return out
}

// waitOpen waits for the next change to Open.
func (s *states) waitOpen(t testing.TB) {
	t.Helper()
	select {
	case <-s.opened:
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not open a stream within 5s")
	}
}

// requireGoroutinesSettle fails unless the goroutine count comes back to
// at most base.
func requireGoroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, before: %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

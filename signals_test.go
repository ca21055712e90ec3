package ginsse

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// revokeRaised reports whether a command ended rc's stream: the revoke
// signal is set and the stream has a wake-up waiting.
func revokeRaised(rc *reach) bool {
	return rc.st.signals.Load()&sigRevoke != 0 && len(rc.st.wake) == 1
}

// downSender is a Sender whose Redis does not answer, so that its streams
// wait Timeout for their subscriptions before they open.
func downSender(t *testing.T) *Sender {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s, err := New(Options{Addr: addr, Timeout: 300 * time.Millisecond, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serveDirect runs s's stream route for user on channel news, on a
// recorder, and returns it and a channel closed when the handler returned.
func serveDirect(s *Sender, user string) (*httptest.ResponseRecorder, <-chan struct{}) {
	rec := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(rec)
	c.Request = httptest.NewRequest("GET", "/stream?channel=news", nil)
	SetIdentity(c, Identity{User: user})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.resolve(c)
		s.serve(c)
	}()
	return rec, done
}

// waitRegistered waits until n streams are known to s's commands.
func waitRegistered(t *testing.T, s *Sender, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.reach.mu.Lock()
		got := len(s.reach.m)
		s.reach.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams registered after 5 s, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // the stream registers in its own goroutine; nothing signals it
	}
}

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the stream did not end within 5 s", what)
	}
}

// A NoReconnect command that picks a stream while it still waits for
// Redis reaches its client once the stream opens: the signal waits on the
// stream until its first wake-up.
func TestRevokeWhileWaitingForRedisIsDelivered(t *testing.T) {
	s := downSender(t)
	rec, done := serveDirect(s, "ann")
	waitRegistered(t, s, 1)
	if n := s.reach.apply(&command{Selector: User("ann"), Final: true}); n != 1 {
		t.Fatalf("the command picked %d streams, want 1", n)
	}
	waitDone(t, done, "revoked")
	body := rec.Body.String()
	if !strings.HasPrefix(body, string(helloFrame)) || !strings.Contains(body, string(disconnectFrame)) || !strings.Contains(body, "retry: ") {
		t.Fatalf("body %q: want the hello, the disconnect event and a retry hint", body)
	}
	if got := s.Stats().Revoked; got != 1 {
		t.Fatalf("Stats().Revoked = %d, want 1", got)
	}
}

// Close ends a stream that was waiting for Redis when Close woke the
// others, and one known only after Close: each sees quit at its first
// wake-up and ends with a retry hint.
func TestCloseEndsStreamsWaitingOrArrivingLate(t *testing.T) {
	s := downSender(t)
	waiting, waitingDone := serveDirect(s, "ann")
	waitRegistered(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, waitingDone, "waiting at Close")
	if body := waiting.Body.String(); !strings.HasSuffix(body, "\n\n") || !strings.Contains(body, "retry: ") {
		t.Fatalf("stream waiting at Close: body %q, want a retry hint", body)
	}

	// Past serve's check, as a stream admitted just before Close is.
	rec := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(rec)
	c.Request = httptest.NewRequest("GET", "/stream?channel=news", nil)
	late := make(chan struct{})
	go func() {
		defer close(late)
		s.stream(c, []string{"news"}, resume{})
	}()
	waitDone(t, late, "registered after Close")
	if body := rec.Body.String(); !strings.Contains(body, "retry: ") {
		t.Fatalf("stream registered after Close: body %q, want a retry hint", body)
	}
}

// A heartbeat and a revoke that arrive together end a settled stream
// without another frame: the revoke wins.
func TestHeartbeatAndRevokeInOneWakeUp(t *testing.T) {
	s := downSender(t)
	rec, done := serveDirect(s, "bob")
	waitRegistered(t, s, 1)
	s.reach.mu.Lock()
	for r := range s.reach.m {
		r.st.raise(sigBeat)
	}
	s.reach.mu.Unlock()
	s.reach.apply(&command{Selector: User("bob")})
	waitDone(t, done, "revoked")
	body := strings.TrimPrefix(rec.Body.String(), string(helloFrame))
	if !strings.HasPrefix(body, "retry: ") || strings.Contains(body, string(heartbeatFrame)) || strings.Contains(body, string(disconnectFrame)) {
		t.Fatalf("after the hello: %q, want only a retry hint", body)
	}
	if got := s.Stats().Revoked; got != 1 {
		t.Fatalf("Stats().Revoked = %d, want 1", got)
	}
}

package ginsse

import (
	"testing"
	"time"
)

// A topic added before the subscription connection dropped, whose
// SUBSCRIBE went out only after the reset, is ready at its one
// confirmation: the resubscribe of the reconnect did not include it.
func TestTopicSubscribedAfterResetIsReadyAtItsConfirmation(t *testing.T) {
	h := newHub(false, 16, 16, 0)
	fresh := h.add(newStream(), []string{"x"})
	h.resetAll()
	h.sent(fresh[0])
	h.confirm("x")
	if !isReady(fresh[0]) {
		t.Fatalf("topic not ready after its confirmation: %d pending", h.pending["x"])
	}
}

// A SUBSCRIBE that failed to go out is not waited for: the next stream on
// the channel is ready at its own confirmation.
func TestFailedSubscribeIsNotWaitedFor(t *testing.T) {
	h := newHub(false, 16, 16, 0)
	st := newStream()
	fresh := h.add(st, []string{"x"})
	h.sent(fresh[0])
	h.unsent([]string{"x"})
	h.remove(st)
	next := h.add(newStream(), []string{"x"})
	h.sent(next[0])
	h.confirm("x")
	if !isReady(next[0]) {
		t.Fatalf("topic not ready after its confirmation: %d pending", h.pending["x"])
	}
}

// A confirmation for a topic whose SUBSCRIBE has not gone out yet does not
// make it ready.
func TestConfirmationBeforeSubscribeDoesNotOpen(t *testing.T) {
	h := newHub(false, 16, 16, 0)
	fresh := h.add(newStream(), []string{"x"})
	h.confirm("x")
	if isReady(fresh[0]) {
		t.Fatal("ready before its SUBSCRIBE went out")
	}
}

// isReady reports whether Redis's confirmation of t was taken.
func isReady(t *topic) bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// A MOVED reply for a slot that holds no subscribed channel any more
// changes nothing.
func TestRedirectForAnEmptySlot(t *testing.T) {
	s := &Sender{quit: make(chan struct{}), hub: newHub(false, 16, 16, 0)}
	sh := &shards{s: s, conns: map[string]*psConn{}, where: map[string]string{}}
	sh.redirect("MOVED 1234 127.0.0.1:7001")
}

func TestLivePosition(t *testing.T) {
	now := time.UnixMilli(1796188569147)
	for id, want := range map[string]bool{
		"1796188569147-0":  true,
		"1796188569000-12": true,
		"1796102169147-0":  true, // a day behind
		"2024-06":          false,
		"99999999999999-0": false,
		"0-1":              false,
		"42":               false,
		"":                 false,
	} {
		if _, ok := livePosition(id, now); ok != want {
			t.Errorf("livePosition(%q) = %v, want %v", id, ok, want)
		}
	}
}

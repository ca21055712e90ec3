package ginsse

import (
	"bytes"
	"net/http"
	"testing"
)

// Frames that went into the window together leave in one step of the
// stream, so follow flushes them once.
func TestQueuedFramesLeaveInOneStep(t *testing.T) {
	s := &Sender{opts: Options{QueueSize: 16}, hub: newHub(false, 16, 16, 0)}
	st := newStream()
	s.hub.add(st, []string{"sse"})
	for _, d := range []string{"a", "b", "c", "d", "e"} {
		e := event{data: d, retry: -1}
		s.hub.publish("sse", newFrame(&e, position{}))
	}
	var out bytes.Buffer
	d := &delivery{streamWriter: streamWriter{s: s, rc: http.NewResponseController(nil)}, st: st, idSent: true}
	<-st.wake
	if !d.step(&out) {
		t.Fatal("step failed")
	}
	if got, want := out.String(), "data: a\n\ndata: b\n\ndata: c\n\ndata: d\n\ndata: e\n\n"; got != want {
		t.Fatalf("one step wrote %q, want %q", got, want)
	}
	if len(st.wake) != 0 {
		t.Fatal("the stream woke itself with nothing left to write")
	}
	if n := s.delivered.Load(); n != 5 {
		t.Fatalf("delivered %d, want 5", n)
	}
}

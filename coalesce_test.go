package ginsse

import (
	"bytes"
	"context"
	"net/http"
	"testing"
)

// Frames queued together leave in one step of the stream, so c.Stream
// flushes them once.
func TestQueuedFramesLeaveInOneStep(t *testing.T) {
	s := &Sender{opts: Options{QueueSize: 16}}
	st := newStream(16, false)
	var frames []*frame
	for _, d := range []string{"a", "b", "c", "d", "e"} {
		e := event{data: d, retry: -1}
		frames = append(frames, newFrame(&e, position{}))
	}
	for _, f := range frames[1:] {
		st.offer(f)
	}
	var out bytes.Buffer
	w := &streamWriter{s: s, rc: http.NewResponseController(nil)}
	if !w.drain(context.Background(), &out, st, frames[0]) {
		t.Fatal("drain failed")
	}
	if got, want := out.String(), "data: a\n\ndata: b\n\ndata: c\n\ndata: d\n\ndata: e\n\n"; got != want {
		t.Fatalf("one step wrote %q, want %q", got, want)
	}
	if len(st.queue) != 0 {
		t.Fatalf("%d frames left behind", len(st.queue))
	}
	if n := s.delivered.Load(); n != 5 {
		t.Fatalf("delivered %d, want 5", n)
	}
}

package ginsse

import (
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// maxBatch bounds how many queued frames one write gathers.
const maxBatch = 64

// serve is the stream handler: it subscribes the request's channels,
// answers 200 once Redis confirmed them, and then writes frames until the
// client goes, the stream falls behind, or the Sender closes.
func (s *Sender) serve(c *gin.Context) {
	chans, err := Channels(c)
	if err != nil {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	if s.closed() {
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": ErrClosed.Error()})
		return
	}
	names := chans
	if s.opts.Prefix != "" {
		names = make([]string, len(chans))
		for i, ch := range chans {
			names[i] = s.opts.Prefix + ch
		}
	}
	ctx := c.Request.Context()
	st := newStream(s.opts.QueueSize)
	if err := s.subscribe(ctx, st, names); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("ginsse: stream refused", "channels", chans, "err", err)
			c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
		}
		return
	}
	defer s.unsubscribe(st)

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)

	w := &streamWriter{s: s, rc: http.NewResponseController(c.Writer)}
	// Write at once so the browser's open event fires before any message.
	if !w.write(c.Writer, helloFrame) {
		return
	}
	c.Writer.Flush()
	c.Stream(func(out io.Writer) bool {
		select {
		case f := <-st.queue:
			return w.drain(out, st, f)
		case <-s.beat.wait():
			return w.write(out, heartbeatFrame)
		case <-st.kill:
			s.log.Warn("ginsse: stream closed: client too slow", "channels", chans, "queue", s.opts.QueueSize)
			return false
		case <-s.quit:
			return false
		case <-ctx.Done():
			return false
		}
	})
	if w.err != nil && ctx.Err() == nil {
		s.log.Warn("ginsse: stream closed: write failed", "channels", chans, "err", w.err)
	}
}

// streamWriter writes frames to one client, extending the write deadline
// before each write so that a server WriteTimeout does not cut a healthy
// stream while a client that stopped reading is still dropped.
type streamWriter struct {
	s   *Sender
	rc  *http.ResponseController
	err error
}

func (w *streamWriter) write(out io.Writer, b []byte) bool {
	if d := w.s.opts.WriteTimeout; d > 0 {
		// Not every ResponseWriter supports deadlines; streaming works
		// without one.
		_ = w.rc.SetWriteDeadline(time.Now().Add(d))
	}
	if _, err := out.Write(b); err != nil {
		w.err = err
		return false
	}
	return true
}

// drain writes f and whatever else is already queued, so a burst leaves in
// one flush (c.Stream flushes after each step).
func (w *streamWriter) drain(out io.Writer, st *stream, f *frame) bool {
	n := int64(1)
	if !w.write(out, f.b) {
		return false
	}
	for ; n < maxBatch; n++ {
		select {
		case f = <-st.queue:
			if !w.write(out, f.b) {
				return false
			}
			continue
		default:
		}
		break
	}
	w.s.delivered.Add(n)
	return true
}

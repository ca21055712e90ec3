package ginsse

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
)

// maxBatch bounds how many queued frames one write gathers.
const maxBatch = 64

// serve is the stream handler: it subscribes the request's channels,
// answers 200 once Redis confirmed them, replays what a resuming client
// missed, and then writes frames until the client goes, the stream falls
// behind, or the Sender closes.
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
	var cur *cursor
	if s.opts.History > 0 {
		if cur, err = s.newCursor(c, chans, names); err != nil {
			s.refuse(c, chans, err)
			return
		}
	}
	st := newStream(s.opts.QueueSize, cur != nil)
	if err := s.subscribe(ctx, st, names); err != nil {
		s.refuse(c, chans, err)
		return
	}
	defer s.unsubscribe(st)

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)

	w := &streamWriter{s: s, rc: http.NewResponseController(c.Writer), chans: chans, cur: cur}
	resync := s.resync.wait() // held until it fires, so a restore during a write is not missed
	// Write at once so the browser's open event fires before any message.
	if !w.write(c.Writer, helloFrame) || !w.replay(ctx, c.Writer) {
		w.logEnd(ctx, st)
		return
	}
	c.Writer.Flush()
	c.Stream(func(out io.Writer) bool {
		select {
		case f := <-st.queue:
			return w.drain(ctx, out, st, f)
		case <-s.beat.wait():
			return w.write(out, heartbeatFrame)
		case <-resync:
			resync = s.resync.wait()
			return w.replay(ctx, out)
		case <-st.kill:
			return false
		case <-s.quit:
			return false
		case <-ctx.Done():
			return false
		}
	})
	w.logEnd(ctx, st)
}

// refuse answers a stream request that cannot start: 400 for a bad
// Last-Event-ID, 503 when Redis cannot serve it.
func (s *Sender) refuse(c *gin.Context, chans []string, err error) {
	if c.Request.Context().Err() != nil {
		return // the client is gone; nobody reads an answer
	}
	status := http.StatusServiceUnavailable
	if isClientError(err) {
		status = http.StatusBadRequest
	} else {
		s.log.Warn("ginsse: stream refused", "channels", chans, "err", err)
	}
	c.AbortWithStatusJSON(status, gin.H{"error": err.Error()})
}

// streamWriter writes frames to one client, extending the write deadline
// before each write so that a server WriteTimeout does not cut a healthy
// stream while a client that stopped reading is still dropped.
type streamWriter struct {
	s     *Sender
	rc    *http.ResponseController
	chans []string
	cur   *cursor // nil with history off
	err   error
	// extended is when the write deadline was last moved.
	extended time.Time
}

func (w *streamWriter) write(out io.Writer, b []byte) bool {
	if d := w.s.opts.WriteTimeout; d > 0 {
		// Moving a deadline resets a runtime timer, so it moves once per
		// eighth of the timeout rather than on every write: a write gets
		// between 7/8 of WriteTimeout and all of it. Not every
		// ResponseWriter supports deadlines; streaming works without one.
		if now := time.Now(); now.Sub(w.extended) >= d/8 {
			_ = w.rc.SetWriteDeadline(now.Add(d))
			w.extended = now
		}
	}
	if _, err := out.Write(b); err != nil {
		w.err = err
		return false
	}
	return true
}

// logEnd reports why a stream ended, when it was not the client leaving.
// A write that missed its deadline is a client that stopped reading: it
// counts as a slow close, unless the hub already closed the stream for
// overflowing its queue (and counted it).
func (w *streamWriter) logEnd(ctx context.Context, st *stream) {
	switch {
	case st.killed.Load():
		w.s.log.Warn("ginsse: stream closed: client too slow", "channels", w.chans, "queue", w.s.opts.QueueSize)
	case w.err == nil:
	case errors.Is(w.err, os.ErrDeadlineExceeded):
		// net/http cancels the request context after a failed write, so
		// the deadline is checked before the context.
		w.s.hub.slow.Add(1)
		w.s.log.Warn("ginsse: stream closed: client stopped reading", "channels", w.chans, "timeout", w.s.opts.WriteTimeout)
	case ctx.Err() != nil:
	default:
		w.s.log.Warn("ginsse: stream closed", "channels", w.chans, "err", w.err)
	}
}

// drain writes f and whatever else is already queued, so a burst leaves in
// one flush (c.Stream flushes after each step).
func (w *streamWriter) drain(ctx context.Context, out io.Writer, st *stream, f *frame) bool {
	var n int64
	for {
		// A lagging stream dropped frames before this one: the history
		// has them, this one included. The flag is set before any later
		// frame is queued, so checking it here misses no drop.
		if st.lagging.Swap(false) && !w.replay(ctx, out) {
			return false
		}
		ok, sent := w.frame(out, st, f)
		if !ok {
			return false
		}
		if sent {
			n++
		}
		if n >= maxBatch {
			break
		}
		select {
		case f = <-st.queue:
			continue
		default:
		}
		break
	}
	w.s.delivered.Add(n)
	return true
}

// frame writes one live frame. With history on it skips frames the replay
// already sent and writes the stream's own id.
func (w *streamWriter) frame(out io.Writer, st *stream, f *frame) (ok, sent bool) {
	cur := w.cur
	if cur == nil {
		return w.write(out, f.b), true
	}
	i := st.index(f.t)
	if f.pos == (position{}) || i < 0 {
		// Outside history: no id, so the client's Last-Event-ID stays a
		// position.
		return w.write(out, f.b[:f.idAt]) && w.write(out, f.b[f.idEnd:]), true
	}
	if !cur.pos[i].less(f.pos) {
		return true, false // the replay sent it
	}
	cur.pos[i] = f.pos
	if len(cur.pos) == 1 {
		return w.write(out, f.b), true
	}
	return w.writeWithID(out, f.b[:f.idAt], f.b[f.idEnd:]), true
}

// writeWithID writes a frame around an id line holding every position of a
// multi-channel stream.
func (w *streamWriter) writeWithID(out io.Writer, head, tail []byte) bool {
	cur := w.cur
	cur.buf = append(cur.buf[:0], "id: "...)
	cur.buf = appendResume(cur.buf, cur.pos)
	cur.buf = append(cur.buf, '\n')
	return w.write(out, head) && w.write(out, cur.buf) && w.write(out, tail)
}

// cursor is a stream's place in the history of each of its channels.
type cursor struct {
	names []string   // Redis channel names, in the stream's order
	pos   []position // the last event sent of each channel
	buf   []byte     // scratch for the id line
	frame []byte     // scratch for replayed frames
}

// newCursor finds where a stream starts in its channels' history: at the
// request's Last-Event-ID, or else at the newest event of each channel,
// read before subscribing so the replay covers what comes in between.
func (s *Sender) newCursor(c *gin.Context, chans, names []string) (*cursor, error) {
	cur := &cursor{names: names}
	id := c.GetHeader("Last-Event-ID")
	if id == "" {
		id = c.Query("lastEventId")
	}
	var err error
	if id != "" {
		cur.pos, err = parseResume(id, len(chans))
		return cur, err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.opts.Timeout)
	defer cancel()
	cur.pos, err = s.tails(ctx, names)
	return cur, err
}

// replay writes every retained event after the cursor, channel by
// channel, one page at a time, then an id-only frame that sets the
// client's Last-Event-ID to where the stream now is. A position that is no
// longer retained first sends a ginsse-gap event naming its channels.
func (w *streamWriter) replay(ctx context.Context, out io.Writer) bool {
	cur := w.cur
	if cur == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, resumeDeadline)
	defer cancel()
	first := make([][]redisEntry, len(cur.names))
	var gaps []string
	for i, name := range cur.names {
		page, full, err := w.s.historyPage(ctx, name, cur.pos[i], true)
		if err != nil {
			w.err = err
			return false
		}
		if cur.pos[i] != (position{}) {
			switch {
			case len(page) > 0 && page[0].pos == cur.pos[i]:
				page = page[1:]
			case len(page) == 0:
				// Past everything retained, or nothing is retained: the
				// id is not from this history (Redis lost it, or it was
				// never one). Start over, or live events would look
				// already sent.
				cur.pos[i] = position{}
				gaps = append(gaps, w.chans[i])
				full = true // read again, from the start
			default:
				gaps = append(gaps, w.chans[i])
			}
		}
		first[i] = page
		if full {
			first[i] = append(page, redisEntry{more: true})
		}
	}
	if len(gaps) > 0 && !w.writeGap(out, gaps) {
		return false
	}
	for i := range cur.names {
		if !w.replayChannel(ctx, out, i, first[i]) {
			return false
		}
		first[i] = nil
	}
	cur.frame = nil // a replay's largest frame need not live as long as the stream
	cur.buf = append(cur.buf[:0], "id: "...)
	cur.buf = appendResume(cur.buf, cur.pos)
	cur.buf = append(cur.buf, "\n\n"...)
	return w.write(out, cur.buf)
}

// replayChannel writes the entries of channel i, reading further pages
// while the previous one was full.
func (w *streamWriter) replayChannel(ctx context.Context, out io.Writer, i int, page []redisEntry) bool {
	cur := w.cur
	for {
		more := false
		for _, en := range page {
			if en.more {
				more = true
				break
			}
			if !cur.pos[i].less(en.pos) {
				continue
			}
			cur.pos[i] = en.pos
			if !w.writeReplayed(out, &en.e) {
				return false
			}
			w.s.replayed.Add(1)
		}
		if !more {
			return true
		}
		next, full, err := w.s.historyPage(ctx, cur.names[i], cur.pos[i], false)
		if err != nil {
			w.err = err
			return false
		}
		page = next
		if full {
			page = append(page, redisEntry{more: true})
		}
	}
}

func (w *streamWriter) writeReplayed(out io.Writer, e *event) bool {
	cur := w.cur
	var at, end int
	cur.frame, at, end = appendFrameID(cur.frame[:0], e)
	if len(cur.pos) == 1 {
		return w.write(out, cur.frame)
	}
	return w.writeWithID(out, cur.frame[:at], cur.frame[end:])
}

func (w *streamWriter) writeGap(out io.Writer, gaps []string) bool {
	data, _ := json.Marshal(map[string][]string{"channels": gaps})
	e := event{typ: gapEvent, data: string(data), retry: -1}
	return w.write(out, appendFrame(nil, &e))
}

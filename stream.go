package ginsse

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// serve is the stream handler. It answers non-200 only for what no retry
// can fix (an invalid channel, an id longer than any ginsse writes), since
// a browser's EventSource gives up for good on any other answer. It
// subscribes the request's channels and answers 200 once Redis confirmed
// them, or after Options.Timeout when Redis cannot, and then writes frames
// until the client goes or the Sender closes.
func (s *Sender) serve(c *gin.Context) {
	chans, err := Channels(c)
	if err != nil {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	var res resume
	if s.opts.History > 0 {
		if res, err = s.resumeOf(c, len(chans)); err != nil {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
	}
	if s.closed() {
		s.bounce(c)
		return
	}
	if !s.admit() {
		s.shed.Add(1)
		s.log.Warn("ginsse: stream shed: MaxStreams reached", "channels", chans, "max", s.opts.MaxStreams)
		s.bounce(c)
		return
	}
	defer s.open.Add(-1)
	s.stream(c, chans, res)
}

// stream serves one admitted stream.
func (s *Sender) stream(c *gin.Context, chans []string, res resume) {
	names := chans
	if s.opts.Prefix != "" {
		names = make([]string, len(chans))
		for i, ch := range chans {
			names[i] = s.opts.Prefix + ch
		}
	}
	ctx := c.Request.Context()
	id, _ := IdentityOf(c)
	st := newStream()
	// Known to commands before it subscribes: a Disconnect from now on
	// ends it, even while it waits for Redis. Close wakes every stream it
	// knows, and follow checks quit at its first wake-up, so one known
	// only after Close woke the others ends too.
	r := &reach{id: id, chans: chans, st: st}
	s.reach.add(r)
	defer s.reach.remove(r)
	if s.pres != nil {
		s.pres.join(names, id.User)
		defer s.pres.leave(names, id.User)
	}
	s.subscribe(st, names)
	defer s.unsubscribe(st)
	if !s.confirmed(ctx, st) {
		if ctx.Err() != nil {
			return
		}
		s.outageOpens.Add(1)
		s.log.Warn("ginsse: stream opened before Redis confirmed its channels; it waits for them", "channels", chans)
	}
	startStream(c)
	opened := time.Now()
	d := &delivery{streamWriter: streamWriter{s: s, rc: http.NewResponseController(c.Writer), chans: chans}, st: st}
	d.start(res, opened)
	life := s.newLifetime(id, opened)
	defer life.stop()
	// Write at once so the browser's open event fires before any message.
	if !d.write(c.Writer, helloFrame) {
		d.logEnd(ctx)
		return
	}
	c.Writer.Flush()
	st.notify()
	if reason := s.follow(c, d, life); reason != "" {
		s.endedOnPurpose(reason, life.id, chans)
	}
	d.logEnd(ctx)
}

// follow writes the stream until its client goes, the Sender closes, or
// the server ends it; it returns why the server did, or "".
//
// An idle stream waits on as few channels as it can: its wake channel,
// which also carries heartbeats, commands and Close, and its request's
// end; a deadline or a pending end adds one while it lasts.
func (s *Sender) follow(c *gin.Context, d *delivery, life *lifetime) string {
	ctx, st, out := c.Request.Context(), d.st, c.Writer
	// A stream the server ends before it settled has given its client no
	// id to resume from: it ends once settled, or after Timeout.
	var pending string
	var settle <-chan time.Time
	final := false // the command that revoked the stream said NoReconnect
	for {
		why := ""
		select {
		case <-st.wake:
			if s.closed() {
				d.write(out, s.retryHint())
				out.Flush()
				return ""
			}
			sig := st.signals.Swap(0)
			revoked := sig&sigRevoke != 0
			final = final || sig&sigFinal != 0
			// A settled stream that is revoked ends without another frame.
			if !revoked || !d.idSent {
				if !d.step(out) || sig&sigBeat != 0 && !d.write(out, heartbeatFrame) {
					out.Flush()
					return ""
				}
			}
			if pending != "" && d.idSent {
				why = pending
			}
			if revoked {
				why = endRevoked
			}
		case <-life.due():
			why = life.passed()
		case a := <-life.refreshed():
			why = life.settle(a)
		case <-settle:
			why = pending
		case <-ctx.Done():
			return ""
		}
		if why == "" {
			out.Flush()
			continue
		}
		if !d.idSent && settle == nil {
			pending, settle = why, time.After(s.opts.Timeout)
			out.Flush()
			continue
		}
		if why == endRevoked && final {
			d.write(out, disconnectFrame)
		}
		d.write(out, s.retryHint())
		out.Flush()
		return why
	}
}

// endedOnPurpose counts and logs a stream the server ended for reason.
func (s *Sender) endedOnPurpose(reason string, id Identity, chans []string) {
	switch reason {
	case endExpired:
		s.expired.Add(1)
	case endRotated:
		s.rotated.Add(1)
	case endRevoked:
		s.revoked.Add(1)
	}
	s.log.Info("ginsse: stream ended", "reason", reason, "user", id.User, "tags", id.Tags, "channels", chans)
}

// confirmed waits until Redis confirmed every channel of st, at most
// Options.Timeout, and reports whether it did.
func (s *Sender) confirmed(ctx context.Context, st *stream) bool {
	timer := time.NewTimer(s.opts.Timeout)
	defer timer.Stop()
	for i := range st.members {
		select {
		case <-st.members[i].t.ready:
		case <-ctx.Done():
			return false
		case <-s.quit:
			return false
		case <-timer.C:
			return false
		}
	}
	return true
}

func startStream(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
}

// admit counts a new stream in, unless Options.MaxStreams are open.
func (s *Sender) admit() bool {
	if n := s.open.Add(1); s.opts.MaxStreams > 0 && n > int64(s.opts.MaxStreams) {
		s.open.Add(-1)
		return false
	}
	return true
}

// bounce answers a stream that cannot be served here now — the Sender is
// closing, or MaxStreams are open — with 200, a retry hint and an end, so
// the browser comes back later, perhaps to another replica.
func (s *Sender) bounce(c *gin.Context) {
	startStream(c)
	_, _ = c.Writer.Write(s.retryHint())
	c.Writer.Flush()
}

// retryHint is a frame that sets the browser's reconnection delay to a
// random time between Options.RetryMin and RetryMax, so that the browsers
// of a closing or full replica do not all come back at the same instant.
func (s *Sender) retryHint() []byte {
	lo, hi := s.opts.RetryMin.Milliseconds(), s.opts.RetryMax.Milliseconds()
	ms := lo
	if hi > lo {
		ms += rand.Int64N(hi - lo + 1)
	}
	b := append([]byte("retry: "), strconv.AppendInt(nil, ms, 10)...)
	return append(b, "\n\n"...)
}

// resume is where a stream asked to start in its channels' history.
type resume struct {
	given bool       // the request carried a Last-Event-ID
	pos   []position // one per channel
	gap   bool       // the id was unreadable: a gap, then the whole history
}

// resumeOf reads the request's Last-Event-ID (or lastEventId parameter).
// Only an id longer than any ginsse writes is an error; any other id it
// cannot read as positions of these channels — another publisher's, one
// from before history was on, one for another channel list — resumes with
// a gap and the whole history.
func (s *Sender) resumeOf(c *gin.Context, n int) (resume, error) {
	id := c.GetHeader("Last-Event-ID")
	if id == "" {
		id = c.Query("lastEventId")
	}
	if id == "" {
		return resume{}, nil
	}
	pos, ok, err := parseResume(id, n, s.opts.MaxChannels)
	if err != nil {
		return resume{}, err
	}
	return resume{given: true, pos: pos, gap: !ok}, nil
}

// streamWriter writes frames to one client, extending the write deadline
// as it goes so that a server WriteTimeout does not cut a healthy stream
// while a client that stopped reading is still dropped.
type streamWriter struct {
	s     *Sender
	rc    *http.ResponseController
	chans []string
	err   error
	// extended is when the write deadline was last moved.
	extended time.Time
	now      time.Time // of the last write: for the deadline and the delivery lag
}

// errFellBehind ends a stream without history that fell further behind
// than its channel's window holds.
var errFellBehind = errors.New("ginsse: stream fell behind its channel")

func (w *streamWriter) write(out io.Writer, b []byte) bool {
	w.now = time.Now()
	if d := w.s.opts.WriteTimeout; d > 0 {
		// Moving a deadline resets a runtime timer, so it moves once per
		// eighth of the timeout rather than on every write: a write gets
		// between 7/8 of WriteTimeout and all of it. Not every
		// ResponseWriter supports deadlines; streaming works without one.
		if w.now.Sub(w.extended) >= d/8 {
			_ = w.rc.SetWriteDeadline(w.now.Add(d))
			w.extended = w.now
		}
	}
	if _, err := out.Write(b); err != nil {
		w.err = err
		return false
	}
	return true
}

// logEnd reports why a stream ended, when it was not the client leaving.
// A stream that fell behind, or whose write missed its deadline (a client
// that stopped reading), counts as a slow close.
func (w *streamWriter) logEnd(ctx context.Context) {
	switch {
	case w.err == nil:
	case errors.Is(w.err, errFellBehind):
		w.s.hub.slow.Add(1)
		w.s.log.Warn("ginsse: stream closed: client too slow", "channels", w.chans, "window", w.s.hub.frames)
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

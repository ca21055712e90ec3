package sseclient

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// idleWatch drops a connection that sends nothing for Options.IdleTimeout.
// A nil *idleWatch watches nothing.
//
// Reads and the loop's body only note the time, with no timer operation
// per event; the timer looks when it fires, and waits again for what is
// left of the quiet time, or drops the connection.
type idleWatch struct {
	src     io.Reader
	timeout time.Duration
	start   time.Time // the clock's zero: stamps are time.Since(start), monotonic
	timer   *time.Timer
	drop    context.CancelFunc

	last    atomic.Int64 // stamp of the last bytes, or of the end of the last pause
	paused  atomic.Bool  // the loop's body has an event: its time is not the stream's
	stopped atomic.Bool  // the attempt ended: the timer is done
	expired atomic.Bool  // the connection was dropped for being quiet
}

// watch returns body to be read through a watch that calls drop, which
// cancels the request and so unblocks the read, once the stream has been
// quiet for IdleTimeout; without one it returns body as it is.
func (c *Client) watch(body io.Reader, drop context.CancelFunc) (io.Reader, *idleWatch) {
	if c.opts.IdleTimeout <= 0 {
		return body, nil
	}
	w := &idleWatch{src: body, timeout: c.opts.IdleTimeout, start: time.Now(), drop: drop}
	w.timer = time.AfterFunc(w.timeout, w.check)
	return w, w
}

// check runs when the timer fires: it drops the connection if it has been
// quiet for the whole timeout, and otherwise waits for the rest of it.
func (w *idleWatch) check() {
	if w.stopped.Load() {
		return
	}
	// paused before last: a pause that ended after this load has marked
	// last already.
	paused := w.paused.Load()
	quiet := time.Since(w.start) - time.Duration(w.last.Load())
	if paused || quiet < w.timeout {
		w.timer.Reset(max(w.timeout-quiet, time.Millisecond))
		return
	}
	w.expired.Store(true)
	w.drop()
}

func (w *idleWatch) mark() { w.last.Store(int64(time.Since(w.start))) }

// Read reads from the stream, and starts the quiet time again whenever
// bytes come, a heartbeat's included.
func (w *idleWatch) Read(p []byte) (int, error) {
	n, err := w.src.Read(p)
	if n > 0 {
		w.mark()
	}
	return n, err
}

// fired reports whether the stream was dropped for being quiet.
func (w *idleWatch) fired() bool { return w != nil && w.expired.Load() }

// pause stops the clock while the Client is not waiting for the stream.
func (w *idleWatch) pause() {
	if w != nil {
		w.paused.Store(true)
	}
}

// resume starts the quiet time again.
func (w *idleWatch) resume() {
	if w != nil {
		w.mark()
		w.paused.Store(false)
	}
}

// stop ends the watch with its attempt.
func (w *idleWatch) stop() {
	if w != nil {
		w.stopped.Store(true)
		w.timer.Stop()
	}
}

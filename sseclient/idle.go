package sseclient

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// idleWatch drops a connection that sends nothing for Options.IdleTimeout.
// A nil *idleWatch watches nothing.
type idleWatch struct {
	src     io.Reader
	timeout time.Duration
	timer   *time.Timer
	expired atomic.Bool
}

// watch returns body to be read through a watch that calls drop, which
// cancels the request and so unblocks the read, once the stream has been
// quiet for IdleTimeout; without one it returns body as it is.
func (c *Client) watch(body io.Reader, drop context.CancelFunc) (io.Reader, *idleWatch) {
	if c.opts.IdleTimeout <= 0 {
		return body, nil
	}
	w := &idleWatch{src: body, timeout: c.opts.IdleTimeout}
	w.timer = time.AfterFunc(w.timeout, func() {
		w.expired.Store(true)
		drop()
	})
	return w, w
}

// Read reads from the stream, and starts the quiet time again whenever
// bytes come, a heartbeat's included.
func (w *idleWatch) Read(p []byte) (int, error) {
	n, err := w.src.Read(p)
	if n > 0 {
		w.timer.Reset(w.timeout)
	}
	return n, err
}

// fired reports whether the stream was dropped for being quiet.
func (w *idleWatch) fired() bool { return w != nil && w.expired.Load() }

// pause stops the clock while the Client is not waiting for the stream.
func (w *idleWatch) pause() {
	if w != nil {
		w.timer.Stop()
	}
}

// resume starts the quiet time again.
func (w *idleWatch) resume() {
	if w != nil {
		w.timer.Reset(w.timeout)
	}
}

func (w *idleWatch) stop() {
	if w != nil {
		w.timer.Stop()
	}
}

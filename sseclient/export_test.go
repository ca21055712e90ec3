package sseclient

import (
	"io"
	"time"
)

// Backoff is backoff, for tests of the waits it chooses.
func Backoff(retry, limit time.Duration, failures int, jitter func(int64) int64) time.Duration {
	return backoff(retry, limit, failures, jitter)
}

// BufferSize is how much memory r's line buffer holds.
func BufferSize(r *Reader) int { return cap(r.lines.buf) }

// MinBackoff is minBackoff.
const MinBackoff = minBackoff

// IdleRound is what IdleTimeout costs one event: a read that brings bytes,
// and the pause around the loop's body.
func IdleRound(c *Client, src io.Reader, buf []byte) func() {
	r, w := c.watch(src, func() {})
	return func() {
		_, _ = r.Read(buf)
		w.pause()
		w.resume()
	}
}

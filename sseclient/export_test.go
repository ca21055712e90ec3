package sseclient

import "time"

// Backoff is backoff, for tests of the waits it chooses.
func Backoff(retry, limit time.Duration, failures int, jitter func(int64) int64) time.Duration {
	return backoff(retry, limit, failures, jitter)
}

// BufferSize is how much memory r's line buffer holds.
func BufferSize(r *Reader) int { return cap(r.lines.buf) }

// MinBackoff is minBackoff.
const MinBackoff = minBackoff

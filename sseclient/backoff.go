package sseclient

import (
	"context"
	"time"
)

// minBackoff is where failed attempts start doubling when the reconnection
// time is shorter, so that "retry: 0" cannot make a failing Client spin.
const minBackoff = 100 * time.Millisecond

// backoff returns how long to wait before the next attempt. After a stream
// ends it is the reconnection time; each attempt in a row that failed to
// open a stream doubles it. Up to a quarter more is added at random, so
// clients cut off together do not come back together, and no wait exceeds
// limit. jitter(n) returns a random number in [0, n).
func backoff(retry, limit time.Duration, failures int, jitter func(int64) int64) time.Duration {
	d := retry
	if failures > 0 {
		d = max(d, minBackoff)
	}
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if d > 0 {
		d += time.Duration(jitter(int64(d/4) + 1))
	}
	return min(d, limit)
}

// sleep waits for d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
